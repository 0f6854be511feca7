//! Reading a channel of a capture back ([`ChannelReader`]): its records in
//! order across its segments, every checksum validated. Finding the
//! channels and segments is [`Capture`]'s.
//!
//! One idea, one file, over 600 lines: beside the walk through a channel's
//! segments (plain, or a compressed one block by block) it holds the rule
//! for when a segment may be mapped (`map_segment`), which needs its
//! reasons next to it.
//!
//! The reader is written for files from strangers. Whatever the bytes, it
//! never panics and never allocates more than a file holds: a segment is read
//! into one reusable buffer bounded by the file's real length (and by
//! [`MAX_SEGMENT_BYTES`]; a sparse file's holes take no memory and its
//! trailing hole is not scanned) — or, when asked
//! ([`Capture::set_mapping`]) in a capture that was closed cleanly, mapped
//! where nothing of this project cuts the file short under the mapping
//! (see `map_segment` for the rule) — and every length field is checked
//! against what is actually there before it is used. Damage is reported as
//! a [`Damage`] naming the file and offset; reading then resumes at the
//! next record whose checksum is valid (within the scan budget of
//! `FORMAT.md`, *Bounds*), so every undamaged record is recovered.
//!
//! Every segment that has left staging has all its record CRCs, and says so
//! in its header ([`format::SEGMENT_FLAG_CRC_COMPLETE`]). A segment without
//! the flag — staged and read in place, or left by a crashed writer — may
//! hold records whose CRC is still zero: those pass on their tag and length
//! alone ([`CrcRule`]).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use memmap2::{Mmap, MmapOptions};
use zerocopy::FromBytes;

use crate::store::compress::{self, BlockReader, BlockStep};
use crate::store::format::{
    self, CrcRule, Direction, SegmentHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::store::limit::Trimmed;

pub use super::capture::{Capture, ChannelFiles, OpenError, SegmentFile, SessionInfo};
pub use super::event::{Damage, DamageKind, DataRecord, Event, Gap};
use super::parse::{self, Parsed, ScanBudget};

pub use crate::store::format::MAX_SEGMENT_BYTES;

/// Counters a [`ChannelReader`] keeps as it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Data records returned.
    pub records: u64,
    /// Payload bytes returned.
    pub bytes: u64,
    /// Gap records seen and their totals.
    pub gaps: u64,
    /// Records the writer dropped (from gap records).
    pub dropped_records: u64,
    /// Bytes the writer dropped (from gap records).
    pub dropped_bytes: u64,
    /// First and last data timestamps.
    pub first_ts_ns: Option<u64>,
    /// Last data timestamp.
    pub last_ts_ns: Option<u64>,
    /// Segments read.
    pub segments: u64,
    /// Bytes of segment files read.
    pub file_bytes: u64,
    /// Bytes those segments held as staged, before compression: equal to
    /// `file_bytes` for uncompressed segments; for compressed ones, the
    /// header and the records of every block decoded.
    pub raw_bytes: u64,
    /// Segments read that were compressed (format version 3).
    pub compressed_segments: u64,
    /// The last segment carried a final seal: the channel was closed cleanly.
    pub closed_cleanly: bool,
    /// Data records read from segments still in the staging directory: in
    /// a crashed session, what recovery saves.
    pub staged_records: u64,
    /// Segments read through a memory mapping of the file rather than
    /// copied into the reader's buffer: only segments of a cleanly closed
    /// capture, and only where no other process can cut the file short.
    pub mapped_segments: u64,
}

/// Iterates one channel's records across its segments, in order.
///
/// Call [`ChannelReader::next_event`] until it returns `None`. Data payloads
/// borrow the reader's buffer, so each must be used before the next call.
pub struct ChannelReader {
    files: ChannelFiles,
    next_segment: usize,
    expected_index: Option<u64>,
    /// The current segment when it was read into memory (kept, with its
    /// capacity, for the next one).
    buf: Vec<u8>,
    /// The current segment when it was mapped instead; [`Self::bytes`]
    /// gives whichever holds it.
    map: Option<Mmap>,
    /// The session id from the manifest of a cleanly closed capture, set by
    /// [`Capture::reader`]: the capture directory's segments may then be
    /// mapped if they carry it. `None` (the default): always read.
    pub(super) map_session: Option<[u8; 16]>,
    pos: usize,
    path: PathBuf,
    in_segment: bool,
    expected_seq: Option<u32>,
    segment_sealed: bool,
    segment_staged: bool,
    /// How the current segment's records are checked (from its header).
    crc_rule: CrcRule,
    /// Pays for resynchronising in the current segment, or block.
    scan: ScanBudget,
    /// The current segment is compressed: [`Self::bytes`] is then the
    /// block `blocks` decoded last, and `pos` an offset in it.
    compressed: bool,
    blocks: BlockReader,
    /// File offset and length on disk of that block, for damage reports.
    block_at: (u64, u64),
    session: Option<SessionInfo>,
    damage: Vec<Damage>,
    stats: ReadStats,
    trimmed: Option<Trimmed>,
    /// The capture is a memory-only ring, whose oldest segments are
    /// recycled as it runs: segments missing at the start, or vanishing
    /// while read, were trimmed, not lost.
    ring: bool,
    /// Set by [`Self::open_segment`] when the segment it tried was trimmed
    /// from the ring meanwhile.
    vanished: bool,
}

impl ChannelReader {
    /// A reader over the given channel's files.
    pub fn new(files: ChannelFiles) -> ChannelReader {
        ChannelReader {
            files,
            next_segment: 0,
            expected_index: None,
            buf: Vec::new(),
            map: None,
            map_session: None,
            pos: 0,
            path: PathBuf::new(),
            in_segment: false,
            expected_seq: None,
            segment_sealed: false,
            segment_staged: false,
            crc_rule: CrcRule::Every,
            scan: ScanBudget::for_len(0),
            compressed: false,
            blocks: BlockReader::new(),
            block_at: (0, 0),
            session: None,
            damage: Vec::new(),
            stats: ReadStats::default(),
            trimmed: None,
            ring: false,
            vanished: false,
        }
    }

    /// Tells the reader that the capture is a memory-only ring
    /// ([`crate::Manifest::memory_only`]). [`Capture::reader`] does this itself.
    pub fn set_ring(&mut self, ring: bool) {
        self.ring = ring;
    }

    /// Tells the reader that the flight recorder deleted the start of this
    /// channel (from the manifest), so the missing first segments are not
    /// damage. [`Capture::reader`] does this itself.
    pub fn set_trimmed(&mut self, trimmed: Option<Trimmed>) {
        self.trimmed = trimmed;
    }

    /// What the flight recorder deleted from the start of this channel.
    pub fn trimmed(&self) -> Option<&Trimmed> {
        self.trimmed.as_ref()
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        &self.files.name
    }

    /// Session facts from the first valid segment header read so far.
    pub fn session(&self) -> Option<SessionInfo> {
        self.session
    }

    /// Every damage found so far.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// Reads the first valid segment header without consuming any record, so
    /// a caller can learn the session start before converting.
    pub fn peek_session(&mut self) -> Option<SessionInfo> {
        if self.session.is_some() {
            return self.session;
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        for seg in &self.files.segments {
            let Ok(mut f) = crate::store::fsutil::open_regular(&seg.path) else {
                continue;
            };
            if f.read_exact(&mut header).is_err() {
                continue;
            }
            if let Ok(h) = SegmentHeader::read_from_bytes(&header[..]) {
                if (h.is_current() || compress::is_compressed(&h)) && h.checksum_ok() {
                    return Some(session_of(&h));
                }
            }
        }
        None
    }

    /// The next event, or `None` at the end of the channel.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        loop {
            if !self.in_segment {
                match self.open_next_segment() {
                    Some(Ok(())) => continue,
                    Some(Err(d)) => return Some(Event::Damage(d)),
                    None => return None,
                }
            }
            match self.step() {
                Step::Data {
                    start,
                    len,
                    dir,
                    ts,
                    seq,
                } => {
                    self.stats.records = self.stats.records.saturating_add(1);
                    self.stats.staged_records = self
                        .stats
                        .staged_records
                        .saturating_add(self.segment_staged as u64);
                    self.stats.bytes = self.stats.bytes.saturating_add(len as u64);
                    self.stats.first_ts_ns.get_or_insert(ts);
                    self.stats.last_ts_ns = Some(ts);
                    return Some(Event::Data(DataRecord {
                        direction: dir,
                        ts_ns: ts,
                        seq,
                        payload: &self.bytes()[start..start + len],
                    }));
                }
                Step::Gap(g) => {
                    // Counts read from disk: a hostile capture can make
                    // them add past u64::MAX.
                    self.stats.gaps = self.stats.gaps.saturating_add(1);
                    self.stats.dropped_records =
                        self.stats.dropped_records.saturating_add(g.records());
                    self.stats.dropped_bytes = self.stats.dropped_bytes.saturating_add(g.bytes());
                    return Some(Event::Gap(g));
                }
                Step::Damage(d) => return Some(Event::Damage(d)),
                Step::EndOfSegment => {
                    self.in_segment = false;
                    if self.segment_staged && !self.segment_sealed {
                        // The live end of a running session (or the last
                        // segment of a crashed one): records may still be
                        // arriving here, so reading on into a later segment
                        // could skip them. Stop.
                        self.next_segment = self.files.segments.len();
                    }
                    continue;
                }
            }
        }
    }

    fn report(&mut self, offset: usize, len: usize, kind: DamageKind) -> Damage {
        let d = Damage {
            file: self.path.clone(),
            offset: offset as u64,
            len: len as u64,
            kind,
            records_lost: 0,
        };
        self.damage.push(d.clone());
        d
    }

    /// Loads the next segment into the buffer and checks its header.
    /// `Some(Err)` reports a damaged or missing segment (the caller moves on).
    fn open_next_segment(&mut self) -> Option<Result<(), Damage>> {
        loop {
            let opened = self.open_segment();
            if !std::mem::take(&mut self.vanished) {
                return opened;
            }
            // Trimmed from a ring since the listing: what follows starts
            // the channel afresh, as the first segment present would.
            self.expected_index = None;
            self.expected_seq = None;
        }
    }

    /// One try of [`Self::open_next_segment`].
    fn open_segment(&mut self) -> Option<Result<(), Damage>> {
        let seg = self.files.segments.get(self.next_segment)?.clone();
        // Segments before the first one present are missing unless the
        // flight recorder trimmed them (a ring trims them all).
        let expected = self.expected_index.unwrap_or_else(|| {
            if self.ring {
                seg.index
            } else {
                self.trimmed
                    .map_or(0, |t| t.first_kept_index)
                    .min(seg.index)
            }
        });
        if seg.index > expected {
            self.expected_index = Some(seg.index);
            self.path = seg.path.with_file_name(format::segment_file_name(expected));
            let kind = DamageKind::MissingSegments {
                first: expected,
                count: seg.index - expected,
            };
            return Some(Err(self.report(0, 0, kind)));
        }
        self.next_segment += 1;
        // Names are read from disk: `u64::MAX.seg` is the last there can
        // be, and nothing is expected after it.
        self.expected_index = Some(seg.index.saturating_add(1));
        self.stats.segments = self.stats.segments.saturating_add(1);
        self.segment_sealed = false;

        let mut loaded = self.load_segment(&seg);
        if loaded.is_ok() && seg.staged && header_checksum_fails(self.bytes()) {
            // The retirer flags a staged segment's header once its CRCs are
            // in: the flag, then the checksum. A read racing the two stores
            // can see the new checksum with the old flags. Look once more.
            loaded = self.load_segment(&seg);
        }
        if let Err(kind) = loaded {
            // Before anything of the channel was read, a segment trimmed
            // meanwhile only moves its start; after, it is a hole, and
            // reported as one.
            let first = self.stats.segments == 1;
            if self.ring && first && seg.staged && matches!(kind, DamageKind::Unreadable(_)) {
                self.stats.segments = 0;
                self.vanished = true;
                return None;
            }
            return Some(Err(self.report(0, 0, kind)));
        }
        let bytes = self.bytes();
        let file_len = bytes.len();
        let header_is_zero = bytes[..file_len.min(SEGMENT_HEADER_LEN)]
            .iter()
            .all(|&b| b == 0);
        self.stats.file_bytes = self.stats.file_bytes.saturating_add(file_len as u64);
        self.segment_staged = seg.staged;
        if seg.staged && header_is_zero {
            // A segment the writer's preparer is still setting up: nothing
            // follows it yet.
            self.next_segment = self.files.segments.len();
            return Some(Ok(()));
        }
        let header = match parse::check_header(self.bytes()) {
            Ok(header) => header,
            Err(d) => match compress::compressed_header(self.bytes()) {
                Some(header) => header,
                None => {
                    let (offset, len) = (d.offset as usize, d.len as usize);
                    return Some(Err(self.report(offset, len, d.kind)));
                }
            },
        };
        self.in_segment = true;
        self.pos = SEGMENT_HEADER_LEN;
        self.crc_rule = CrcRule::of_header(&header);
        self.scan = ScanBudget::for_len(file_len);
        if compress::is_compressed(&header) {
            // The records are in blocks: `step` decodes the first when it
            // finds this empty one used up. Every record has its CRC.
            self.stats.compressed_segments = self.stats.compressed_segments.saturating_add(1);
            self.stats.raw_bytes = self
                .stats
                .raw_bytes
                .saturating_add(SEGMENT_HEADER_LEN as u64);
            self.blocks.rewind();
            self.block_at = (SEGMENT_HEADER_LEN as u64, 0);
            self.pos = 0;
            self.crc_rule = CrcRule::Every;
            self.compressed = true;
        } else {
            self.stats.raw_bytes = self.stats.raw_bytes.saturating_add(file_len as u64);
        }
        if !header.checksum_ok() {
            // The records carry their own checksums: keep reading them.
            return Some(Err(self.report(
                0,
                SEGMENT_HEADER_LEN,
                DamageKind::BadHeaderChecksum,
            )));
        }
        if self.session.is_none() {
            self.session = Some(session_of(&header));
        }
        if self.expected_seq.is_none() {
            self.expected_seq = Some(header.first_seq.get() as u32);
        }
        let session = self.session.map(|s| s.session_id);
        if let Some(what) =
            parse::header_mismatch(&header, &self.files.name, seg.index, session.as_ref())
        {
            return Some(Err(self.report(
                0,
                SEGMENT_HEADER_LEN,
                DamageKind::HeaderMismatch(what),
            )));
        }
        Some(Ok(()))
    }

    /// Loads `seg`, or the capture directory's copy if a staged segment was
    /// moved there since it was listed.
    fn load_segment(&mut self, seg: &SegmentFile) -> Result<(), DamageKind> {
        self.path = seg.path.clone();
        // Until its header says otherwise, the segment's bytes are the file.
        self.compressed = false;
        // Never a staged segment: staged files are written live (and a
        // staged listing is no capture-directory file, even once moved).
        let may_map = !seg.staged;
        let mut loaded = self.load(&seg.path, may_map, seg.staged);
        if seg.staged && loaded.is_ok() {
            loaded = self.reload_committed(&seg.path);
        }
        if let (Err(DamageKind::Unreadable(_)), Some(moved)) = (&loaded, &seg.moved_to) {
            loaded = self.load(moved, false, false);
            if loaded.is_ok() {
                self.path = moved.clone();
            }
        }
        loaded
    }

    /// The bytes records are read from: the current segment file, mapped
    /// or read — or, in a compressed segment, the current block decoded.
    #[inline]
    fn bytes(&self) -> &[u8] {
        if self.compressed {
            return self.blocks.records();
        }
        loaded(&self.map, &self.buf)
    }

    /// Decodes the next block of the current compressed segment: `None` to
    /// read its records, damage for bytes that are no intact block, or the
    /// end of the segment.
    fn next_block(&mut self) -> Option<Step> {
        self.pos = 0;
        match self.blocks.advance(loaded(&self.map, &self.buf)) {
            None => Some(Step::EndOfSegment),
            Some(BlockStep::Records {
                file_offset,
                file_len,
                ..
            }) => {
                self.block_at = (file_offset, file_len);
                self.scan = ScanBudget::for_len(self.blocks.records().len());
                let raw = self.blocks.records().len() as u64;
                self.stats.raw_bytes = self.stats.raw_bytes.saturating_add(raw);
                None
            }
            Some(BlockStep::Damaged { file_offset, len }) => {
                self.block_at = (file_offset, len);
                let (at, len) = (file_offset as usize, len as usize);
                Some(Step::Damage(self.report(at, len, DamageKind::Corrupt)))
            }
        }
    }

    /// [`Self::report`] for damage the parser found at `offset` of
    /// [`Self::bytes`]: in a compressed segment, an offset in decompressed
    /// bytes would point nowhere in the file, so the block is named.
    fn report_parsed(&mut self, offset: u64, len: u64, kind: DamageKind) -> Damage {
        if self.compressed {
            let (at, block_len) = self.block_at;
            return self.report(at as usize, block_len as usize, DamageKind::CorruptInBlock);
        }
        self.report(offset as usize, len as usize, kind)
    }

    /// Loads the segment at `path`: mapped if `may_map` and the rule of
    /// [`map_segment`] allows, else read into the buffer. A `staged` file
    /// that no longer bears its name once read was moved meanwhile, and
    /// perhaps reused for another segment (`FORMAT.md`, "Sealing and
    /// moving"): what was read is not trusted, and the capture directory's
    /// copy is read instead.
    fn load(&mut self, path: &Path, may_map: bool, staged: bool) -> Result<(), DamageKind> {
        // The previous segment's mapping goes, whatever happens next.
        self.map = None;
        // Never follow a symlink planted where a segment should be, nor
        // block on a FIFO; the checks are of the file actually opened.
        let mut file = crate::store::fsutil::open_regular(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput || e.raw_os_error() == Some(libc::ELOOP)
            {
                DamageKind::NotARegularFile
            } else {
                DamageKind::Unreadable(e.to_string())
            }
        })?;
        let md = file
            .metadata()
            .map_err(|e| DamageKind::Unreadable(e.to_string()))?;
        if let Some(kind) = super::too_large(md.len()) {
            return Err(kind);
        }
        if let Some(session) = self.map_session.filter(|_| may_map) {
            if let Some(map) = map_segment(&file, &session) {
                self.map = Some(map);
                self.stats.mapped_segments += 1;
                return Ok(());
            }
        }
        self.buf.clear();
        // The file's real size, checked against the limit above: one
        // allocation instead of repeated doubling.
        self.buf.reserve(md.len() as usize);
        // Bounded by the limit even if the file grows meanwhile.
        let data_end = super::read_range(&mut file, 0, MAX_SEGMENT_BYTES, &mut self.buf)
            .map_err(|e| DamageKind::Unreadable(e.to_string()))?;
        if let Some(end) = data_end {
            // A sparse file's trailing hole: zeroes, room the writer never
            // used, as if the file ended with its data (never shorter than
            // a header, whose absence would be damage of another kind).
            self.buf.truncate(end.max(SEGMENT_HEADER_LEN));
        }
        // Past `written_to` lies a reused segment's previous use.
        let written = format::written_part(&self.buf).len();
        self.buf.truncate(written);
        if staged && !crate::store::fsutil::still_names(path, &file) {
            return Err(DamageKind::Unreadable("moved while read".into()));
        }
        Ok(())
    }

    /// Reads a staged segment, just loaded, a second time and keeps only the
    /// records the first read saw committed: its writer may still be
    /// appending, and `read()` gives no ordering between a record's tag and
    /// its payload, which carries no CRC yet. An acquire fence between the
    /// two reads makes every record committed in the first whole in the
    /// second (see [`format::committed_end`]); bytes past them are zeroed,
    /// as if not written yet. A segment whose CRCs are complete is final
    /// and left as read.
    fn reload_committed(&mut self, path: &Path) -> Result<(), DamageKind> {
        let rule = match self
            .buf
            .get(..SEGMENT_HEADER_LEN)
            .and_then(|h| SegmentHeader::read_from_bytes(h).ok())
        {
            Some(h) if h.is_current() => CrcRule::of_header(&h),
            _ => return Ok(()),
        };
        if rule == CrcRule::Every {
            return Ok(());
        }
        let end = format::committed_end(&self.buf, SEGMENT_HEADER_LEN, rule);
        fence(Ordering::Acquire);
        self.load(path, false, true)?;
        if let Some(rest) = self.buf.get_mut(end..) {
            rest.fill(0);
        }
        Ok(())
    }

    fn is_last_segment(&self) -> bool {
        self.next_segment >= self.files.segments.len()
    }

    /// The next thing in the current segment, from the shared parser.
    fn step(&mut self) -> Step {
        if self.segment_sealed {
            return Step::EndOfSegment;
        }
        // In a compressed segment, the next block once one is used up (a
        // loop: a hostile file may hold any number of blocks that decode to
        // nothing).
        while self.compressed && self.pos >= self.blocks.records().len() {
            if let Some(step) = self.next_block() {
                return step;
            }
        }
        // The fields, not `self.bytes()`: `self.pos` is set while the
        // bytes are borrowed.
        let bytes = if self.compressed {
            self.blocks.records()
        } else {
            loaded(&self.map, &self.buf)
        };
        let Some((item, next)) =
            parse::next_item(bytes, self.pos, 0, self.crc_rule, &mut self.scan)
        else {
            // The end, or unused room at the end of an unsealed segment (a
            // block decodes only if it is whole records to its end).
            return Step::EndOfSegment;
        };
        self.pos = next;
        match item {
            Parsed::Data { offset, record } => {
                let (len, dir, ts, seq) = (
                    record.payload.len(),
                    record.direction,
                    record.ts_ns,
                    record.seq,
                );
                self.count_lost_before(seq);
                Step::Data {
                    start: offset as usize + RECORD_HEADER_LEN,
                    len,
                    dir,
                    ts,
                    seq,
                }
            }
            Parsed::Gap { seq, gap, .. } => {
                self.count_lost_before(seq);
                Step::Gap(gap)
            }
            Parsed::Seal { seq, is_final, .. } => {
                self.count_lost_before(seq);
                self.segment_sealed = true;
                self.stats.closed_cleanly = is_final && self.is_last_segment();
                Step::EndOfSegment
            }
            Parsed::Invalid { offset, len, seq } => {
                self.count_lost_before(seq);
                Step::Damage(self.report_parsed(offset, len, DamageKind::Corrupt))
            }
            Parsed::Skipped {
                offset,
                len,
                next_seq,
            } => {
                // The next good record's sequence number tells how many
                // records the damaged bytes held; it is checked again when
                // read.
                let lost = self.check_seq(next_seq);
                if let Some(e) = self.expected_seq.as_mut() {
                    *e = e.wrapping_sub(1);
                }
                let mut d = self.report_parsed(offset, len, DamageKind::Corrupt);
                d.records_lost = lost;
                if let Some(last) = self.damage.last_mut() {
                    last.records_lost = lost;
                }
                Step::Damage(d)
            }
            Parsed::Tail {
                offset,
                len,
                tag_is_zero,
            } => {
                // The writer stores the tag last: a record whose tag is
                // zero was never acknowledged (or, in a live session, is
                // being written right now).
                // A compressed block holds committed records only.
                let kind = if tag_is_zero
                    && !self.compressed
                    && (self.is_last_segment() || self.segment_staged)
                {
                    DamageKind::TornTail
                } else {
                    DamageKind::Corrupt
                };
                Step::Damage(self.report_parsed(offset, len, kind))
            }
        }
    }

    /// Checks `seq` of a valid record; records missing before it are
    /// added to the damage just reported.
    fn count_lost_before(&mut self, seq: u32) {
        let lost = self.check_seq(seq);
        if lost > 0 {
            if let Some(d) = self.damage.last_mut() {
                d.records_lost = d.records_lost.saturating_add(lost);
            }
        }
    }

    /// Returns how many records are missing before `seq`, and advances.
    fn check_seq(&mut self, seq: u32) -> u64 {
        let lost = match self.expected_seq {
            Some(e) => seq.wrapping_sub(e) as u64,
            None => 0,
        };
        self.expected_seq = Some(seq.wrapping_add(1));
        // A huge "gap" is a sequence going backwards, not billions of losses.
        if lost > (u32::MAX / 2) as u64 {
            0
        } else {
            lost
        }
    }
}

/// Maps a segment file instead of reading it, where that is safe; `None`
/// means read it. The caller asks only for a segment listed in the capture
/// directory (never a staged one) of a capture whose manifest says
/// `clean_shutdown: true`, and passes that manifest's session id.
///
/// A mapping is only as good as the file under it: should the file be cut
/// short while mapped, touching a page past its new end kills the process
/// with `SIGBUS` — no error to report, no damage to skip past. Within this
/// project a segment file is cut short only by its own writer, while the
/// session runs: in direct mode (no memory-backed staging) segments are
/// mapped in the capture directory itself, and the retirer truncates each
/// one to the bytes in use once sealed (`finish_in_place`). Staged segments
/// on tmpfs are being written live. So a segment is mapped only if all of
/// this holds:
///
/// * **The capture was closed cleanly.** The writer stores
///   `clean_shutdown: true` only after its retirer thread has finished and
///   been joined — every segment moved in, cut to size and synced — and no
///   writer ever reopens a directory that holds a manifest
///   ([`crate::Spool::create`] refuses). A live session says `false`, and
///   so does a crashed one, whose writer cannot be told dead in direct mode;
///   crash recovery keeps it `false` (and replaces files by rename, which a
///   mapping does not notice, never in place). The manifest is the only
///   thing that tells "no writer can be live"; the seal records cannot —
///   they are written before the retirer cuts the file. (A file deleted
///   while mapped — the flight recorder's ring, a removed capture — stays
///   readable: deleting is not truncating.)
///   A clean close may leave sealed segments staged (`pending_move:
///   true`): the writer has still joined its retirer first, so nothing
///   cuts a capture-directory file any more. What moves them afterwards —
///   the mover process, or recovery — never touches a file in the capture
///   directory in place: it writes a new `NNNNNNNN.seg.tmp` (a name no
///   listing takes for a segment) and renames it over the segment's name
///   once complete, which leaves a mapping of any earlier file as it was.
///   Direct mode never leaves a move pending.
/// * **Not staged.** The staging directory holds segments being written.
/// * **Nobody else can cut it.** The file as opened is a regular file owned
///   by this user and not writable by group or others, so whatever a
///   stranger's manifest claims, no other user (root aside) can truncate it.
///   Someone else's capture, read where it lies, is read, not mapped.
/// * **Within bounds.** Not empty (mapping an empty file fails on some
///   platforms, and there is nothing to map), and no larger than
///   [`MAX_SEGMENT_BYTES`], the bound the read path puts on any segment.
///   The length mapped is the file's length as opened.
/// * **It is that session's.** Its header carries the manifest's session
///   id: were the directory replaced by a new, live session since the
///   manifest was read, its files would not.
///
/// Whatever the bytes, the reader checks every length against the mapped
/// length, as against a buffer. What the rule cannot exclude: this user
/// truncating the file by hand during a read, or an I/O error when a page
/// of a failing disk is faulted in — where `read` would have reported the
/// segment unreadable, a mapped read dies.
fn map_segment(file: &File, session: &[u8; 16]) -> Option<Mmap> {
    let md = file.metadata().ok()?;
    if !md.is_file()
        || md.len() == 0
        || md.len() > MAX_SEGMENT_BYTES
        || md.uid() != crate::store::fsutil::current_uid()
        || md.mode() & 0o022 != 0
    {
        return None;
    }
    let len = usize::try_from(md.len()).ok()?;
    // Pages are faulted in as the records are walked, not all up front
    // (`MAP_POPULATE`): the walk touches each page once anyway, and with a
    // warm page cache faulting as it goes was no slower.
    //
    // SAFETY: a mapped file must not change, nor shrink, while the mapping
    // lives. It is a segment of a cleanly closed capture, owned by this
    // user and writable by nobody else: in this project nothing writes or
    // truncates such a file any more (see above). `len` is the file's size
    // as opened, nonzero.
    let map = unsafe { MmapOptions::new().len(len).map(file) }.ok()?;
    let header = SegmentHeader::read_from_bytes(map.get(..SEGMENT_HEADER_LEN)?).ok()?;
    // A file with bytes past its `written_to` is read, which cuts them off
    // (no segment this project closes has any).
    let whole = format::written_part(&map).len() == map.len();
    (header.session_id == *session && whole).then_some(map)
}

/// The current segment's bytes, from its fields: mapped, or read into the
/// buffer.
#[inline]
fn loaded<'a>(map: &'a Option<Mmap>, buf: &'a [u8]) -> &'a [u8] {
    match map {
        Some(m) => m,
        None => buf,
    }
}

/// Whether `buf` starts with a segment header whose checksum does not match.
fn header_checksum_fails(buf: &[u8]) -> bool {
    buf.get(..SEGMENT_HEADER_LEN)
        .and_then(|b| SegmentHeader::read_from_bytes(b).ok())
        .is_some_and(|h| h.magic == SEGMENT_MAGIC && !h.checksum_ok())
}

fn session_of(h: &SegmentHeader) -> SessionInfo {
    SessionInfo {
        session_id: h.session_id,
        session_start_unix_ns: h.session_start_unix_ns.get(),
        monotonic_base_ns: h.monotonic_base_ns.get(),
    }
}

enum Step {
    Data {
        start: usize,
        len: usize,
        dir: Direction,
        ts: u64,
        seq: u32,
    },
    Gap(Gap),
    Damage(Damage),
    EndOfSegment,
}
