//! Reading a capture back: a closed one with [`reader`], a live one with
//! [`follow`].

pub mod capture;
pub mod event;
pub mod follow;
pub mod parse;
pub mod reader;
#[cfg(test)]
mod reuse_race;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Reads up to `len` bytes of `file` from offset `from` into `buf` (cleared
/// first): the one way the reader and the follower take a segment's bytes
/// from its file (the reader may map a finished one instead; see
/// `reader::map_segment`). `len` bounds the read even if the file grows.
fn read_range(file: &mut File, from: u64, len: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    #[cfg(test)]
    reuse_race::between_open_and_read();
    buf.clear();
    file.seek(SeekFrom::Start(from))?;
    file.by_ref().take(len).read_to_end(buf)?;
    Ok(())
}

/// The damage a segment file of `len` bytes is, if it is larger than any
/// segment can be ([`MAX_SEGMENT_BYTES`](crate::format::MAX_SEGMENT_BYTES)):
/// the reader and the follower refuse it alike, unread.
fn too_large(len: u64) -> Option<event::DamageKind> {
    let max = crate::store::format::MAX_SEGMENT_BYTES;
    (len > max).then(|| {
        event::DamageKind::Unreadable(format!(
            "{len} bytes is larger than the {max} byte limit"
        ))
    })
}
