//! The pcapng pieces written by hand rather than by `pcap-file`: Enhanced
//! Packet Blocks (`write_epb`) and the bound on string options
//! ([`bounded_option`]).
//!
//! An Enhanced Packet Block carries options (direction flags on every
//! packet, comments on some); `pcap-file` would need a `Vec` of options per
//! packet and serializes every block twice to learn its length, so
//! [`crate::output::PacketSink`] writes these blocks with `write_epb`
//! straight into its writer, the frame in two pieces (headers, payload).

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use spool::store::format::Direction;

/// pcapng block type of an Enhanced Packet Block.
const EPB_TYPE: u32 = 6;
/// `opt_comment`.
const OPT_COMMENT: u16 = 1;
/// `epb_flags`.
const OPT_EPB_FLAGS: u16 = 2;
/// `epb_flags` direction bits: inbound.
pub const EPB_FLAG_INBOUND: u32 = 0b01;
/// `epb_flags` direction bits: outbound.
pub const EPB_FLAG_OUTBOUND: u32 = 0b10;

/// The `epb_flags` value of a packet going `direction`, from the client's
/// (ryll's) point of view: what it sent is outbound, what it received
/// inbound.
pub fn epb_flags(direction: Direction) -> u32 {
    match direction {
        Direction::ClientToServer => EPB_FLAG_OUTBOUND,
        Direction::ServerToClient => EPB_FLAG_INBOUND,
    }
}

/// Padding that brings `len` to a multiple of 4.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes one Enhanced Packet Block in native byte order (the order of the
/// section header [`crate::output::PacketSink::with_section`] wrote): the fixed fields,
/// the padded frame (`head` then `payload`), then the options — `epb_flags`
/// if a direction is given, `opt_comment` if a comment is, and the
/// end-of-options marker.
pub(crate) fn write_epb<W: Write>(
    w: &mut W,
    interface: u32,
    ts: Duration,
    head: &[u8],
    payload: &[u8],
    direction: Option<Direction>,
    comment: Option<&str>,
) -> io::Result<()> {
    let frame_len = head.len().saturating_add(payload.len());
    const ZEROES: [u8; 4] = [0; 4];
    let comment = comment.map(bounded_option);
    let comment = comment.as_deref().map(str::as_bytes);
    let mut options_len = 0usize;
    if direction.is_some() {
        options_len += 4 + 4;
    }
    if let Some(c) = comment {
        options_len += 4 + c.len() + pad4(c.len());
    }
    if options_len > 0 {
        options_len += 4; // opt_endofopt
    }
    let block_len = (28 + options_len + 4)
        .checked_add(frame_len + pad4(frame_len))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
    let ns = u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX);
    let cap_len = frame_len as u32;
    let mut fixed = [0u8; 28];
    fixed[0..4].copy_from_slice(&EPB_TYPE.to_ne_bytes());
    fixed[4..8].copy_from_slice(&block_len.to_ne_bytes());
    fixed[8..12].copy_from_slice(&interface.to_ne_bytes());
    fixed[12..16].copy_from_slice(&((ns >> 32) as u32).to_ne_bytes());
    fixed[16..20].copy_from_slice(&(ns as u32).to_ne_bytes());
    fixed[20..24].copy_from_slice(&cap_len.to_ne_bytes());
    fixed[24..28].copy_from_slice(&cap_len.to_ne_bytes());
    w.write_all(&fixed)?;
    w.write_all(head)?;
    w.write_all(payload)?;
    w.write_all(&ZEROES[..pad4(frame_len)])?;
    if let Some(d) = direction {
        let mut opt = [0u8; 8];
        opt[0..2].copy_from_slice(&OPT_EPB_FLAGS.to_ne_bytes());
        opt[2..4].copy_from_slice(&4u16.to_ne_bytes());
        opt[4..8].copy_from_slice(&epb_flags(d).to_ne_bytes());
        w.write_all(&opt)?;
    }
    if let Some(c) = comment {
        let mut opt = [0u8; 4];
        opt[0..2].copy_from_slice(&OPT_COMMENT.to_ne_bytes());
        opt[2..4].copy_from_slice(&(c.len() as u16).to_ne_bytes());
        w.write_all(&opt)?;
        w.write_all(c)?;
        w.write_all(&ZEROES[..pad4(c.len())])?;
    }
    if options_len > 0 {
        w.write_all(&ZEROES)?;
    }
    w.write_all(&block_len.to_ne_bytes())
}

/// Longest pcapng string option written, in bytes: an option's length is
/// 16 bits, and a block of several options must stay far below what
/// readers accept, so a longer one is cut at a character boundary and
/// marked ([`bounded_option`]).
pub const MAX_OPTION_BYTES: usize = 8 << 10;

/// What ends an option cut by [`bounded_option`].
pub(crate) const CUT_MARKER: &str = " … [cut]";

/// `s` as a pcapng string option: unchanged if it has at most
/// [`MAX_OPTION_BYTES`] bytes, else cut at a character boundary to fit with
/// a marker that says so.
pub fn bounded_option(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_OPTION_BYTES {
        return Cow::Borrowed(s);
    }
    let mut end = MAX_OPTION_BYTES - CUT_MARKER.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{CUT_MARKER}", &s[..end]))
}
