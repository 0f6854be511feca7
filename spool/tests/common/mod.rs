//! Helpers shared by the spool's integration tests. What the tests of
//! other crates need too (the writer child a test kills) is in
//! `tests/testkit`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use spool::read::capture::Capture;
use spool::read::event::Event;
use spool::{Direction, Spool, SpoolConfig, StagingChoice};

/// A capture directory on disk and a staging root on tmpfs, both removed at the end.
pub struct Dirs {
    pub capture_parent: tempfile::TempDir,
    pub staging_parent: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs {
            capture_parent: tempfile::tempdir().unwrap(),
            staging_parent: tempfile::tempdir_in("/dev/shm").unwrap(),
        }
    }

    pub fn capture(&self) -> PathBuf {
        self.capture_parent.path().join("cap")
    }

    pub fn staging_root(&self) -> PathBuf {
        self.staging_parent.path().join("staging")
    }

    pub fn config(&self) -> SpoolConfig {
        SpoolConfig::new(self.capture()).staging(StagingChoice::Root(self.staging_root()))
    }
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub dir: Direction,
    pub ts: u64,
    pub data: Vec<u8>,
}

/// Everything a channel holds: data records, gaps (records, bytes) and damage count.
#[derive(Debug, Default)]
pub struct ChannelDump {
    pub records: Vec<Rec>,
    pub gaps: Vec<(u64, u64)>,
    pub damage: Vec<spool::read::event::Damage>,
    pub closed_cleanly: bool,
}

pub fn read_channel(capture: &Path, channel: &str) -> ChannelDump {
    let cap = Capture::open(capture).unwrap();
    let mut out = ChannelDump::default();
    let Some(mut r) = cap.reader(channel) else {
        return out;
    };
    while let Some(ev) = r.next_event() {
        match ev {
            Event::Data(d) => out.records.push(Rec {
                dir: d.direction,
                ts: d.ts_ns,
                data: d.payload.to_vec(),
            }),
            Event::Gap(g) => out.gaps.push((g.records(), g.bytes())),
            Event::Damage(d) => out.damage.push(d),
        }
    }
    out.closed_cleanly = r.stats().closed_cleanly;
    out
}

pub fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Appends a record to `channel`, waiting out a refusal: a test that
/// writes a burst faster than a loaded machine's preparer makes segments
/// would otherwise see the drops the spool is designed to make, when what
/// it checks is something else (each refusal is still counted, and written
/// as a gap). `ts_ns` is the record's time. Fails after 30 s of refusals.
pub fn append_kept(spool: &Spool, channel: &str, dir: Direction, ts_ns: u64, data: &[u8]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !spool.append_at(channel, dir, ts_ns, data) {
        assert!(
            std::time::Instant::now() < deadline,
            "{channel}: the record at {ts_ns} ns refused for 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub fn spool(cfg: SpoolConfig) -> Spool {
    Spool::create(cfg).unwrap()
}

/// A spool of small (64 KiB) segments with four prepared ahead, so that a
/// test's few hundred records fill several segments.
pub fn small_segments(dirs: &Dirs, channels: &[&str]) -> Spool {
    spool(
        dirs.config()
            .segment_bytes(64 << 10)
            .ready_ahead(4)
            .channels(channels),
    )
}

/// What [`segment_checksums`] found in one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCheck {
    /// The header has `SEGMENT_FLAG_CRC_COMPLETE`.
    pub flagged: bool,
    /// Its checksum matches exactly (not only with the flag cleared, as a
    /// writer killed between storing the two leaves it).
    pub exact_header_crc: bool,
    /// Records walked from the header on (seal included).
    pub records: usize,
    /// Of those, records whose `crc` field is zero.
    pub zero_crcs: usize,
    /// Each data record's payload length, and whether its `crc` field is
    /// set (not zero).
    pub data_crcs: Vec<(usize, bool)>,
    /// The walk ended on a seal.
    pub sealed: bool,
    /// ...exactly at the end of the file (no unused room after it).
    pub sealed_at_end: bool,
}

/// Walks a segment file's records at the byte level, independently of the
/// reader: the header must be a valid version-2 header, or version 3 with
/// intact blocks (checksum passing `checksum_ok`); each record must be
/// well-formed and, if the header is flagged, carry a matching CRC. Stops at
/// a seal or at a zero tag (the end of what was written, or a torn tail).
pub fn segment_checksums(path: &Path) -> SegmentCheck {
    use spool::store::format::{
        parse_record, CrcRule, RecordKind, SegmentHeader, FORMAT_VERSION,
        SEGMENT_FLAG_CRC_COMPLETE, SEGMENT_HEADER_LEN,
    };
    use zerocopy::FromBytes;
    let mut b = std::fs::read(path).unwrap();
    let h = SegmentHeader::read_from_bytes(&b[..SEGMENT_HEADER_LEN]).unwrap();
    if spool::store::compress::is_compressed(&h) {
        // Compressed: walk the records of its blocks as if staged.
        b = decompressed(path, &b);
    } else {
        assert_eq!(h.version.get(), FORMAT_VERSION, "{}", path.display());
        // What follows `written_to` is a reused segment's previous use.
        let written = spool::store::format::written_part(&b).len();
        b.truncate(written);
    }
    assert!(h.checksum_ok(), "{}: header checksum", path.display());
    let flagged = h.flags.get() & SEGMENT_FLAG_CRC_COMPLETE != 0;
    let rule = if flagged {
        CrcRule::Every
    } else {
        CrcRule::ZeroIsUnfilled
    };
    let mut out = SegmentCheck {
        flagged,
        exact_header_crc: h.header_crc.get() == h.compute_crc(),
        records: 0,
        zero_crcs: 0,
        data_crcs: Vec::new(),
        sealed: false,
        sealed_at_end: false,
    };
    let mut at = SEGMENT_HEADER_LEN;
    while at + 24 <= b.len() && b[at..at + 4] != [0; 4] {
        let r = parse_record(&b, at, rule).unwrap_or_else(|| {
            panic!(
                "{}: record at {at} fails its checks ({rule:?})",
                path.display()
            )
        });
        let zero_crc = b[at + 20..at + 24] == [0; 4];
        out.records += 1;
        out.zero_crcs += usize::from(zero_crc);
        if r.kind == RecordKind::Data {
            out.data_crcs.push((r.len, !zero_crc));
        }
        at = r.next(b.len());
        if r.kind == RecordKind::Seal {
            out.sealed = true;
            out.sealed_at_end = at == b.len();
            break;
        }
    }
    out
}

/// A compressed segment file's header followed by the records of all its
/// blocks, decoded; panics on a damaged block.
pub fn decompressed(path: &Path, file: &[u8]) -> Vec<u8> {
    use spool::store::compress::{BlockReader, BlockStep};
    let mut out = file[..spool::store::format::SEGMENT_HEADER_LEN].to_vec();
    let mut blocks = BlockReader::new();
    while let Some(step) = blocks.advance(file) {
        assert!(
            matches!(step, BlockStep::Records { .. }),
            "{}: {step:?}",
            path.display()
        );
        out.extend_from_slice(blocks.records());
    }
    out
}

/// Every segment file of a capture directory's channels (not staging).
pub fn capture_segments(capture: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ch in std::fs::read_dir(capture.join("spool")).unwrap().flatten() {
        for f in std::fs::read_dir(ch.path()).unwrap().flatten() {
            if f.file_name().to_string_lossy().ends_with(".seg") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}
