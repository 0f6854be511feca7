//! Reading a channel of a capture back ([`ChannelReader`]): its records in
//! order across its segments, every checksum validated. Finding the
//! channels and segments is [`Capture`](super::capture::Capture)'s.
//!
//! One idea, one file, over 600 lines: beside the walk through a channel's
//! segments (plain, or a compressed one block by block) it holds the rule
//! for when a segment may be mapped (`map_segment`), which needs its
//! reasons next to it.
//!
//! The reader is written for files from strangers. Whatever the bytes, it
//! never panics and never holds more of a segment than one window of its
//! file (see `window`: 1 MiB, less when many are open), grown only to the
//! record or compressed block at hand (at most
//! [`format::MAX_RECORD_PAYLOAD`], or one block); a sparse file's trailing
//! hole is not scanned. Or, when asked ([`Capture::set_mapping`](super::capture::Capture::set_mapping)) in a
//! capture that was closed cleanly, a segment is mapped where nothing of
//! this project cuts the file short under the mapping (see `map_segment`
//! for the rule). Every length field is checked against what is actually
//! there before it is used. Damage is reported as a [`Damage`] naming the
//! file and offset; reading then resumes at the next record whose checksum
//! is valid (within the scan budget of `FORMAT.md`, *Bounds*), so every
//! undamaged record is recovered. The first [`MAX_DAMAGE_KEPT`](super::event::MAX_DAMAGE_KEPT) damaged
//! ranges are kept in detail, and all are counted ([`DamageTotals`]).
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
use crate::store::source::ByteSource;

use super::capture::{ChannelFiles, SegmentFile, SessionInfo};
use super::event::DamageLog;
use super::event::{Damage, DamageKind, DamageTotals, DataRecord, Event, Gap};
use super::parse::{self, Found, Parsed, ScanBudget};
use super::window::{self, FileWindow, SegmentBytes};
use crate::store::format::MAX_SEGMENT_BYTES;

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
    /// The current segment's bytes: a bounded window over its file, or a
    /// mapping of it.
    src: SegmentBytes,
    /// The window's buffer between segments, kept for its capacity.
    spare: Vec<u8>,
    /// The session id from the manifest of a cleanly closed capture, set by
    /// [`Capture::reader`]: the capture directory's segments may then be
    /// mapped if they carry it. `None` (the default): always read.
    pub(super) map_session: Option<[u8; 16]>,
    /// Where the next record is: a file offset in a plain segment; in a
    /// compressed one, an offset in the block `blocks` decoded last.
    pos: u64,
    path: PathBuf,
    /// Bytes of the current segment's file (its trailing hole excluded).
    file_len: u64,
    /// For a staged segment: where its writer moves it, to read on from
    /// should it move while it is read.
    moved_to: Option<PathBuf>,
    /// Records of the current segment before this offset (in the segment
    /// as staged) were read from its staged copy before it moved.
    resume_at: u64,
    in_segment: bool,
    expected_seq: Option<u32>,
    segment_sealed: bool,
    /// Nothing more of the current segment can be read (a read failed).
    segment_done: bool,
    segment_staged: bool,
    /// How the current segment's records are checked (from its header).
    crc_rule: CrcRule,
    /// Pays for resynchronising in the current segment, or block.
    scan: ScanBudget,
    /// The current segment is compressed: records are then read from the
    /// block `blocks` decoded last, and `pos` is an offset in it.
    compressed: bool,
    blocks: BlockReader,
    /// File offset and length on disk of that block, for damage reports.
    block_at: (u64, u64),
    /// Offset of that block's records in the segment as staged.
    block_raw: u64,
    session: Option<SessionInfo>,
    damage: DamageLog,
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
            src: SegmentBytes::None,
            spare: Vec::new(),
            map_session: None,
            pos: 0,
            path: PathBuf::new(),
            file_len: 0,
            moved_to: None,
            resume_at: 0,
            in_segment: false,
            expected_seq: None,
            segment_sealed: false,
            segment_done: false,
            segment_staged: false,
            crc_rule: CrcRule::Every,
            scan: ScanBudget::for_len(0),
            compressed: false,
            blocks: BlockReader::new(),
            block_at: (0, 0),
            block_raw: 0,
            session: None,
            damage: DamageLog::default(),
            stats: ReadStats::default(),
            trimmed: None,
            ring: false,
            vanished: false,
        }
    }

    /// Tells the reader that the capture is a memory-only ring
    /// ([`crate::Manifest::memory_only`]). [`Capture::reader`](super::capture::Capture::reader) does this itself.
    pub fn set_ring(&mut self, ring: bool) {
        self.ring = ring;
    }

    /// Tells the reader that the flight recorder deleted the start of this
    /// channel (from the manifest), so the missing first segments are not
    /// damage. [`Capture::reader`](super::capture::Capture::reader) does this itself.
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

    /// The damage found so far: the first [`MAX_DAMAGE_KEPT`](super::event::MAX_DAMAGE_KEPT) regions, in
    /// order (fewer once the readers of this process keep
    /// [`MAX_DAMAGE_KEPT_IN_ALL`](super::event::MAX_DAMAGE_KEPT_IN_ALL) in all); [`Self::damage_totals`] counts
    /// them all.
    pub fn damage(&self) -> &[Damage] {
        self.damage.kept()
    }

    /// Every damage found so far, counted, however many.
    pub fn damage_totals(&self) -> DamageTotals {
        self.damage.totals()
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
                    None => {
                        self.release();
                        return None;
                    }
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
                    self.count_data(len, ts);
                    return Some(Event::Data(DataRecord {
                        direction: dir,
                        ts_ns: ts,
                        seq,
                        payload: self.record_bytes(start, len),
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
                Step::Nothing => continue,
                Step::EndOfSegment => self.end_segment(),
            }
        }
    }

    /// Counts a data record of `len` bytes at `ts` about to be returned.
    fn count_data(&mut self, len: usize, ts: u64) {
        let st = &mut self.stats;
        st.records = st.records.saturating_add(1);
        st.staged_records = st.staged_records.saturating_add(self.segment_staged as u64);
        st.bytes = st.bytes.saturating_add(len as u64);
        st.first_ts_ns.get_or_insert(ts);
        st.last_ts_ns = Some(ts);
    }

    /// Leaves the current segment: its file and window go.
    fn end_segment(&mut self) {
        self.in_segment = false;
        self.close_source();
        if self.segment_staged && !self.segment_sealed {
            // The live end of a running session (or the last segment of a
            // crashed one): records may still be arriving here, so reading
            // on into a later segment could skip them. Stop.
            self.next_segment = self.files.segments.len();
        }
    }

    /// Bytes of memory the reader holds now for what it reads: its window
    /// (or the buffer kept for the next one) and the current block's
    /// records. A merge of many channels adds these up
    /// (`spool2pcap`'s merge budget).
    pub fn held_bytes(&self) -> usize {
        self.src.held_bytes() + self.spare.capacity() + self.blocks.held_bytes()
    }

    /// Gives the buffers back at the end of the channel: a merge keeps
    /// every channel's reader until all are done.
    fn release(&mut self) {
        self.close_source();
        self.spare = Vec::new();
        self.blocks.release();
    }

    /// Closes the current segment's file, keeping the window's buffer.
    fn close_source(&mut self) {
        if let SegmentBytes::Window(w) = std::mem::replace(&mut self.src, SegmentBytes::None) {
            self.spare = w.into_buf();
        }
    }

    /// `len` bytes at `at` of the current record bytes: the segment's, or
    /// the current block's.
    fn record_bytes(&self, at: u64, len: usize) -> &[u8] {
        if self.compressed {
            let records = self.blocks.records();
            let from = (at as usize).min(records.len());
            return &records[from..from.saturating_add(len).min(records.len())];
        }
        self.src.loaded(at, len)
    }

    fn report(&mut self, offset: u64, len: u64, kind: DamageKind) -> Damage {
        let d = Damage {
            file: self.path.clone(),
            offset,
            len,
            kind,
            records_lost: 0,
        };
        self.damage.push(d.clone());
        d
    }

    /// Opens the next segment and checks its header. `Some(Err)` reports a
    /// damaged or missing segment (the caller moves on).
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
        if let Some(missing) = self.missing_before(&seg) {
            return Some(Err(missing));
        }
        self.next_segment += 1;
        // Names are read from disk: `u64::MAX.seg` is the last there can
        // be, and nothing is expected after it.
        self.expected_index = Some(seg.index.saturating_add(1));
        self.stats.segments = self.stats.segments.saturating_add(1);
        self.segment_sealed = false;
        self.segment_done = false;
        let mut loaded = self.load_segment(&seg);
        if loaded.is_ok() && seg.staged && self.header_wants_second_look() {
            // The retirer flags a staged segment's header once its CRCs are
            // in: the flag, then the checksum. A read racing the two stores
            // can see the new checksum with the old flags; or the segment
            // moved since it was loaded. Look once more.
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
        self.start_segment(&seg)
    }

    /// The damage of the segments missing before `seg`, if any: segments
    /// before the first one present are missing unless the flight
    /// recorder trimmed them (a ring trims them all).
    fn missing_before(&mut self, seg: &SegmentFile) -> Option<Damage> {
        let expected = self.expected_index.unwrap_or_else(|| {
            if self.ring {
                seg.index
            } else {
                self.trimmed
                    .map_or(0, |t| t.first_kept_index)
                    .min(seg.index)
            }
        });
        if seg.index <= expected {
            return None;
        }
        self.expected_index = Some(seg.index);
        self.path = seg.path.with_file_name(format::segment_file_name(expected));
        let kind = DamageKind::MissingSegments {
            first: expected,
            count: seg.index - expected,
        };
        Some(self.report(0, 0, kind))
    }

    /// The current segment's header bytes (fewer if the file is shorter).
    fn header_bytes(&mut self) -> Result<([u8; SEGMENT_HEADER_LEN], usize), DamageKind> {
        let got = self
            .src
            .get(0, SEGMENT_HEADER_LEN)
            .map_err(|e| DamageKind::Unreadable(e.to_string()))?;
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        header[..got.len()].copy_from_slice(got);
        Ok((header, got.len()))
    }

    /// Begins reading the segment just loaded: checks its header.
    fn start_segment(&mut self, seg: &SegmentFile) -> Option<Result<(), Damage>> {
        let (header_bytes, n) = match self.header_bytes() {
            Ok(h) => h,
            Err(kind) => return Some(Err(self.report(0, 0, kind))),
        };
        let head = &header_bytes[..n];
        self.stats.file_bytes = self.stats.file_bytes.saturating_add(self.file_len);
        self.segment_staged = seg.staged;
        if seg.staged && head.iter().all(|&b| b == 0) {
            // A segment the writer's preparer is still setting up: nothing
            // follows it yet.
            self.next_segment = self.files.segments.len();
            return Some(Ok(()));
        }
        let header = match parse::check_header(head) {
            Ok(header) => header,
            Err(d) => match compress::compressed_header(head) {
                Some(header) => header,
                None => return Some(Err(self.report(d.offset, d.len, d.kind))),
            },
        };
        self.in_segment = true;
        self.pos = SEGMENT_HEADER_LEN as u64;
        self.crc_rule = CrcRule::of_header(&header);
        self.scan = ScanBudget::for_len(usize::try_from(self.file_len).unwrap_or(usize::MAX));
        if compress::is_compressed(&header) {
            self.stats.compressed_segments = self.stats.compressed_segments.saturating_add(1);
            self.begin_blocks();
        } else {
            self.stats.raw_bytes = self.stats.raw_bytes.saturating_add(self.file_len);
        }
        Some(self.check_header(&header, seg.index).map_or(Ok(()), Err))
    }

    /// Reads the current segment as compressed: [`Self::step`] decodes the
    /// first block when it finds this empty one used up. Every record has
    /// its CRC.
    fn begin_blocks(&mut self) {
        self.stats.raw_bytes = self
            .stats
            .raw_bytes
            .saturating_add(SEGMENT_HEADER_LEN as u64);
        self.blocks.rewind();
        self.block_at = (SEGMENT_HEADER_LEN as u64, 0);
        self.pos = 0;
        self.crc_rule = CrcRule::Every;
        self.compressed = true;
    }

    /// The damage of a segment header that is not the one expected here
    /// (its records are still read: they carry their own checksums); takes
    /// the session and first sequence number from a good one.
    fn check_header(&mut self, header: &SegmentHeader, index: u64) -> Option<Damage> {
        let header_len = SEGMENT_HEADER_LEN as u64;
        if !header.checksum_ok() {
            return Some(self.report(0, header_len, DamageKind::BadHeaderChecksum));
        }
        if self.session.is_none() {
            self.session = Some(session_of(header));
        }
        if self.expected_seq.is_none() {
            self.expected_seq = Some(header.first_seq.get() as u32);
        }
        let session = self.session.map(|s| s.session_id);
        let what = parse::header_mismatch(header, &self.files.name, index, session.as_ref())?;
        Some(self.report(0, header_len, DamageKind::HeaderMismatch(what)))
    }

    /// Loads `seg`, or the capture directory's copy if a staged segment was
    /// moved there since it was listed.
    fn load_segment(&mut self, seg: &SegmentFile) -> Result<(), DamageKind> {
        self.path = seg.path.clone();
        self.moved_to = seg.moved_to.clone();
        self.resume_at = 0;
        // Until its header says otherwise, the segment's bytes are the file.
        self.compressed = false;
        // Never a staged segment: staged files are written live (and a
        // staged listing is no capture-directory file, even once moved).
        let may_map = !seg.staged;
        let mut loaded = self.load(&seg.path, may_map, seg.staged);
        if seg.staged && loaded.is_ok() {
            loaded = self.reload_committed();
        }
        if let (Err(DamageKind::Unreadable(_)), Some(moved)) = (&loaded, &seg.moved_to) {
            loaded = self.load(moved, false, false);
            if loaded.is_ok() {
                self.path = moved.clone();
                self.moved_to = None;
            }
        }
        loaded
    }

    /// Decodes the next block of the current compressed segment: `None` to
    /// read its records, damage for bytes that are no intact block, or the
    /// end of the segment.
    fn next_block(&mut self) -> Option<Step> {
        self.pos = 0;
        match self.blocks.advance_in(&mut self.src) {
            Err(e) => Some(self.read_failed(e)),
            Ok(None) => Some(Step::EndOfSegment),
            Ok(Some(BlockStep::Records {
                file_offset,
                file_len,
                raw_offset,
            })) => {
                self.block_at = (file_offset, file_len);
                self.block_raw = raw_offset;
                self.scan = ScanBudget::for_len(self.blocks.records().len());
                let raw = self.blocks.records().len() as u64;
                self.stats.raw_bytes = self.stats.raw_bytes.saturating_add(raw);
                None
            }
            Ok(Some(BlockStep::Damaged { file_offset, len })) => {
                self.block_at = (file_offset, len);
                Some(Step::Damage(self.report(
                    file_offset,
                    len,
                    DamageKind::Corrupt,
                )))
            }
        }
    }

    /// [`Self::report`] for damage the parser found at `offset` of the
    /// record bytes: in a compressed segment, an offset in decompressed
    /// bytes would point nowhere in the file, so the block is named.
    fn report_parsed(&mut self, offset: u64, len: u64, kind: DamageKind) -> Damage {
        if self.compressed {
            let (at, block_len) = self.block_at;
            return self.report(at, block_len, DamageKind::CorruptInBlock);
        }
        self.report(offset, len, kind)
    }

    /// Opens the segment at `path`: mapped if `may_map` and the rule of
    /// [`map_segment`] allows, else read through a window. A `staged` file
    /// that no longer bears its name once read was moved meanwhile, and
    /// perhaps reused for another segment (`FORMAT.md`, "Sealing and
    /// moving"): what was read is not trusted, and the capture directory's
    /// copy is read instead.
    fn load(&mut self, path: &Path, may_map: bool, staged: bool) -> Result<(), DamageKind> {
        // The previous segment's file goes, whatever happens next.
        self.close_source();
        // Never follow a symlink planted where a segment should be, nor
        // block on a FIFO; the checks are of the file actually opened.
        let file = crate::store::fsutil::open_regular(path).map_err(|e| {
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
                self.file_len = map.len() as u64;
                self.src = SegmentBytes::Map(map);
                self.stats.mapped_segments += 1;
                return Ok(());
            }
        }
        // A sparse file's trailing hole: zeroes, room the writer never
        // used, as if the file ended with its data (never shorter than a
        // header, whose absence would be damage of another kind).
        let header = (SEGMENT_HEADER_LEN as u64).min(md.len());
        self.file_len = super::data_len(&file, md.len()).max(header);
        let buf = std::mem::take(&mut self.spare);
        let window = FileWindow::new(file, path, self.file_len, staged, buf)
            .map_err(|e| DamageKind::Unreadable(e.to_string()))?;
        self.src = SegmentBytes::Window(window);
        // Read at once: a staged file moved meanwhile is noticed before
        // anything of it is returned; and past the header's `written_to`
        // lies a reused segment's previous use, never read.
        let (header, n) = self.header_bytes()?;
        let written = SegmentHeader::read_from_bytes(&header[..])
            .ok()
            .filter(|_| n == SEGMENT_HEADER_LEN)
            .and_then(|h| h.written_end(usize::try_from(self.file_len).unwrap_or(usize::MAX)));
        if let Some(end) = written {
            self.file_len = end as u64;
            self.src.set_total(self.file_len);
        }
        Ok(())
    }

    /// Reads a staged segment, just loaded, a second time and keeps only the
    /// records the first read saw committed: its writer may still be
    /// appending, and `read()` gives no ordering between a record's tag and
    /// its payload, which carries no CRC yet. An acquire fence between the
    /// two reads makes every record committed in the first whole in the
    /// second (see [`format::committed_end`]); the segment ends, for this
    /// reader, where they end, as if nothing were written after. A segment
    /// whose CRCs are complete is final and read as it is.
    fn reload_committed(&mut self) -> Result<(), DamageKind> {
        let (header, n) = self.header_bytes()?;
        let rule = match SegmentHeader::read_from_bytes(&header[..]) {
            Ok(h) if n == SEGMENT_HEADER_LEN && h.is_current() => CrcRule::of_header(&h),
            _ => return Ok(()),
        };
        if rule == CrcRule::Every {
            return Ok(());
        }
        let end = parse::committed_end(&mut self.src, SEGMENT_HEADER_LEN as u64, rule)
            .map_err(|e| DamageKind::Unreadable(e.to_string()))?;
        fence(Ordering::Acquire);
        self.src.forget();
        self.src.set_total(end);
        Ok(())
    }

    /// A read of the current segment failed: if a staged file moved, the
    /// capture directory's copy is read on from where it stopped
    /// ([`Self::resume_moved`]); otherwise the segment ends here, reported.
    fn read_failed(&mut self, e: std::io::Error) -> Step {
        if window::is_moved(&e) && self.resume_moved() {
            return Step::Nothing;
        }
        self.segment_done = true;
        let at = if self.compressed {
            self.block_at.0
        } else {
            self.pos
        };
        Step::Damage(self.report(at, 0, DamageKind::Unreadable(e.to_string())))
    }

    /// Goes on reading the current staged segment from the copy its writer
    /// moved into the capture directory, from the record it had got to:
    /// the same offset in a plain copy; in a compressed one, the records
    /// of the blocks from there on.
    fn resume_moved(&mut self) -> bool {
        let Some(moved) = self.moved_to.take() else {
            return false;
        };
        let resume = self.pos;
        if self.compressed || self.load(&moved, false, false).is_err() {
            return false;
        }
        self.path = moved;
        let Ok((header, n)) = self.header_bytes() else {
            return false;
        };
        match compress::compressed_header(&header[..n]) {
            Some(_) => {
                self.begin_blocks();
                self.resume_at = resume;
            }
            None => match parse::check_header(&header[..n]) {
                Ok(h) => {
                    self.crc_rule = CrcRule::of_header(&h);
                    self.pos = resume;
                }
                Err(_) => return false,
            },
        }
        true
    }

    fn is_last_segment(&self) -> bool {
        self.next_segment >= self.files.segments.len()
    }

    /// The next thing in the current segment, from the shared parser.
    fn step(&mut self) -> Step {
        if self.segment_sealed || self.segment_done {
            return Step::EndOfSegment;
        }
        // In a compressed segment, the next block once one is used up (a
        // loop: a hostile file may hold any number of blocks that decode to
        // nothing).
        while self.compressed && self.pos >= self.blocks.records().len() as u64 {
            if let Some(step) = self.next_block() {
                return step;
            }
        }
        let found = if self.compressed {
            let mut records = self.blocks.records();
            parse::next_at(&mut records, self.pos, CrcRule::Every, &mut self.scan)
        } else {
            parse::next_at(&mut self.src, self.pos, self.crc_rule, &mut self.scan)
        };
        match found {
            // The end, or unused room at the end of an unsealed segment (a
            // block decodes only if it is whole records to its end).
            Ok(None) => Step::EndOfSegment,
            Err(e) => self.read_failed(e),
            Ok(Some(Found::Record { at, len, next })) => {
                self.pos = next;
                self.on_record(at, len, next - at)
            }
            Ok(Some(Found::Skipped {
                offset,
                len,
                next_seq,
            })) => {
                self.pos = offset + len;
                self.on_skipped(offset, len, next_seq)
            }
            Ok(Some(Found::Tail {
                offset,
                len,
                tag_is_zero,
            })) => {
                self.pos = u64::MAX;
                self.on_tail(offset, len, tag_is_zero)
            }
        }
    }

    /// What the record of `len` bytes at `at` (taking `span` with its
    /// padding) gives.
    fn on_record(&mut self, at: u64, len: usize, span: u64) -> Step {
        if self.compressed && self.block_raw.saturating_add(at) < self.resume_at {
            // Read from the staged copy before it moved.
            return Step::Nothing;
        }
        let (seq, step) = match parse::record_item(self.record_bytes(at, len), at, span) {
            Parsed::Data { record, .. } => (
                record.seq,
                Step::Data {
                    start: at + RECORD_HEADER_LEN as u64,
                    len: record.payload.len(),
                    dir: record.direction,
                    ts: record.ts_ns,
                    seq: record.seq,
                },
            ),
            Parsed::Gap { seq, gap, .. } => (seq, Step::Gap(gap)),
            Parsed::Seal { seq, is_final, .. } => {
                self.segment_sealed = true;
                self.stats.closed_cleanly = is_final && self.is_last_segment();
                (seq, Step::EndOfSegment)
            }
            Parsed::Invalid { offset, len, seq } => {
                self.count_lost_before(seq);
                return Step::Damage(self.report_parsed(offset, len, DamageKind::Corrupt));
            }
            Parsed::Skipped { .. } | Parsed::Tail { .. } => return Step::Nothing,
        };
        self.count_lost_before(seq);
        step
    }

    /// Damage at `offset`, `len` bytes, before a good record numbered
    /// `next_seq`: that number tells how many records the damaged bytes
    /// held; it is checked again when read.
    fn on_skipped(&mut self, offset: u64, len: u64, next_seq: u32) -> Step {
        let lost = self.check_seq(next_seq);
        if let Some(e) = self.expected_seq.as_mut() {
            *e = e.wrapping_sub(1);
        }
        let mut d = self.report_parsed(offset, len, DamageKind::Corrupt);
        d.records_lost = lost;
        self.damage.add_lost_to_last(lost);
        Step::Damage(d)
    }

    /// Bytes at `offset` that are not a record, and no record after them.
    fn on_tail(&mut self, offset: u64, len: u64, tag_is_zero: bool) -> Step {
        // The writer stores the tag last: a record whose tag is zero was
        // never acknowledged (or, in a live session, is being written right
        // now). A compressed block holds committed records only.
        let kind =
            if tag_is_zero && !self.compressed && (self.is_last_segment() || self.segment_staged) {
                DamageKind::TornTail
            } else {
                DamageKind::Corrupt
            };
        Step::Damage(self.report_parsed(offset, len, kind))
    }

    /// Checks `seq` of a valid record; records missing before it are
    /// added to the damage just reported.
    fn count_lost_before(&mut self, seq: u32) {
        let lost = self.check_seq(seq);
        if lost > 0 {
            self.damage.add_lost_to_last(lost);
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

    /// Whether the current staged segment is worth loading once more: its
    /// header's checksum does not match, or the header can no longer be
    /// read (the file moved meanwhile, and the next load reads the copy).
    fn header_wants_second_look(&mut self) -> bool {
        self.header_bytes().map_or(true, |(h, n)| {
            n == SEGMENT_HEADER_LEN
                && SegmentHeader::read_from_bytes(&h[..])
                    .is_ok_and(|h| h.magic == SEGMENT_MAGIC && !h.checksum_ok())
        })
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

fn session_of(h: &SegmentHeader) -> SessionInfo {
    SessionInfo {
        session_id: h.session_id,
        session_start_unix_ns: h.session_start_unix_ns.get(),
        monotonic_base_ns: h.monotonic_base_ns.get(),
    }
}

enum Step {
    Data {
        start: u64,
        len: usize,
        dir: Direction,
        ts: u64,
        seq: u32,
    },
    Gap(Gap),
    Damage(Damage),
    /// Nothing to return: step again.
    Nothing,
    EndOfSegment,
}
