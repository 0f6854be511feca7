//! Reading a capture back: a closed one with [`reader`], a live one with
//! [`follow`].

pub mod capture;
pub mod event;
pub mod follow;
pub mod parse;
pub mod reader;
mod window;
#[cfg(test)]
mod reuse_race;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Reads up to `len` bytes of `file` from offset `from` into `buf` (cleared
/// first): the one way the reader and the follower take a segment's bytes
/// from its file (the reader may map a finished one instead; see
/// `reader::map_segment`). `len` bounds the read even if the file grows.
///
/// A sparse file — a crashed writer's segment, extended and never filled —
/// is read by its data extents only, into a fresh zeroed allocation whose
/// pages the holes never touch: a segment of a few KB on disk claiming a
/// gigabyte costs a few KB of memory, not a gigabyte. Returns where the
/// last data extent ends then, as an offset in `buf`: what follows it is
/// zeroes.
fn read_range(
    file: &mut File,
    from: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    #[cfg(test)]
    reuse_race::between_open_and_read();
    buf.clear();
    let md = file.metadata()?;
    let end = md.len().min(from.saturating_add(len));
    if from < end && md.blocks().saturating_mul(512) < md.len() {
        return read_extents(file, from, end, buf).map(Some);
    }
    file.seek(SeekFrom::Start(from))?;
    file.by_ref().take(len).read_to_end(buf)?;
    Ok(None)
}

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

/// [`read_range`] of a sparse file: bytes `from..end`, holes left as the
/// zeroes they read as. Time goes by the extents, memory by the data.
/// Returns the end of the data read, in `buf`.
fn read_extents(file: &File, from: u64, end: u64, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let len = usize::try_from(end - from).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // `vec![0; n]` asks the allocator for zeroed memory, which for a
    // large `n` is fresh pages, untouched until written.
    *buf = vec![0u8; len];
    let mut pos = from;
    while pos < end {
        // No data after `pos` (ENXIO): the rest is a hole.
        let Some(data) = seek(file, pos, libc::SEEK_DATA).filter(|&d| d < end) else {
            break;
        };
        let hole = seek(file, data, libc::SEEK_HOLE)
            .unwrap_or(end)
            .clamp(data + 1, end);
        let mut at = data;
        while at < hole {
            let slot = &mut buf[(at - from) as usize..(hole - from) as usize];
            match file.read_at(slot, at)? {
                // Cut short meanwhile: what is gone reads as zeroes.
                0 => return Ok((at - from) as usize),
                n => at += n as u64,
            }
        }
        pos = hole;
    }
    Ok((pos - from) as usize)
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
