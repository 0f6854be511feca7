//! What reading a channel yields: records, gaps and damage. The same for
//! a closed capture ([`reader`](super::reader)) and a live one
//! ([`follow`](super::follow)).

use std::path::PathBuf;

use crate::store::format::{Direction, GapPayload, FORMAT_VERSION};

/// What kind of damage the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// The segment is shorter than its header.
    TruncatedHeader,
    /// The file does not start with [`SEGMENT_MAGIC`](crate::store::format::SEGMENT_MAGIC): not a spool segment.
    BadMagic,
    /// A segment of a format version this reader does not know.
    UnsupportedVersion(u16),
    /// The header's checksum does not match; its records are still read.
    BadHeaderChecksum,
    /// The header names another channel or index than its path says.
    HeaderMismatch(String),
    /// Bytes that are not a valid record, followed by valid records.
    Corrupt,
    /// Records of a compressed block that fail their checks once
    /// decompressed (the damage's offset and length are the block's in
    /// the file).
    CorruptInBlock,
    /// The last record of the channel was being written when the writer
    /// stopped; it was never acknowledged.
    TornTail,
    /// Segment indexes missing from the sequence (and not trimmed by the
    /// flight recorder).
    MissingSegments {
        /// First missing index.
        first: u64,
        /// How many are missing.
        count: u64,
    },
    /// The file could not be read, or is larger than [`MAX_SEGMENT_BYTES`](crate::store::format::MAX_SEGMENT_BYTES).
    Unreadable(String),
    /// A symlink or other non-regular file where a segment should be.
    NotARegularFile,
}

impl std::fmt::Display for DamageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DamageKind::TruncatedHeader => write!(f, "segment shorter than its header"),
            DamageKind::BadMagic => write!(f, "not a spool segment (wrong magic)"),
            DamageKind::UnsupportedVersion(v) => write!(
                f,
                "unsupported format version {v} (this reader knows version {FORMAT_VERSION})"
            ),
            DamageKind::BadHeaderChecksum => write!(f, "segment header checksum mismatch"),
            DamageKind::HeaderMismatch(what) => write!(f, "segment header mismatch: {what}"),
            DamageKind::Corrupt => write!(f, "corrupt records skipped"),
            DamageKind::CorruptInBlock => {
                write!(f, "corrupt records skipped in the compressed block here")
            }
            DamageKind::TornTail => write!(f, "torn tail (record in progress when writer stopped)"),
            DamageKind::MissingSegments { first, count: 1 } => {
                write!(f, "segment {first} missing")
            }
            DamageKind::MissingSegments { first, count } => {
                let last = first.saturating_add(count.saturating_sub(1));
                write!(f, "segments {first} to {last} missing")
            }
            DamageKind::Unreadable(e) => write!(f, "unreadable: {e}"),
            DamageKind::NotARegularFile => write!(f, "not a regular file (symlink?)"),
        }
    }
}

/// One damaged region, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset of the damage in that file.
    pub offset: u64,
    /// Bytes affected (0 when not meaningful, e.g. a missing segment).
    pub len: u64,
    /// What is wrong.
    pub kind: DamageKind,
    /// Records known to be lost here (from the sequence numbers around the
    /// damage), when that can be told.
    pub records_lost: u64,
}

impl Damage {
    /// Whether this is only a torn tail: the expected result of a crash, not a
    /// sign of a damaged file.
    pub fn is_torn_tail(&self) -> bool {
        self.kind == DamageKind::TornTail
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: offset {}: {}",
            self.file.display(),
            self.offset,
            self.kind
        )?;
        if self.len > 0 {
            write!(f, " ({} bytes", self.len)?;
            if self.records_lost > 0 {
                write!(f, ", {} records lost", self.records_lost)?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// A data record: bytes the client sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRecord<'a> {
    /// Which way the bytes went.
    pub direction: Direction,
    /// Arrival time, nanoseconds since session start.
    pub ts_ns: u64,
    /// Channel-wide sequence number (low 32 bits).
    pub seq: u32,
    /// The captured bytes.
    pub payload: &'a [u8],
}

/// Traffic the writer dropped, as recorded by a gap record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gap {
    /// Client→server records dropped.
    pub records_c2s: u64,
    /// Client→server bytes dropped.
    pub bytes_c2s: u64,
    /// Server→client records dropped.
    pub records_s2c: u64,
    /// Server→client bytes dropped.
    pub bytes_s2c: u64,
    /// Arrival time of the first dropped record.
    pub first_ts_ns: u64,
    /// Arrival time of the last dropped record.
    pub last_ts_ns: u64,
}

impl Gap {
    /// Records dropped in both directions.
    pub fn records(&self) -> u64 {
        self.records_c2s.saturating_add(self.records_s2c)
    }

    /// Bytes dropped in both directions.
    pub fn bytes(&self) -> u64 {
        self.bytes_c2s.saturating_add(self.bytes_s2c)
    }

    /// Bytes dropped in one direction.
    pub fn bytes_in(&self, dir: Direction) -> u64 {
        match dir {
            Direction::ClientToServer => self.bytes_c2s,
            Direction::ServerToClient => self.bytes_s2c,
        }
    }
}

impl From<&GapPayload> for Gap {
    fn from(p: &GapPayload) -> Gap {
        Gap {
            records_c2s: p.records_c2s.get(),
            bytes_c2s: p.bytes_c2s.get(),
            records_s2c: p.records_s2c.get(),
            bytes_s2c: p.bytes_s2c.get(),
            first_ts_ns: p.first_ts_ns.get(),
            last_ts_ns: p.last_ts_ns.get(),
        }
    }
}

/// What [`ChannelReader::next_event`](crate::read::reader::ChannelReader::next_event) yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Captured bytes.
    Data(DataRecord<'a>),
    /// Dropped traffic, in stream position.
    Gap(Gap),
    /// Damage found at this point in the stream (also kept in
    /// [`ChannelReader::damage`](crate::read::reader::ChannelReader::damage)).
    Damage(Damage),
}

/// Most damaged regions a [`ChannelReader`](crate::read::reader::ChannelReader)
/// keeps in detail: a hostile segment can hold one every few bytes, and a
/// list of them all would grow with the capture. Past this, only
/// [`DamageTotals`] count, exactly.
pub const MAX_DAMAGE_KEPT: usize = 1000;

/// Most damaged ranges kept in detail by all readers of this process at
/// once: ten thousand channels keeping [`MAX_DAMAGE_KEPT`] each would
/// otherwise hold ten million.
pub const MAX_DAMAGE_KEPT_IN_ALL: usize = 100_000;

/// Damaged ranges kept in detail by the readers alive now.
static KEPT_IN_ALL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Every damage a reader met, counted: exact however many there were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DamageTotals {
    /// Damaged regions (missing segments and unreadable files included).
    pub regions: u64,
    /// Records known to be lost in them.
    pub records_lost: u64,
    /// Bytes they cover.
    pub bytes: u64,
    /// Of the regions, torn tails (see [`Damage::is_torn_tail`]).
    pub torn_tails: u64,
}

/// The damage of one channel: the first [`MAX_DAMAGE_KEPT`] regions in
/// detail (fewer once the readers of the process keep
/// [`MAX_DAMAGE_KEPT_IN_ALL`]), and [`DamageTotals`] of all.
///
/// Whoever collects a channel's damage events keeps them in one, so that
/// a capture damaged every few bytes costs a bounded list.
#[derive(Debug, Default)]
pub struct DamageLog {
    kept: Vec<Damage>,
    totals: DamageTotals,
    /// The last damage added is the last of `kept`.
    last_kept: bool,
}

impl DamageLog {
    /// Adds `d`.
    pub fn push(&mut self, d: Damage) {
        let t = &mut self.totals;
        t.regions = t.regions.saturating_add(1);
        t.records_lost = t.records_lost.saturating_add(d.records_lost);
        t.bytes = t.bytes.saturating_add(d.len);
        t.torn_tails = t.torn_tails.saturating_add(d.is_torn_tail() as u64);
        use std::sync::atomic::Ordering;
        self.last_kept = self.kept.len() < MAX_DAMAGE_KEPT
            && KEPT_IN_ALL
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < MAX_DAMAGE_KEPT_IN_ALL).then_some(n + 1)
                })
                .is_ok();
        if self.last_kept {
            self.kept.push(d);
        }
    }

    /// Counts `lost` more records lost in the damage added last.
    pub fn add_lost_to_last(&mut self, lost: u64) {
        if self.totals.regions == 0 {
            return;
        }
        self.totals.records_lost = self.totals.records_lost.saturating_add(lost);
        if let Some(d) = self.kept.last_mut().filter(|_| self.last_kept) {
            d.records_lost = d.records_lost.saturating_add(lost);
        }
    }

    /// The regions kept in detail.
    pub fn kept(&self) -> &[Damage] {
        &self.kept
    }

    /// The totals of all.
    pub fn totals(&self) -> DamageTotals {
        self.totals
    }
}

impl Drop for DamageLog {
    fn drop(&mut self) {
        KEPT_IN_ALL.fetch_sub(self.kept.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damage(len: u64, lost: u64) -> Damage {
        Damage {
            file: PathBuf::from("x.seg"),
            offset: 0,
            len,
            kind: DamageKind::Corrupt,
            records_lost: lost,
        }
    }

    #[test]
    fn damage_past_the_kept_ones_is_counted_exactly() {
        let mut log = DamageLog::default();
        let n = MAX_DAMAGE_KEPT as u64 + 500;
        for _ in 0..n {
            log.push(damage(8, 1));
            log.add_lost_to_last(2);
        }
        assert_eq!(log.kept().len(), MAX_DAMAGE_KEPT);
        assert!(log.kept().iter().all(|d| d.records_lost == 3));
        let t = log.totals();
        assert_eq!((t.regions, t.bytes, t.records_lost), (n, 8 * n, 3 * n));
    }
}
