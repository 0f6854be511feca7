//! Reading a capture back: a closed one with [`reader`], a live one with
//! [`follow`].

pub mod capture;
pub mod event;
pub mod follow;
pub mod parse;
pub mod reader;
#[cfg(test)]
mod reuse_race;
mod window;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// The length of `file` (`len` bytes, as its metadata says) up to the end
/// of its last data extent: a sparse file's trailing hole reads as zeroes,
/// room its writer never used, and is not worth scanning. Found by the
/// extents, in time that goes by their number.
fn data_len(file: &File, len: u64) -> u64 {
    let sparse = file
        .metadata()
        .is_ok_and(|m| m.blocks().saturating_mul(512) < m.len());
    if !sparse {
        return len;
    }
    let mut pos = 0;
    while pos < len {
        let Some(data) = seek(file, pos, libc::SEEK_DATA).filter(|&d| d < len) else {
            break;
        };
        pos = seek(file, data, libc::SEEK_HOLE)
            .unwrap_or(len)
            .clamp(data + 1, len);
    }
    pos
}

/// `lseek` to a data or hole offset; `None` where there is none (ENXIO).
fn seek(file: &File, pos: u64, whence: libc::c_int) -> Option<u64> {
    let pos = libc::off_t::try_from(pos).ok()?;
    // SAFETY: lseek on an open descriptor; no memory is involved.
    let r = unsafe { libc::lseek(file.as_raw_fd(), pos, whence) };
    u64::try_from(r).ok()
}

/// The damage a segment file of `len` bytes is, if it is larger than any
/// segment can be ([`MAX_SEGMENT_BYTES`](crate::store::format::MAX_SEGMENT_BYTES)):
/// the reader and the follower refuse it alike, unread.
fn too_large(len: u64) -> Option<event::DamageKind> {
    let max = crate::store::format::MAX_SEGMENT_BYTES;
    (len > max).then(|| {
        event::DamageKind::Unreadable(format!("{len} bytes is larger than the {max} byte limit"))
    })
}
