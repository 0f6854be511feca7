//! The bodies of the coverage-guided fuzz targets in `tests/fuzz/`, kept in
//! the e2e library so that a plain `cargo test` replays the committed
//! corpus (`tests/fuzz/corpus/<target>/`) through exactly the code the
//! fuzzer ran (`tests/tests/fuzz_corpus.rs`). The fuzz crate builds this
//! file as its own library: it uses only `spool`, `spool2pcap` and small
//! crates, none of e2e (whose `ryll-hook` links the whole renderer).
//!
//! Each target takes the fuzzer's bytes, builds what a capture directory
//! would hand the code under test, runs it, and checks what came out — not
//! only that nothing panicked:
//!
//! * **nothing invented**: every data and gap record a reader or follower
//!   yields is a record of the input, with a CRC that matches (or, in a
//!   segment whose header says its CRCs are not filled in yet, zero);
//! * **counts saturate**: a reader's counters are the saturating sums of
//!   what it yielded;
//! * **damage is located**: every damage report names a file of the input
//!   and an offset and length inside it;
//! * **it ends**: a reader yields a bounded number of events, a follower of
//!   a closed capture finishes at its first poll;
//! * **output is well-formed**: every pcap and pcapng written reads back
//!   with as many packets as reported, text for a terminal carries no
//!   control character, redaction only ever zeroes bytes.
//!
//! A capture's bytes come in one of two shapes. [`segment`] takes one
//! segment file. The other capture targets take a `CaptureInput`: one
//! byte of choices, then the segments of one channel, each starting at
//! [`SEGMENT_MAGIC`] (the input is split there), so that mutations that
//! copy or cut a magic make or merge segments. Since a fuzzer rarely
//! forges a CRC, a choice bit (and, for [`segment`], always a second run)
//! fills in every checksum first, as the writer's retirer does: records
//! that are CRC-valid but absurd are where logic bugs hide.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use spool::read::capture::Capture;
use spool::read::event::{Damage, DamageKind, Event, Gap};
use spool::read::follow::{Follower, Status};
use spool::store::block::{self, BlockHeader, BLOCK_HEADER_LEN};
use spool::store::compress::{BlockReader, BlockStep, SegmentCompressor};
use spool::store::format::{
    self, CrcRule, Direction, SegmentHeader, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC,
};
use spool::store::manifest::{Manifest, MANIFEST_FILE};
use spool2pcap::capture_builder;
use spool2pcap::Format;
use spool2pcap::{ChannelFramer, PacketClock, PacketSink, Record, Synthesis};
use spool2pcap::{Redaction, Redactor};
use zerocopy::{FromBytes, IntoBytes};

/// A fuzz target's body: the scratch directory to build in, the input.
pub type Target = fn(&Scratch, &[u8]);

/// The targets by name, as `tests/fuzz/fuzz_targets/<name>.rs` calls them
/// and `tests/fuzz/corpus/<name>/` holds their corpus.
pub const TARGETS: &[(&str, Target)] = &[
    ("segment", segment),
    ("reader", reader),
    ("follow", follow),
    ("capture", capture),
    ("manifest", manifest),
    ("metadata", metadata),
    ("framer", framer),
    ("compressed", compressed),
];

/// Session id of the manifests written here (hex of spool2pcap::capture_builder's).
const SESSION_HEX: &str = "30313233343536373839616263646566";

/// A private directory the targets build capture directories in, reused
/// from input to input (memory-backed when `/dev/shm` is there: the
/// fuzzer runs millions of inputs).
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    /// A new, empty scratch directory.
    pub fn new() -> Scratch {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("fuzz-").tempdir_in(shm)
        } else {
            tempfile::tempdir()
        };
        Scratch {
            dir: dir.expect("scratch directory"),
        }
    }

    /// The capture directory of the current input, emptied.
    fn capture(&self) -> PathBuf {
        let cap = self.dir.path().join("cap");
        let _ = std::fs::remove_dir_all(&cap);
        std::fs::create_dir(&cap).expect("capture directory");
        cap
    }

    /// Where outputs go.
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
}

/// The choices of a [`CaptureInput`], from its first byte.
#[derive(Debug, Clone, Copy)]
struct Choices(u8);

impl Choices {
    /// The channel the segments belong to: which SPICE type (and so which
    /// redaction) applies.
    fn channel(self) -> &'static str {
        ["main", "inputs", "display", "usbredir-9"][usize::from(self.0 & 3)]
    }

    /// What the manifest says: 0 closed cleanly, 1 crashed and recovered
    /// (`clean_shutdown: false`, nothing staged), 2 no manifest, 3 closed
    /// cleanly with the first segment trimmed by a ring limit.
    fn manifest(self) -> u8 {
        (self.0 >> 2) & 3
    }

    /// Fill in every CRC (as the retirer does) before writing.
    fn fix_checksums(self) -> bool {
        self.0 & 0x10 != 0
    }

    /// The first segment's index: 0, or two below `u64::MAX`.
    fn first_index(self) -> u64 {
        if self.0 & 0x20 != 0 {
            u64::MAX - 1
        } else {
            0
        }
    }

    /// With checksums fixed: leave the header unflagged, so that records
    /// whose CRC is zero pass on their tag alone.
    fn unflagged(self) -> bool {
        self.0 & 0x40 != 0
    }
}

/// A capture directory described by fuzzer bytes (see the module's doc).
struct CaptureInput {
    choices: Choices,
    /// Segment files in index order, after any fixing.
    segments: Vec<Vec<u8>>,
}

impl CaptureInput {
    fn parse(data: &[u8]) -> CaptureInput {
        let (&first, rest) = data.split_first().unwrap_or((&0, &[]));
        let choices = Choices(first);
        let mut segments = Vec::new();
        let mut start = 0;
        for at in 1..rest.len() {
            if rest[at..].starts_with(&SEGMENT_MAGIC) {
                segments.push(rest[start..at].to_vec());
                start = at;
            }
        }
        if start < rest.len() {
            segments.push(rest[start..].to_vec());
        }
        // At most 16 files, and no index past `u64::MAX`.
        let room = (u64::MAX - choices.first_index()).saturating_add(1);
        segments.truncate(16.min(room) as usize);
        if choices.fix_checksums() {
            for (i, s) in segments.iter_mut().enumerate() {
                let index = choices.first_index().saturating_add(i as u64);
                fix_checksums(s, choices.channel(), index, !choices.unflagged());
            }
        }
        CaptureInput { choices, segments }
    }

    /// Writes the capture into `cap`; returns each segment's path and bytes.
    fn write(&self, cap: &Path) -> Vec<(PathBuf, &[u8])> {
        let channel = self.choices.channel();
        let first = self.choices.first_index();
        let mut files = Vec::new();
        for (i, bytes) in self.segments.iter().enumerate() {
            let index = first.saturating_add(i as u64);
            let path = capture_builder::write_segment(cap, channel, index, bytes);
            files.push((path, bytes.as_slice()));
        }
        let manifest = match self.choices.manifest() {
            0 => Some(manifest_json(true, None)),
            1 => Some(manifest_json(false, None)),
            3 => Some(manifest_json(
                true,
                Some((channel, first.saturating_add(1))),
            )),
            _ => None,
        };
        if let Some(m) = manifest {
            std::fs::write(cap.join(MANIFEST_FILE), m).expect("manifest");
        }
        if files.is_empty() {
            std::fs::create_dir_all(cap.join("spool")).expect("spool directory");
        }
        files
    }
}

/// A manifest as the writer leaves it: closed (`clean`) or crashed and
/// recovered, optionally with `channel` trimmed up to `first_kept_index`.
fn manifest_json(clean: bool, trimmed: Option<(&str, u64)>) -> Vec<u8> {
    let mut m = serde_json::json!({
        "format_version": format::FORMAT_VERSION,
        "session_id": SESSION_HEX,
        "session_start_unix_ns": capture_builder::SESSION_START,
        "staging_dir": null,
        "segment_bytes": 1 << 17,
        "clean_shutdown": clean,
        "closed_unix_ns": if clean { Some(capture_builder::SESSION_START + 1) } else { None },
        "channels": {},
        "errors": [],
    });
    if let Some((channel, first)) = trimmed {
        m["trimmed"] = serde_json::json!({ channel: {
            "segments": 1, "records": 1, "data_bytes": 1, "file_bytes": 1,
            "first_kept_index": first, "until_ts_ns": 0 } });
    }
    serde_json::to_vec(&m).expect("JSON")
}

/// Makes `seg` a segment the fuzzer could not forge: its header names
/// `channel` and `index` and has a matching checksum, and every record
/// whose CRC is zero gets its CRC (as the retirer does, [`format::fill_checksums`]);
/// `flag` sets the header's *crc_complete* too.
fn fix_checksums(seg: &mut [u8], channel: &str, index: u64, flag: bool) {
    let Some(mut h) = seg
        .get(..SEGMENT_HEADER_LEN)
        .and_then(|b| SegmentHeader::read_from_bytes(b).ok())
    else {
        return;
    };
    h.channel = [0; format::MAX_CHANNEL_NAME];
    h.channel[..channel.len()].copy_from_slice(channel.as_bytes());
    h.segment_index.set(index);
    h.flags
        .set(h.flags.get() & !format::SEGMENT_FLAG_CRC_COMPLETE);
    h.header_crc.set(h.compute_crc());
    seg[..SEGMENT_HEADER_LEN].copy_from_slice(h.as_bytes());
    if flag {
        format::fill_checksums(seg);
    }
}

/// What identifies a record's contents: kind and direction bytes, length,
/// timestamp, sequence number (gap records: 0 for the last two) and a hash
/// of the payload.
type RecordKey = (u8, u8, usize, u64, u32, u64);

fn payload_hash(p: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    p.hash(&mut h);
    h.finish()
}

/// The record at `buf[at..]` by the format's definition, written out here
/// once more as the oracle: tag sync bytes, a kind of 1 to 3, a length
/// that fits, and a CRC over bytes 0..20 and the payload that matches — or
/// is zero, if `zero_passes`. Its key, or `None` if there is none.
fn record_at(buf: &[u8], at: usize, zero_passes: bool) -> Option<RecordKey> {
    let h = buf.get(at..)?.get(..RECORD_HEADER_LEN)?;
    let word = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let (kind, dir, len) = (h[0], h[1], word(4) as usize);
    if h[2..4] != [0xA5, 0x5A] || !(1..=3).contains(&kind) {
        return None;
    }
    let payload = buf.get(at + RECORD_HEADER_LEN..)?.get(..len)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..20]);
    crc.update(payload);
    let stored = word(20);
    if crc.finalize() != stored && !(zero_passes && stored == 0) {
        return None;
    }
    let hash = payload_hash(payload);
    Some(if kind == 2 {
        // A gap is known by its payload alone.
        (kind, 0, len, 0, 0, hash)
    } else {
        let ts = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        (kind, dir, len, ts, word(16), hash)
    })
}

/// Whether a segment's header lets a zero CRC pass: it is valid, of this
/// version, and says its CRCs are not complete ([`CrcRule::of_header`]).
fn zero_crc_passes(seg: &[u8]) -> bool {
    seg.get(..SEGMENT_HEADER_LEN)
        .and_then(|b| SegmentHeader::read_from_bytes(b).ok())
        .is_some_and(|h| h.is_current() && CrcRule::of_header(&h) == CrcRule::ZeroIsUnfilled)
}

/// Every record the segments hold ([`record_at`] at every 8-byte boundary
/// from the header's end).
fn genuine_records(segments: &[&[u8]]) -> HashSet<RecordKey> {
    let mut set = HashSet::new();
    for seg in segments {
        let lenient = zero_crc_passes(seg);
        let mut at = SEGMENT_HEADER_LEN;
        while at + RECORD_HEADER_LEN <= seg.len() {
            set.extend(record_at(seg, at, lenient));
            at += RECORD_ALIGN;
        }
    }
    set
}

fn gap_key(g: &Gap) -> RecordKey {
    let words = [
        g.records_c2s,
        g.bytes_c2s,
        g.records_s2c,
        g.bytes_s2c,
        g.first_ts_ns,
        g.last_ts_ns,
    ];
    let mut p = Vec::with_capacity(48);
    for w in words {
        p.extend_from_slice(&w.to_le_bytes());
    }
    (2, 0, 48, 0, 0, payload_hash(&p))
}

/// The checks every stream of events from a capture gets.
struct Oracle<'a> {
    genuine: HashSet<RecordKey>,
    files: &'a [(PathBuf, &'a [u8])],
    what: &'static str,
    /// Bytes the files can decompress to (compressed segments only): a
    /// small file may rightly hold many records.
    decompressed: usize,
}

/// What a stream of events added up to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    records: u64,
    bytes: u64,
    gaps: u64,
    dropped_records: u64,
    dropped_bytes: u64,
    damage: u64,
    /// Every data record, in order: direction, timestamp, seq, payload hash.
    data: Vec<(Direction, u64, u32, u64)>,
}

impl<'a> Oracle<'a> {
    fn new(files: &'a [(PathBuf, &'a [u8])], what: &'static str) -> Oracle<'a> {
        let segs: Vec<&[u8]> = files.iter().map(|(_, b)| *b).collect();
        Oracle {
            genuine: genuine_records(&segs),
            files,
            what,
            decompressed: 0,
        }
    }

    fn event(&self, e: &Event<'_>, t: &mut Tally) {
        match e {
            Event::Data(d) => {
                let h = payload_hash(d.payload);
                let key = (1, d.direction.to_byte(), d.payload.len(), d.ts_ns, d.seq, h);
                assert!(
                    self.genuine.contains(&key),
                    "{}: yielded a data record the input does not hold: {d:?}",
                    self.what
                );
                t.records = t.records.saturating_add(1);
                t.bytes = t.bytes.saturating_add(d.payload.len() as u64);
                t.data.push((d.direction, d.ts_ns, d.seq, h));
            }
            Event::Gap(g) => {
                assert!(
                    self.genuine.contains(&gap_key(g)),
                    "{}: yielded a gap the input does not hold: {g:?}",
                    self.what
                );
                t.gaps = t.gaps.saturating_add(1);
                t.dropped_records = t.dropped_records.saturating_add(g.records());
                t.dropped_bytes = t.dropped_bytes.saturating_add(g.bytes());
            }
            Event::Damage(d) => {
                self.damage(d);
                t.damage = t.damage.saturating_add(1);
            }
        }
    }

    /// A damage report names a file of the input (or, for missing
    /// segments, a name inside the capture) and a range inside it.
    fn damage(&self, d: &Damage) {
        let file = self.files.iter().find(|(p, _)| *p == d.file);
        match (&d.kind, file) {
            (DamageKind::MissingSegments { count, .. }, _) => {
                assert!(*count > 0, "{}: {d}", self.what);
                assert_eq!((d.offset, d.len), (0, 0), "{}: {d}", self.what);
            }
            (_, Some((_, bytes))) => {
                let end = d.offset.checked_add(d.len);
                assert!(
                    end.is_some_and(|e| e <= bytes.len() as u64),
                    "{}: damage outside its file of {} bytes: {d:?}",
                    self.what,
                    bytes.len()
                );
            }
            (_, None) => panic!("{}: damage in a file not of the input: {d:?}", self.what),
        }
        // What a user reads is one line naming the file.
        let text = d.to_string();
        assert!(!text.contains('\n'), "{}: {text:?}", self.what);
    }

    /// Most events a stream may yield: a record takes at least 8 bytes (of
    /// the file, or of what its blocks decompress to),
    /// and a file at most a few reports of its own.
    fn max_events(&self) -> usize {
        let bytes: usize = self.files.iter().map(|(_, b)| b.len()).sum();
        (bytes + self.decompressed) / RECORD_ALIGN + 4 * self.files.len() + 8
    }
}

/// Reads every channel of `cap` with the reader; checks each event and
/// that the reader's counters are what it yielded. Returns the tally of the
/// one channel, if there is one.
fn read_capture(cap: &Path, oracle: &Oracle<'_>, mapping: bool) -> Option<Tally> {
    let mut capture = Capture::open(cap).ok()?;
    capture.set_mapping(mapping);
    let mut tally = None;
    for ch in capture.channels() {
        let mut r = capture.reader(&ch.name).expect("listed channel");
        let mut t = Tally::default();
        let mut events = 0usize;
        while let Some(e) = r.next_event() {
            oracle.event(&e, &mut t);
            events += 1;
            assert!(
                events <= oracle.max_events(),
                "{}: reader does not end",
                oracle.what
            );
        }
        let s = r.stats();
        assert_eq!(
            (
                s.records,
                s.bytes,
                s.gaps,
                s.dropped_records,
                s.dropped_bytes
            ),
            (
                t.records,
                t.bytes,
                t.gaps,
                t.dropped_records,
                t.dropped_bytes
            ),
            "{}: reader counters",
            oracle.what
        );
        assert_eq!(r.damage().len() as u64, t.damage, "{}", oracle.what);
        tally = Some(t);
    }
    tally
}

/// Target `reader`: one segment file, read by the reader as the only
/// segment of a closed capture's channel — as it is, and with its
/// checksums filled in; mapped and read, which must agree.
pub fn reader(scratch: &Scratch, data: &[u8]) {
    for fixed in [false, true] {
        let mut bytes = data.to_vec();
        if fixed {
            fix_checksums(&mut bytes, "main", 0, true);
        }
        assert_resync_bounded(&bytes);
        assert_inflation_bounded(&bytes);
        let cap = scratch.capture();
        let path = capture_builder::write_segment(&cap, "main", 0, &bytes);
        std::fs::write(cap.join(MANIFEST_FILE), manifest_json(true, None)).expect("manifest");
        let files = [(path, bytes.as_slice())];
        let oracle = Oracle::new(&files, "reader");
        let mapped = read_capture(&cap, &oracle, true);
        let read = read_capture(&cap, &oracle, false);
        assert_eq!(mapped, read, "reader: mapped and read differ");
    }
}

/// Target `compressed`: a segment as the mover writes it to disk,
/// compressed in blocks, then damaged. The input is one byte of choices
/// (bits 0–2: how many mutations follow; bit 3: re-seal every block's CRC
/// after mutating, so that lying sizes and codecs reach the decoder), the
/// mutations (3 bytes each: a little-endian offset into the compressed
/// file, modulo its length, and a byte to XOR there), then the segment's
/// raw bytes, whose checksums are filled in before compressing.
///
/// Read as the only segment of a closed capture, mapped and read (which
/// must agree): nothing is yielded that the raw segment or an intact
/// block's decoded records do not hold,
/// every damage report lies inside the compressed file, the stream ends —
/// and without mutations, the records are exactly those of the raw
/// segment read uncompressed, with no damage if it had none.
pub fn compressed(scratch: &Scratch, data: &[u8]) {
    let Some((&choices, rest)) = data.split_first() else {
        return;
    };
    let mutations = usize::from(choices & 7);
    let reseal = choices & 8 != 0;
    let Some((program, raw)) = rest.split_at_checked(3 * mutations) else {
        return;
    };
    let mut raw = raw.to_vec();
    fix_checksums(&mut raw, "main", 0, true);
    let Ok(packed) = SegmentCompressor::new()
        .expect("zstd context")
        .compress(&raw)
        .map(<[u8]>::to_vec)
    else {
        // Not compressible or not blockable: the mover writes it as it is,
        // which the `reader` target covers.
        return;
    };

    // The blocks as written, to re-seal after mutating.
    let mut blocks = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let Some(b) = block::parse_block(&packed, at) {
        blocks.push(at);
        at = b.next(packed.len());
    }
    assert_eq!(at, packed.len(), "compressed: blocks run to the end");

    let mut bytes = packed;
    for m in program.chunks_exact(3) {
        let offset = usize::from(u16::from_le_bytes([m[0], m[1]])) % bytes.len();
        bytes[offset] ^= m[2];
    }
    if reseal {
        for &at in &blocks {
            reseal_block(&mut bytes, at);
        }
    }

    let raw_records = (mutations == 0).then(|| {
        let cap = scratch.capture();
        let path = capture_builder::write_segment(&cap, "main", 0, &raw);
        std::fs::write(cap.join(MANIFEST_FILE), manifest_json(true, None)).expect("manifest");
        let files = [(path, raw.as_slice())];
        read_capture(&cap, &Oracle::new(&files, "compressed (raw)"), true)
    });

    let cap = scratch.capture();
    let path = capture_builder::write_segment(&cap, "main", 0, &bytes);
    std::fs::write(cap.join(MANIFEST_FILE), manifest_json(true, None)).expect("manifest");
    let files = [(path, bytes.as_slice())];
    // Every intact block a reader could find, at any offset: the raw bytes
    // they state bound the records the file can yield, and what they
    // decode to is what it holds. A mutated block can decode to a record
    // the raw segment holds only damaged (the fuzzer writes CRCs that
    // match the mutated bytes), and yielding that one is right.
    let intact: Vec<_> = (0..bytes.len())
        .filter(|&at| block::has_block_magic(&bytes, at))
        .filter_map(|at| block::parse_block(&bytes, at).map(|b| (at, b)))
        .collect();
    let decompressed = intact.iter().map(|(_, b)| b.raw_len).sum();
    let mut holds = vec![raw.clone()];
    for (at, b) in &intact {
        // Behind the compressed header, whose capacity bounds its blocks.
        let mut alone = bytes[..SEGMENT_HEADER_LEN].to_vec();
        alone.extend_from_slice(&bytes[*at..b.next(bytes.len())]);
        let mut decoder = BlockReader::new();
        if let Some(BlockStep::Records { .. }) = decoder.advance(&alone) {
            let mut decoded = raw[..SEGMENT_HEADER_LEN].to_vec();
            decoded.extend_from_slice(decoder.records());
            holds.push(decoded);
        }
    }
    let holds: Vec<&[u8]> = holds.iter().map(Vec::as_slice).collect();
    let oracle = Oracle {
        genuine: genuine_records(&holds),
        files: &files,
        what: "compressed",
        decompressed,
    };
    assert_inflation_bounded(&bytes);
    let mapped = read_capture(&cap, &oracle, true);
    let read = read_capture(&cap, &oracle, false);
    assert_eq!(mapped, read, "compressed: mapped and read differ");
    if let (Some(Some(raw)), Some(packed)) = (raw_records, mapped) {
        assert_eq!(
            (raw.records, raw.bytes, raw.gaps, &raw.data),
            (packed.records, packed.bytes, packed.gaps, &packed.data),
            "compressed: records differ from the raw segment's"
        );
        // Compression keeps a damaged record as it was (the reader reports
        // it in both forms); an intact segment stays free of damage.
        if raw.damage == 0 {
            assert_eq!(
                packed.damage, 0,
                "compressed: intact blocks reported as damage"
            );
        }
    }
}

/// Gives the block whose header is at `bytes[at..]` the CRC of its header
/// and of as many stored bytes as its (possibly lying) header says, where
/// they fit: the writer's seal over whatever the header now claims.
fn reseal_block(bytes: &mut [u8], at: usize) {
    let Some(mut h) = bytes
        .get(at..at + BLOCK_HEADER_LEN)
        .and_then(|b| BlockHeader::read_from_bytes(b).ok())
    else {
        return;
    };
    let stored_at = at + BLOCK_HEADER_LEN;
    let Some(stored) = stored_at
        .checked_add(h.stored_len.get() as usize)
        .and_then(|end| bytes.get(stored_at..end))
    else {
        return;
    };
    h.crc.set(block::block_crc(&h, stored));
    bytes[at..stored_at].copy_from_slice(h.as_bytes());
}

/// Target `segment`: the segment parser the reader and the follower share
/// ([`spool::read::parse`]) and the byte-slice functions under it, on one
/// segment's bytes as they are and with checksums filled in — no files, so
/// that it runs millions of inputs. See `parse_segment`,
/// `parse_agrees_with_oracle` and `fill_is_sound` for what is checked.
pub fn segment(_scratch: &Scratch, data: &[u8]) {
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed, "main", 0, true);
    let mut unflagged = data.to_vec();
    fix_checksums(&mut unflagged, "main", 0, false);
    for bytes in [data, &fixed[..], &unflagged[..]] {
        assert_resync_bounded(bytes);
        parse_segment(bytes);
        parse_agrees_with_oracle(bytes);
        fill_is_sound(bytes);
    }
}

/// [`spool::read::parse::segment`] on `bytes`: header damage lies inside
/// the header; then items follow one another without a hole or an
/// overlap from the header's end; every record item is a record of the
/// input ([`record_at`], under the header's CRC rule) with the contents
/// reported; a skip ends at the first offset holding a record whose CRC
/// matches, and reports its sequence number; a tail holds no such record
/// and is followed by zeroes only; and nothing follows a seal or a tail.
fn parse_segment(bytes: &[u8]) {
    use spool::read::parse::{self, Parsed};
    let records = match parse::segment(bytes) {
        Ok(r) => r,
        Err(d) => {
            assert!(
                d.offset + d.len <= SEGMENT_HEADER_LEN as u64,
                "header damage outside the header: {d:?}"
            );
            return;
        }
    };
    let zero_passes = zero_crc_passes(bytes);
    let end = bytes.len() as u64;
    // The scan budget of FORMAT.md's *Bounds*, written out again: failed
    // checks are paid from twice the bytes after the header, shared by
    // every scan; a candidate costing more than what is left is passed over.
    let budget = std::cell::Cell::new(2 * (end.saturating_sub(SEGMENT_HEADER_LEN as u64)));
    let first_valid_after = |from: u64, to: u64| {
        let mut at = from;
        while at < to {
            let h = &bytes[at as usize..];
            let candidate =
                h.len() >= RECORD_HEADER_LEN && h[2..4] == [0xA5, 0x5A] && (1..=3).contains(&h[0]);
            let claimed = if candidate {
                let len = u64::from(u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")));
                let rest = (h.len() - RECORD_HEADER_LEN) as u64;
                if len <= rest {
                    len
                } else {
                    0
                }
            } else {
                0
            };
            if claimed <= budget.get() {
                if record_at(bytes, at as usize, false).is_some() {
                    return Some(at);
                }
                budget.set(budget.get() - claimed);
            }
            at += RECORD_ALIGN as u64;
        }
        None
    };
    let mut expect = SEGMENT_HEADER_LEN as u64;
    let mut ended = false;
    for (n, item) in records.enumerate() {
        assert!(!ended, "parse: an item after the end: {item:?}");
        assert!(n <= bytes.len() / RECORD_ALIGN + 2, "parse: does not end");
        // A record item at `offset`: where the last one ended, and a record
        // of the input; the next is expected after it.
        let mut record = |offset: u64| {
            assert_eq!(offset, expect, "parse: hole or overlap at {offset}");
            let key = record_at(bytes, offset as usize, zero_passes);
            let key = key.unwrap_or_else(|| panic!("parse: no record at {offset}"));
            expect = (offset + format::record_len(key.2) as u64).min(end);
            key
        };
        match &item {
            Parsed::Data { offset, record: r } => {
                let key = record(*offset);
                let payload = &bytes[*offset as usize + RECORD_HEADER_LEN..][..key.2];
                assert_eq!(r.payload, payload, "parse: data payload");
                assert_eq!(
                    key,
                    (
                        1,
                        r.direction.to_byte(),
                        r.payload.len(),
                        r.ts_ns,
                        r.seq,
                        key.5
                    )
                );
            }
            Parsed::Gap { offset, gap, .. } => {
                assert_eq!(record(*offset), gap_key(gap), "parse: gap contents");
            }
            Parsed::Seal { offset, .. } => {
                assert_eq!(record(*offset).0, 3, "parse: seal kind");
                ended = true;
            }
            Parsed::Invalid { offset, len, .. } => {
                let key = record(*offset);
                let rec_len = format::record_len(key.2) as u64;
                assert_eq!(*len, rec_len.min(end - offset), "parse: {item:?}");
            }
            Parsed::Skipped {
                offset,
                len,
                next_seq,
            } => {
                assert_eq!(*offset, expect, "parse: hole or overlap before {item:?}");
                let next = offset + len;
                assert!(*len > 0 && next <= end, "parse: {item:?}");
                assert_eq!(
                    first_valid_after(offset + RECORD_ALIGN as u64, end),
                    Some(next),
                    "parse: skip does not end at the next valid record: {item:?}"
                );
                let seq = u32::from_le_bytes(
                    bytes[next as usize + 16..next as usize + 20]
                        .try_into()
                        .expect("4 bytes"),
                );
                assert_eq!(*next_seq, seq, "parse: {item:?}");
                expect = next;
            }
            Parsed::Tail { offset, len, .. } => {
                assert_eq!(*offset, expect, "parse: hole or overlap before {item:?}");
                assert!(*len > 0 && offset + len <= end, "parse: {item:?}");
                assert!(
                    bytes[(offset + len) as usize..].iter().all(|&b| b == 0),
                    "parse: nonzero bytes after the tail: {item:?}"
                );
                assert_eq!(
                    first_valid_after(offset + RECORD_ALIGN as u64, end),
                    None,
                    "parse: a valid record in the tail: {item:?}"
                );
                ended = true;
            }
        }
    }
    if !ended {
        // Whatever was not parsed is zeroes: unused room.
        assert!(
            bytes[expect.min(end) as usize..].iter().all(|&b| b == 0),
            "parse: stopped at {expect} before nonzero bytes"
        );
    }
}

fn parse_agrees_with_oracle(buf: &[u8]) {
    for rule in [CrcRule::Every, CrcRule::ZeroIsUnfilled] {
        let zero_passes = rule == CrcRule::ZeroIsUnfilled;
        let mut at = 0;
        while at <= buf.len() {
            let parsed = format::parse_record(buf, at, rule);
            assert_eq!(
                parsed.is_some(),
                record_at(buf, at, zero_passes).is_some(),
                "parse_record({at}, {rule:?}) disagrees with the format: {parsed:?}"
            );
            if let Some(r) = parsed {
                assert_eq!(r.payload_at, at + RECORD_HEADER_LEN);
                let next = r.next(buf.len());
                assert!(next > at && next <= buf.len(), "{r:?} next {next}");
            }
            at += RECORD_ALIGN;
        }
        let from = SEGMENT_HEADER_LEN.min(buf.len());
        let end = format::committed_end(buf, from, rule);
        assert!(end >= from && end <= buf.len(), "committed_end {end}");
        assert!(
            end == from || end == buf.len() || (end - from).is_multiple_of(RECORD_ALIGN),
            "committed_end {end} is no record boundary"
        );
    }
}

fn fill_is_sound(buf: &[u8]) {
    let mut filled = buf.to_vec();
    let end = format::fill_checksums(&mut filled);
    assert!(end <= filled.len(), "fill_checksums: {end} past the end");
    let header = buf
        .get(..SEGMENT_HEADER_LEN)
        .and_then(|b| SegmentHeader::read_from_bytes(b).ok())
        .filter(SegmentHeader::is_current);
    let fills = header.is_some_and(|h| h.flags.get() & format::SEGMENT_FLAG_CRC_COMPLETE == 0);
    // What may change: the header's flags and checksum, and the zero CRC
    // of every record on the walk from the header (by tag and length, to
    // the first seal) of an unflagged segment — which then matches.
    let mut may_change = vec![false; buf.len()];
    if header.is_some() {
        may_change[12..16].fill(true);
        may_change[SEGMENT_HEADER_LEN - 4..SEGMENT_HEADER_LEN].fill(true);
    }
    let mut at = SEGMENT_HEADER_LEN;
    while header.is_some() && at + RECORD_HEADER_LEN <= buf.len() {
        let word = |o: usize| u32::from_le_bytes(buf[at + o..at + o + 4].try_into().unwrap());
        let Some((kind, _)) = format::parse_tag(word(0)) else {
            break;
        };
        let len = word(4) as usize;
        if len > buf.len() - at - RECORD_HEADER_LEN {
            break;
        }
        if fills && word(20) == 0 {
            may_change[at + 20..at + 24].fill(true);
            assert!(
                record_at(&filled, at, false).is_some(),
                "fill_checksums left the record at {at} without its CRC"
            );
        }
        if kind == format::RecordKind::Seal {
            break;
        }
        at += format::record_len(len);
    }
    for (i, (a, b)) in buf.iter().zip(&filled).enumerate() {
        assert!(a == b || may_change[i], "fill_checksums changed byte {i}");
    }
    let mut again = filled.clone();
    format::fill_checksums(&mut again);
    assert_eq!(again, filled, "fill_checksums is not idempotent");
}

/// Target `follow`: a capture directory (`CaptureInput`) followed by
/// [`Follower`] as `convert --follow` does; its manifest says the session
/// is over, so the first poll must read everything and finish.
pub fn follow(scratch: &Scratch, data: &[u8]) {
    let input = CaptureInput::parse(data);
    let cap = scratch.capture();
    let files = input.write(&cap);
    let oracle = Oracle::new(&files, "follow");
    let Ok(mut follower) = Follower::open(&cap) else {
        assert_eq!(input.choices.manifest(), 2, "follow: refused a capture");
        return;
    };
    let mut tally = Tally::default();
    let mut events = 0usize;
    let status = follower.poll(&mut |_, e| {
        oracle.event(&e, &mut tally);
        events += 1;
        assert!(events <= oracle.max_events(), "follow: does not end");
    });
    assert!(
        matches!(status, Status::Finished { .. }),
        "follow: a closed capture is still running after a poll"
    );
    // Nothing more comes, however often it is asked.
    let status = follower.poll(&mut |_, e| panic!("follow: yielded after the end: {e:?}"));
    assert!(matches!(status, Status::Finished { .. }));
    // Following a finished capture yields what reading it yields: the same
    // parser under both, the same resynchronisation after damage, the
    // same first segment when the start was trimmed.
    if let Some(read) = read_capture(&cap, &oracle, false) {
        assert_eq!(tally.data, read.data, "follow: not the reader's records");
    }
}

/// Target `capture`: a capture directory (`CaptureInput`) through the
/// reader, `info`, `convert` (pcapng, redacted) and the bug report's
/// `traffic.pcap` (the excerpt `ryll_hook::bundle::capture_traffic_pcap` writes).
pub fn capture(scratch: &Scratch, data: &[u8]) {
    let input = CaptureInput::parse(data);
    let cap = scratch.capture();
    let files = input.write(&cap);
    let oracle = Oracle::new(&files, "capture");
    read_capture(&cap, &oracle, true);
    tools_on(scratch, &cap);
}

/// `info`, `convert` and the bug report's pcap on the capture at `cap`:
/// what a stranger's capture reaches.
fn tools_on(scratch: &Scratch, cap: &Path) {
    let Ok(info) = spool2pcap::info::scan(cap, &mut |_, _| {}) else {
        return;
    };
    let mut text = Vec::new();
    spool2pcap::info::write_text(&info, &mut text).expect("text into memory");
    let text = String::from_utf8(text).expect("info text is UTF-8");
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "info: control character in {text:?}"
    );

    let out = scratch.out();
    let _ = std::fs::remove_file(&out);
    let mut opts = spool2pcap::ConvertOptions::new(spool2pcap::Destination::File(out.clone()));
    opts.format = Format::Pcapng;
    opts.redact = Redaction::ALL;
    if let Ok(report) = spool2pcap::convert(cap, &opts) {
        let bytes = std::fs::read(&out).expect("convert wrote its file");
        assert_eq!(
            count_pcapng_packets(&bytes),
            report.frames(),
            "convert: pcapng packets"
        );
    }

    // What the bug report's `traffic.pcap` is (`ryll_hook::bundle`, which
    // links the renderer and so stays out of the fuzz build): the newest
    // traffic within a budget, redacted.
    let mut opts = spool2pcap::ExcerptOptions::new(spool2pcap::Selection::Newest {
        budget_bytes: 64 << 10,
    });
    opts.redact = Redaction::ALL;
    let mut pcap = Vec::new();
    if let Ok(report) = spool2pcap::write_excerpt(cap, &opts, &mut pcap) {
        assert_eq!(count_pcap_packets(&pcap), report.frames(), "excerpt");
        assert!(pcap.len() as u64 <= 64 << 10, "excerpt: over its budget");
        let mut text = Vec::new();
        report.write_text(&mut text).expect("text into memory");
        let text = String::from_utf8(text).expect("report text is UTF-8");
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "excerpt: control character in {text:?}"
        );
    }
}

/// Packets of a pcapng file; panics if it does not read to its end.
fn count_pcapng_packets(bytes: &[u8]) -> u64 {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut r = PcapNgReader::new(bytes).expect("pcapng section header reads");
    let mut n = 0;
    while let Some(b) = r.next_block() {
        match b.expect("pcapng block reads") {
            Block::EnhancedPacket(_) | Block::SimplePacket(_) | Block::Packet(_) => n += 1,
            _ => {}
        }
    }
    n
}

/// Packets of a classic pcap file; panics if it does not read to its end.
fn count_pcap_packets(bytes: &[u8]) -> u64 {
    let mut r = pcap_file::pcap::PcapReader::new(bytes).expect("pcap header reads");
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.expect("pcap packet reads");
        n += 1;
    }
    n
}

/// Target `manifest`: `manifest.json` with these bytes beside a small
/// valid capture, loaded by both loaders, then `info`, `convert` and the
/// bundle's pcap run on it.
pub fn manifest(scratch: &Scratch, data: &[u8]) {
    let cap = scratch.capture();
    capture_builder::simple_channel(
        &cap,
        "main",
        &[
            (Direction::ClientToServer, 10, b"m1"),
            (Direction::ServerToClient, 30, b"m2"),
        ],
    );
    let path = cap.join(MANIFEST_FILE);
    std::fs::write(&path, data).expect("manifest");
    let loaded = Manifest::load(&path);
    let guarded = spool2pcap::guard::load_manifest(&cap);
    match (&loaded, &guarded) {
        (Ok(a), Ok(Some(b))) => {
            assert_eq!(a, b, "manifest: the two loaders disagree");
            // What is loaded writes back and loads the same.
            let again: Manifest =
                serde_json::from_slice(&serde_json::to_vec(a).expect("serializes"))
                    .expect("reloads");
            assert_eq!(&again, a, "manifest: round trip");
        }
        (Err(e), Err(_)) => assert!(
            e.to_string().contains(MANIFEST_FILE),
            "manifest: error {e:?}"
        ),
        _ => panic!("manifest: loaders disagree: {loaded:?} / {guarded:?}"),
    }
    // A stranger's staging directory is never looked into here: the tools
    // below only read, and every path they take from the manifest is
    // checked before use; what they print must still be clean.
    tools_on(scratch, &cap);
}

/// Target `metadata`: `metadata.json` with these bytes, parsed and loaded;
/// every value kept is cut to length and fit for a terminal.
pub fn metadata(scratch: &Scratch, data: &[u8]) {
    use spool2pcap::metadata::{load, parse, MAX_FIELD_CHARS, METADATA_FILE};
    let parsed = parse(data);
    let cap = scratch.capture();
    std::fs::write(cap.join(METADATA_FILE), data).expect("metadata");
    let loaded = load(&cap);
    match (&parsed, &loaded) {
        (Ok(p), Ok(Some(l))) => assert_eq!(p, l, "metadata: parse and load differ"),
        (Err(_), Err(e)) => assert!(
            e.to_string().contains(METADATA_FILE),
            "metadata: error {e:?}"
        ),
        _ => {
            // Only size tells them apart: load refuses what parse reads.
            assert!(
                data.len() as u64 > spool2pcap::metadata::MAX_METADATA_BYTES,
                "metadata: {parsed:?} / {loaded:?}"
            );
        }
    }
    let Ok(m) = parsed else { return };
    let fields = [
        &m.ryll_version,
        &m.ryll_git_sha,
        &m.platform_os,
        &m.platform_arch,
        &m.target_host,
        &m.capture_started,
    ];
    for f in fields.into_iter().flatten() {
        assert!(f.chars().count() <= MAX_FIELD_CHARS, "metadata: {f:?}");
        assert!(!f.chars().any(char::is_control), "metadata: {f:?}");
        assert!(!f.is_empty());
    }
    let d = m.describe();
    assert!(!d.chars().any(char::is_control), "metadata: {d:?}");
}

/// Target `framer`: one channel's records — data of either direction,
/// gaps with any counts, damage — framed into pcap or pcapng with
/// redaction, as convert and the bundle do. The bytes are a program:
///
/// * byte 0: channel (bits 0–1: main, inputs, display, other), pcapng
///   (bit 2), synthesis off (bit 3), trimmed start (bit 4), relative time
///   (bit 5);
/// * then instructions: `0`/`1` a data record of that direction whose
///   length is the next byte (and whose bytes follow), `2` a gap whose two
///   byte counts are the next 16 bytes, `3` damage, `4` a timestamp (next 8
///   bytes) for the following records; anything else: the clean close.
pub fn framer(_scratch: &Scratch, data: &[u8]) {
    let (&first, mut rest) = data.split_first().unwrap_or((&0, &[]));
    let channel = ["main", "inputs", "display", "port-x"][usize::from(first & 3)];
    let format = if first & 4 != 0 {
        Format::Pcapng
    } else {
        Format::Pcap
    };
    let synth = if first & 8 != 0 {
        Synthesis::NONE
    } else {
        Synthesis::ALL
    };
    let trimmed = first & 16 != 0;
    let clock = if first & 32 != 0 {
        PacketClock::relative()
    } else {
        PacketClock::absolute(capture_builder::SESSION_START)
    };
    let redaction = Redaction::ALL;
    let mut framer = ChannelFramer::new(channel, 10_001, 0, synth)
        .with_redactor(Redactor::for_channel(channel, redaction, trimmed));
    // The same redaction on its own, to check what it does to each record.
    let mut redactor = Redactor::for_channel(channel, redaction, trimmed);
    let mut sink = PacketSink::new(Vec::new(), format, &[channel]).expect("header into memory");
    let mut frame = Vec::new();
    let mut ts = 0u64;
    let mut closed = false;
    let take = |rest: &mut &[u8], n: usize| -> Vec<u8> {
        let (a, b) = rest.split_at(n.min(rest.len()));
        *rest = b;
        a.to_vec()
    };
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op {
            0 | 1 => {
                let dir = if op == 0 {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                let n = take(&mut rest, 1).first().copied().unwrap_or(0);
                let payload = take(&mut rest, usize::from(n));
                if let Some(r) = redactor.as_mut() {
                    let out = r.apply(dir, &payload);
                    assert_eq!(out.len(), payload.len(), "redaction changed a length");
                    assert!(
                        out.iter().zip(&payload).all(|(o, i)| o == i || *o == 0),
                        "redaction wrote something other than zeroes"
                    );
                }
                let record = Record {
                    direction: dir,
                    ts_ns: ts,
                    payload: &payload,
                };
                framer
                    .data(&mut sink, clock, 0, record, &mut frame)
                    .expect("frames into memory");
                ts = ts.saturating_add(1000);
            }
            2 => {
                let b = take(&mut rest, 16);
                let word = |i: usize| {
                    b.get(i..i + 8)
                        .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap()))
                };
                let g = Gap {
                    records_c2s: 1,
                    bytes_c2s: word(0),
                    records_s2c: 1,
                    bytes_s2c: word(8),
                    first_ts_ns: ts,
                    last_ts_ns: ts,
                };
                framer.gap(&g);
                if let Some(r) = redactor.as_mut() {
                    r.gap(&g);
                }
            }
            3 => {
                let b = take(&mut rest, 8);
                let mut w = [0u8; 8];
                w[..b.len()].copy_from_slice(&b);
                framer.damage(&Damage {
                    file: PathBuf::from("spool/display/00000000.seg"),
                    offset: 0,
                    len: u64::from_le_bytes(w),
                    kind: DamageKind::Corrupt,
                    records_lost: 1,
                });
                if let Some(r) = redactor.as_mut() {
                    r.lose_framing();
                }
            }
            4 => {
                let b = take(&mut rest, 8);
                let mut w = [0u8; 8];
                w[..b.len()].copy_from_slice(&b);
                ts = u64::from_le_bytes(w);
            }
            _ => {
                closed = true;
                break;
            }
        }
    }
    framer
        .finish(&mut sink, clock, closed, &mut frame)
        .expect("frames into memory");
    let frames = framer.frames();
    let mut bytes = sink.into_inner();
    bytes.flush().expect("memory");
    let packets = match format {
        Format::Pcap => count_pcap_packets(&bytes),
        Format::Pcapng => count_pcapng_packets(&bytes),
    };
    assert_eq!(packets, frames, "framer: packets written");
}

/// Runs target `name` on every file of its corpus directory `dir`; returns
/// how many it ran. Panics (naming the file) where the target does.
pub fn replay(name: &str, dir: &Path) -> usize {
    let (_, target) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a known target");
    let scratch = Scratch::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).expect("corpus file");
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&scratch, &data)));
        if let Err(e) = run {
            eprintln!("{name}: {} fails", f.display());
            std::panic::resume_unwind(e);
        }
    }
    files.len()
}

/// Starting inputs for target `name`, from which `cargo fuzz` grows its
/// corpus: small real segments of the shipped capture (`fixtures`, the
/// `fixtures/qemu-seabios-4ch` directory), hand-built ones with gaps,
/// seals and unfilled CRCs, ryll's manifests and metadata, and framer
/// programs carrying real key and clipboard messages. Written out by the
/// ignored test `write_seed_corpus` (see `tests/fuzz/README.md`).
pub fn seeds(name: &str, fixtures: &Path) -> Vec<Vec<u8>> {
    use Direction::{ClientToServer as C2S, ServerToClient as S2C};
    let real = |channel: &str| {
        std::fs::read(fixtures.join("spool").join(channel).join("00000000.seg"))
            .expect("shipped segment")
    };
    let built = |channel: &str, index: u64, first_seq: u64, last: Option<bool>| {
        let mut s = capture_builder::Seg::new(channel, index, first_seq);
        s.data(C2S, 1000, b"\x65\x00\x04\x00\x00\x00\x1e\x00\x00\x00");
        s.gap_counts(1500, [1, 2], [30, 40]);
        s.data(S2C, 2500, b"0123456789");
        if let Some(last) = last {
            s.seal(last);
        }
        s.finish(if last.is_some() { 0 } else { 64 })
    };
    let unflagged = {
        let mut b = built("main", 0, 0, None);
        // As staged: header unflagged, every record's CRC still zero.
        let mut at = SEGMENT_HEADER_LEN;
        while let Some(r) = format::parse_record(&b, at, CrcRule::Every) {
            b[at + 20..at + 24].fill(0);
            at = r.next(b.len());
        }
        fix_checksums(&mut b, "main", 0, false);
        b
    };
    let mut flipped = built("main", 0, 0, Some(true));
    flipped[SEGMENT_HEADER_LEN + 30] ^= 4;
    match name {
        "compressed" => {
            // Real segments, compressible; a mutation-free one, a flipped
            // byte in a zstd block, and a lying raw length re-sealed.
            let with = |choices: u8, program: &[u8], seg: Vec<u8>| {
                let mut v = vec![choices];
                v.extend_from_slice(program);
                v.extend_from_slice(&seg);
                v
            };
            let display_like = || {
                let mut s = capture_builder::Seg::new("main", 0, 0);
                for i in 0..40u8 {
                    let mut payload = vec![i % 3; 200];
                    payload[..6].copy_from_slice(b"\x66\x00\xc2\x00\x00\x00");
                    s.data(if i % 4 == 0 { C2S } else { S2C }, 1000 * u64::from(i), &payload);
                }
                s.gap_counts(50_000, [1, 2], [30, 40]);
                s.seal(true);
                s.finish(0)
            };
            let at = |offset: usize| (offset as u16).to_le_bytes();
            let header = SEGMENT_HEADER_LEN;
            let (raw_len, stored_len, raw_offset) = (at(header + 8), at(header + 12), at(header + 16));
            vec![
                with(0, &[], real("inputs")),
                with(0, &[], display_like()),
                with(1, &[at(header + 100)[0], at(header + 100)[1], 0x40], display_like()),
                with(9, &[raw_len[0], raw_len[1], 0x10], display_like()),
                with(9, &[stored_len[0], stored_len[1], 0x01], display_like()),
                with(9, &[raw_offset[0], raw_offset[1], 0x08], display_like()),
                with(10, &[at(header + 4)[0], at(header + 4)[1], 0x01, raw_len[0], raw_len[1], 0x80], display_like()),
            ]
        }
        "segment" | "reader" => vec![
            real("cursor"),
            real("inputs"),
            built("main", 0, 0, Some(true)),
            built("main", 0, 0, None),
            unflagged,
            flipped,
            // Issue 24's resource classes, small: a header at every slot
            // claiming half the file; the same in one zstd block; blocks
            // of 8 MiB of zeroes, a few hundred bytes each.
            resync_flood_segment(4096),
            compressed_flood_segment(64 << 10),
            inflating_segment(0, 3),
        ],
        "follow" | "capture" => {
            let join = |choices: u8, segs: &[Vec<u8>]| {
                let mut v = vec![choices];
                for s in segs {
                    v.extend_from_slice(s);
                }
                v
            };
            vec![
                join(0x00, &[built("main", 0, 0, Some(false)), built("main", 1, 3, Some(true))]),
                join(0x01, &[real("inputs")]),
                join(0x05, &[real("inputs")]),
                join(0x10, &[built("main", 0, 0, Some(false)), flipped.clone()]),
                join(0x34, &[built("main", 0, 0, Some(false)), built("main", 1, 3, None)]),
                join(0x0E, &[real("cursor"), real("cursor")]),
                join(0x58, std::slice::from_ref(&unflagged)),
            ]
        }
        "manifest" => {
            let mut crashed: serde_json::Value =
                serde_json::from_slice(&manifest_json(false, Some(("main", 1)))).expect("JSON");
            crashed["staging_dir"] = "/dev/shm/ryll-spool-0/30313233343536373839616263646566".into();
            crashed["errors"] = serde_json::json!(["disk full \u{1b}[2J"]);
            crashed["limit"] =
                serde_json::json!({"max_bytes": 1000, "max_bytes_per_channel": null, "policy": "ring"});
            vec![
                std::fs::read(fixtures.join(MANIFEST_FILE)).expect("shipped manifest"),
                manifest_json(true, None),
                serde_json::to_vec_pretty(&crashed).expect("JSON"),
                br#"{"format_version":2,"session_id":"x","session_start_unix_ns":18446744073709551615,"staging_dir":null,"segment_bytes":0,"clean_shutdown":true,"pending_move":true,"closed_unix_ns":0}"#.to_vec(),
            ]
        }
        "metadata" => vec![
            br#"{"ryll_version":"0.3.0","ryll_git_sha":"abc1234","platform_os":"linux","platform_arch":"x86_64","target_host":"127.0.0.1","target_port":5900,"target_tls_port":null,"capture_started":"2026-11-30T20:00:00Z"}"#.to_vec(),
            br#"{"target":"evil\u001b[2Jhost","target_port":"5901","ryll_version":12}"#.to_vec(),
            b"[1,2]".to_vec(),
        ],
        "framer" => {
            let mini = |ty: u16, body: &[u8]| {
                let mut m = ty.to_le_bytes().to_vec();
                m.extend_from_slice(&(body.len() as u32).to_le_bytes());
                m.extend_from_slice(body);
                m
            };
            let data = |dir: u8, payload: &[u8]| {
                let mut v = vec![dir, payload.len() as u8];
                v.extend_from_slice(payload);
                v
            };
            let key = mini(101, &0x1e_u32.to_le_bytes());
            let mut agent = 1u32.to_le_bytes().to_vec(); // VD_AGENT_PROTOCOL
            agent.extend_from_slice(&4u32.to_le_bytes()); // VD_AGENT_CLIPBOARD
            agent.extend_from_slice(&0u64.to_le_bytes());
            agent.extend_from_slice(&12u32.to_le_bytes());
            agent.extend_from_slice(b"\x01\0\0\0secret!!");
            let clip = mini(107, &agent);
            let mut gap = vec![2];
            gap.extend_from_slice(&3u64.to_le_bytes());
            gap.extend_from_slice(&u64::MAX.to_le_bytes());
            let mut late = vec![4];
            late.extend_from_slice(&u64::MAX.to_le_bytes());
            let program = |first: u8, parts: &[&[u8]]| {
                let mut v = vec![first];
                for p in parts {
                    v.extend_from_slice(p);
                }
                v
            };
            vec![
                program(0x05, &[&data(0, &key), &data(0, &key[..3]), &data(0, &key[3..]), &[9]]),
                program(0x00, &[&data(0, &clip), &gap, &data(0, &clip), &[3], &data(1, &clip)]),
                program(0x21, &[&late, &data(0, &key), &data(1, b"x"), &[9]]),
                program(0x1C, &[&data(0, &clip[..7]), &data(0, &clip[7..])]),
            ]
        }
        _ => Vec::new(),
    }
}

// ── Issue 24's resource classes: hostile segments and work oracles ──

/// `len` bytes of records that are not: at every 8-byte slot a data
/// record header (valid tag, a wrong CRC) claiming half of `len` as its
/// payload, so that a resynchronising reader that checks each candidate's
/// CRC in full spends the square of `len` (class 1).
pub fn resync_flood(len: usize) -> Vec<u8> {
    let claimed = (len / 2) as u32;
    let tag = format::record_tag(
        format::RecordKind::Data,
        Direction::ServerToClient.to_byte(),
    );
    let mut out = vec![0u8; len - len % 8];
    for slot in out.chunks_exact_mut(8) {
        slot[..4].copy_from_slice(&tag.to_le_bytes());
        slot[4..].copy_from_slice(&claimed.to_le_bytes());
    }
    out
}

/// Segment 0 of `main`, `len` bytes: a valid header, then
/// [`resync_flood`].
pub fn resync_flood_segment(len: usize) -> Vec<u8> {
    let mut seg = capture_builder::Seg::new("main", 0, 0).finish(0);
    seg.extend_from_slice(&resync_flood(len.saturating_sub(SEGMENT_HEADER_LEN)));
    set_capacity(&mut seg, len as u64);
    seg
}

/// A compressed segment (version 3) of `main`, index `index`: a valid
/// header claiming `capacity`, then one block per entry of `blocks`
/// (raw offset, raw bytes), each compressed with zstd.
pub fn compressed_segment(index: u64, capacity: u64, blocks: &[(u64, &[u8])]) -> Vec<u8> {
    compressed_segment_of("main", index, capacity, blocks, 19)
}

/// [`compressed_segment`] of channel `channel`, compressed at zstd `level`
/// (19 makes the smallest files; lower levels, faster ones).
pub fn compressed_segment_of(
    channel: &str,
    index: u64,
    capacity: u64,
    blocks: &[(u64, &[u8])],
    level: i32,
) -> Vec<u8> {
    let mut seg = capture_builder::Seg::new(channel, index, 0).finish(0);
    let mut h = SegmentHeader::read_from_bytes(&seg[..SEGMENT_HEADER_LEN]).unwrap();
    h.version.set(block::COMPRESSED_VERSION);
    h.capacity.set(capacity);
    h.header_crc.set(h.compute_crc());
    seg[..SEGMENT_HEADER_LEN].copy_from_slice(h.as_bytes());
    // The same raw bytes compress the same: once.
    let mut last: Option<(*const u8, usize, Vec<u8>)> = None;
    for (raw_offset, raw) in blocks {
        let key = (raw.as_ptr(), raw.len());
        if last.as_ref().is_none_or(|(p, l, _)| (*p, *l) != key) {
            last = Some((key.0, key.1, zstd::bulk::compress(raw, level).unwrap()));
        }
        let stored = &last.as_ref().unwrap().2;
        block::write_block(&mut seg, block::Codec::Zstd, raw.len(), *raw_offset, stored);
    }
    seg
}

/// The segment of `e2e::hostile::compressed_flood_capture`.
pub fn compressed_flood_segment(raw: usize) -> Vec<u8> {
    let flood = resync_flood(raw.min(block::MAX_BLOCK_RAW));
    let cap = (SEGMENT_HEADER_LEN + flood.len()) as u64;
    compressed_segment(0, cap, &[(SEGMENT_HEADER_LEN as u64, &flood)])
}

/// Segment `index` of `main`, compressed: `blocks` blocks of 8 MiB of
/// zeroes each, one after the other, claiming the largest capacity (the
/// blocks of `e2e::hostile::inflating_capture`).
pub fn inflating_segment(index: u64, blocks: usize) -> Vec<u8> {
    let zeros = vec![0u8; block::MAX_BLOCK_RAW];
    let blocks: Vec<(u64, &[u8])> = (0..blocks)
        .map(|i| ((SEGMENT_HEADER_LEN + i * zeros.len()) as u64, &zeros[..]))
        .collect();
    compressed_segment(index, format::MAX_SEGMENT_BYTES, &blocks)
}

/// Checks that reading `bytes` as a compressed segment inflates no more
/// than its header's `capacity` (at most [`format::MAX_SEGMENT_BYTES`]),
/// damaged blocks included (`FORMAT.md`, *Bounds*): a fuzz oracle.
pub fn assert_inflation_bounded(bytes: &[u8]) {
    let Some(header) = spool::store::compress::compressed_header(bytes) else {
        return;
    };
    let capacity = header.capacity.get().min(format::MAX_SEGMENT_BYTES);
    let mut r = BlockReader::new();
    while r.advance(bytes).is_some() {}
    assert!(
        r.inflated() <= capacity,
        "inflated {} bytes from a segment of capacity {capacity}",
        r.inflated()
    );
}

/// Checks that parsing `bytes` as a segment spends at most three times its
/// length on resynchronising (`FORMAT.md`, *Bounds*): a fuzz oracle.
pub fn assert_resync_bounded(bytes: &[u8]) {
    use spool::read::parse;
    let before = parse::resync_work();
    if let Ok(records) = parse::segment(bytes) {
        records.for_each(drop);
    }
    let work = parse::resync_work() - before;
    assert!(
        work <= 3 * bytes.len() as u64,
        "resynchronising checked {work} bytes of a {}-byte segment",
        bytes.len()
    );
}

/// Sets the `capacity` of the segment header at the start of `seg` and
/// reseals it.
fn set_capacity(seg: &mut [u8], capacity: u64) {
    let mut h = SegmentHeader::read_from_bytes(&seg[..SEGMENT_HEADER_LEN]).unwrap();
    h.capacity.set(capacity);
    h.header_crc.set(h.compute_crc());
    seg[..SEGMENT_HEADER_LEN].copy_from_slice(h.as_bytes());
}
