//! Following a capture while it is written, like `tail -f`.
//!
//! A [`Follower`] remembers, per channel, which segment and offset it has
//! read up to. Each [`Follower::poll`] reads what has been committed since
//! (from the staging directory while a segment is live, from the capture
//! directory once it has been moved in), hands the new records over, and
//! says whether the session is over: its manifest says it closed, or its
//! writer died (the staging lock is free). Call it every few tens of
//! milliseconds; a record appended is seen by the next poll.
//!
//! Only committed records are returned: a record whose tag is still zero is
//! being written, and is waited for rather than reported. A staged segment's
//! records may not carry their CRC yet; they are checked as the segment
//! header says ([`CrcRule`]).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use super::event::{Damage, DamageKind, Event};
use super::parse::{self, Found, Parsed, ScanBudget};
use super::window::{FileWindow, SegmentBytes};
use crate::read::capture::OpenError;
use crate::store::compress::{self, BlockReader, BlockStep};
use crate::store::format::{self, CrcRule, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::store::layout::SPOOL_DIR;
use crate::store::manifest::{Manifest, MANIFEST_FILE};
use crate::store::source::ByteSource;
use crate::store::staging;

/// Whether the followed session can still produce records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The writer is running: poll again.
    Running,
    /// The session closed (or its writer died) and everything was read.
    Finished {
        /// Whether it shut down cleanly.
        clean: bool,
    },
}

struct Followed {
    name: String,
    /// Segment being read.
    index: u64,
    /// File offset of the next record in it (0: header not read yet).
    offset: u64,
    /// The current segment ended without a seal, and nothing follows yet.
    drained: bool,
    /// Segment `u64::MAX` was read to its end: no segment can follow it.
    past_last: bool,
    /// Session id of the channel's first header with a valid checksum;
    /// a later segment of another session is reported.
    session: Option<[u8; 16]>,
}

impl Followed {
    /// Goes on to the segment after the current one.
    fn next_segment(&mut self) {
        match self.index.checked_add(1) {
            Some(next) => {
                self.index = next;
                self.offset = 0;
            }
            None => self.past_last = true,
        }
    }
}

/// Follows every channel of one capture directory.
pub struct Follower {
    dir: PathBuf,
    channels: Vec<Followed>,
    /// The names in `channels`, to tell a new one in time independent of
    /// how many there are.
    known: HashSet<String>,
    /// The segment indexes present for the channel being read, listed once
    /// per channel per poll when first needed: asking after each missing
    /// index would list the directory once per hole.
    present: Option<BTreeSet<u64>>,
    /// The window's buffer between segments, kept for its capacity.
    buf: Vec<u8>,
    /// Decodes compressed segments (moved in whole, never live).
    blocks: BlockReader,
    /// Whether the segment being read is compressed, and how its records
    /// are checked (from its header).
    compressed: bool,
    rule: CrcRule,
}

impl Follower {
    /// Starts following `dir` from the beginning of every channel.
    pub fn open(dir: &Path) -> Result<Follower, OpenError> {
        let manifest = std::fs::symlink_metadata(dir.join(MANIFEST_FILE));
        if !manifest.is_ok_and(|m| m.is_file()) {
            return Err(OpenError::NotACapture(dir.to_path_buf()));
        }
        Ok(Follower {
            dir: dir.to_path_buf(),
            channels: Vec::new(),
            known: HashSet::new(),
            present: None,
            buf: Vec::new(),
            blocks: BlockReader::new(),
            compressed: false,
            rule: CrcRule::Every,
        })
    }

    /// Names of the channels seen so far, in the order they appeared.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(|c| c.name.as_str())
    }

    /// Reads everything committed since the last poll and hands each event
    /// to `f` with its channel's name, channel by channel, in record order.
    pub fn poll(&mut self, f: &mut dyn FnMut(&str, Event<'_>)) -> Status {
        // The manifest first: if it says the session is over, everything it
        // wrote is already on disk when the segments are read below.
        let manifest = Manifest::load(&self.dir.join(MANIFEST_FILE)).ok();
        let staging = manifest
            .as_ref()
            .and_then(|m| staging::trusted_for_reading(m, &self.dir).ok().flatten());
        let closed = manifest
            .as_ref()
            .is_some_and(|m| m.closed_unix_ns.is_some());
        let writer_gone = !closed && staging.as_deref().is_none_or(|s| !staging::writer_alive(s));
        let over = closed || writer_gone;

        self.discover(staging.as_deref(), manifest.as_ref());
        for i in 0..self.channels.len() {
            self.read_channel(i, staging.as_deref(), over, f);
        }
        if over && self.channels.iter().all(|c| c.drained) {
            Status::Finished {
                clean: manifest.is_some_and(|m| m.clean_shutdown),
            }
        } else {
            Status::Running
        }
    }

    /// Adds channels that have appeared in the staging or capture directory.
    fn discover(&mut self, staging: Option<&Path>, manifest: Option<&Manifest>) {
        let roots = [
            staging.map(Path::to_path_buf),
            Some(self.dir.join(SPOOL_DIR)),
        ];
        for root in roots.iter().flatten() {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            for e in entries.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if format::validate_channel_name(&name).is_err()
                    || !e.file_type().is_ok_and(|t| t.is_dir())
                    || self.known.contains(&name)
                {
                    continue;
                }
                // Start where the reader starts: at the flight recorder's
                // first kept segment, or at a lower one still present
                // (what lies between is then reported missing).
                let trimmed_from = manifest
                    .and_then(|m| m.trimmed.get(&name))
                    .map_or(0, |t| t.first_kept_index);
                let first = self
                    .list_present(staging, &name)
                    .first()
                    .map_or(trimmed_from, |&l| l.min(trimmed_from));
                self.known.insert(name.clone());
                self.channels.push(Followed {
                    name,
                    index: first,
                    offset: 0,
                    drained: false,
                    past_last: false,
                    session: None,
                });
            }
        }
    }

    /// Where segment `index` of `channel` is now: staged while live, in the
    /// capture directory once moved; and whether that is the staged copy.
    fn locate(&self, staging: Option<&Path>, channel: &str, index: u64) -> Option<(PathBuf, bool)> {
        let name = format::segment_file_name(index);
        let candidates = [
            staging.map(|s| (s.join(channel).join(&name), true)),
            Some((self.dir.join(SPOOL_DIR).join(channel).join(&name), false)),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|(p, _)| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }

    /// The segment indexes present for `channel`, staged or moved in: every
    /// name of a segment file counts, as in the reader's list of segments.
    fn list_present(&self, staging: Option<&Path>, channel: &str) -> BTreeSet<u64> {
        let dirs = [
            staging.map(|s| s.join(channel)),
            Some(self.dir.join(SPOOL_DIR).join(channel)),
        ];
        dirs.iter()
            .flatten()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|entries| entries.flatten())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(format::parse_segment_file_name)
            })
            .collect()
    }

    /// The smallest segment index above `index` present for `channel`
    /// (none above the last index there can be), from the listing taken
    /// once per poll ([`Follower::present`]); what appears later is seen
    /// by the next poll.
    fn present_after(&mut self, staging: Option<&Path>, channel: &str, index: u64) -> Option<u64> {
        let from = index.checked_add(1)?;
        if self.present.is_none() {
            self.present = Some(self.list_present(staging, channel));
        }
        self.present.as_ref()?.range(from..).next().copied()
    }

    /// Reads what is new in channel `i`: segment after segment, as far as
    /// they are committed.
    fn read_channel(
        &mut self,
        i: usize,
        staging: Option<&Path>,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) {
        self.present = None;
        loop {
            let c = &mut self.channels[i];
            if c.past_last {
                c.drained = true;
                return;
            }
            let name = c.name.clone();
            let Some((path, staged, index)) = self.find_segment(i, staging, f) else {
                return;
            };
            let at = Segment {
                path: &path,
                channel: &name,
                index,
                staged,
                staging,
            };
            let end = self.read_segment(i, &at, over, f);
            let c = &mut self.channels[i];
            match end {
                SegmentEnd::Sealed => {
                    c.next_segment();
                    c.drained = false;
                }
                SegmentEnd::UpTo(next) => {
                    c.offset = next;
                    c.drained = true;
                    return;
                }
                SegmentEnd::Unsealed(end) if staged => {
                    // The live end of a crashed session: as the reader
                    // does, read nothing after it.
                    c.offset = end;
                    c.drained = true;
                    return;
                }
                // Reported; go on with the next segment if there is one.
                SegmentEnd::Unsealed(_) | SegmentEnd::Unusable => c.next_segment(),
            }
        }
    }

    /// Where channel `i`'s current segment is, whether staged, and its
    /// index; `None`
    /// when it is not there (yet): the channel is drained. Segments
    /// missing before a later one present are reported, and skipped.
    fn find_segment(
        &mut self,
        i: usize,
        staging: Option<&Path>,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> Option<(PathBuf, bool, u64)> {
        loop {
            let (name, index) = (self.channels[i].name.clone(), self.channels[i].index);
            if let Some((path, staged)) = self.locate(staging, &name, index) {
                return Some((path, staged, index));
            }
            // Not there yet — or deleted by a ring limit while we were
            // behind, in which case later segments exist: skip to them.
            let Some(next) = self.present_after(staging, &name, index) else {
                self.channels[i].drained = true;
                return None;
            };
            // A later segment present: segments are created in index
            // order, so this one, absent a moment ago, exists by now
            // unless it is gone for good.
            if let Some((path, staged)) = self.locate(staging, &name, index) {
                return Some((path, staged, index));
            }
            let file = self
                .dir
                .join(SPOOL_DIR)
                .join(&name)
                .join(format::segment_file_name(index));
            let kind = DamageKind::MissingSegments {
                first: index,
                count: next - index,
            };
            f(&name, Event::Damage(damage_at(&file, 0, 0, kind)));
            let c = &mut self.channels[i];
            c.index = next;
            c.offset = 0;
        }
    }

    /// Reads the records of one segment from the channel's offset on,
    /// through the parser the reader uses ([`parse::next_at`]) and a
    /// bounded window over the file, so that what a follower yields from a
    /// finished segment is what a reader yields: the same records, the
    /// same damage skipped.
    ///
    /// What is not a record yet is waited for while the writer runs: the
    /// next record being written has a zero tag.
    fn read_segment(
        &mut self,
        i: usize,
        seg: &Segment<'_>,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> SegmentEnd {
        let offset = self.channels[i].offset;
        let mut src = match self.open_segment(seg, f) {
            Ok(src) => src,
            Err(end) => return end.unwrap_or(SegmentEnd::UpTo(offset)),
        };
        let end = match self.begin_segment(i, seg, &mut src, over, f) {
            Ok(Some(pos)) => self.read_from(seg, &mut src, pos, over, f),
            Ok(None) => SegmentEnd::UpTo(0),
            Err(end) => end,
        };
        if let SegmentBytes::Window(w) = src {
            self.buf = w.into_buf();
        }
        end
    }

    /// Opens `seg` through a window; `Err(None)` to try again at the next
    /// poll, `Err(Some(end))` if it is unusable (reported).
    fn open_segment(
        &mut self,
        seg: &Segment<'_>,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> Result<SegmentBytes, Option<SegmentEnd>> {
        // Never through a symlink, never blocking on a FIFO swapped in.
        let file = crate::store::fsutil::open_regular(seg.path).map_err(|_| None)?;
        let file_len = file.metadata().map_or(0, |m| m.len());
        if let Some(kind) = super::too_large(file_len) {
            // As the reader refuses it.
            f(seg.channel, Event::Damage(damage_at(seg.path, 0, 0, kind)));
            return Err(Some(SegmentEnd::Unusable));
        }
        // A sparse file's trailing hole is room never used, as the reader
        // takes it.
        let total = super::data_len(&file, file_len).max((SEGMENT_HEADER_LEN as u64).min(file_len));
        let buf = std::mem::take(&mut self.buf);
        let window = FileWindow::new(file, seg.path, total, seg.staged, buf).map_err(|_| None)?;
        Ok(SegmentBytes::Window(window))
    }

    /// Reads the header of `seg` on every look, not only the first: it
    /// says whether the records carry their CRCs yet, which changes when
    /// the retirer fills them in. Returns where to read records from
    /// (`None`: the segment is still being set up), or how the segment
    /// ends.
    fn begin_segment(
        &mut self,
        i: usize,
        seg: &Segment<'_>,
        src: &mut SegmentBytes,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> Result<Option<u64>, SegmentEnd> {
        let offset = self.channels[i].offset;
        let wait = SegmentEnd::UpTo(offset);
        let mut header = read_header(src).ok_or(SegmentEnd::UpTo(offset))?;
        if seg.staged && header.as_ref().is_ok_and(|h| !h.checksum_ok()) {
            // The retirer flags a staged segment's header once its CRCs are
            // in: the flag, then the checksum. A read racing the two stores
            // can see one without the other. Look once more, as the reader
            // does.
            src.forget();
            header = read_header(src).ok_or(wait)?;
        }
        self.compressed = header.as_ref().is_ok_and(compress::is_compressed);
        self.rule = header.as_ref().map_or(CrcRule::Every, CrcRule::of_header);
        // Past `written_to` lies a reused segment's previous use; before
        // it, once this fence orders the reads below after the header's
        // (the window is read again), every record is whole.
        let total = usize::try_from(src.total()).unwrap_or(usize::MAX);
        if let Some(end) = header.as_ref().ok().and_then(|h| h.written_end(total)) {
            fence(Ordering::Acquire);
            src.forget();
            src.set_total(end as u64);
        }
        if offset != 0 {
            return Ok(Some(offset));
        }
        let zero = src
            .get(0, SEGMENT_HEADER_LEN)
            .map_or(true, |h| h.iter().all(|&b| b == 0));
        if zero && (seg.staged || !over) {
            // Still being set up by the preparer.
            return Ok(None);
        }
        let header = header.map_err(|d| {
            f(
                seg.channel,
                Event::Damage(damage_at(seg.path, d.offset, d.len, d.kind)),
            );
            SegmentEnd::Unusable
        })?;
        let header_len = SEGMENT_HEADER_LEN as u64;
        let kind = if !header.checksum_ok() {
            // The records carry their own checksums: keep reading them.
            Some(DamageKind::BadHeaderChecksum)
        } else {
            let session = *self.channels[i].session.get_or_insert(header.session_id);
            parse::header_mismatch(&header, seg.channel, seg.index, Some(&session))
                .map(DamageKind::HeaderMismatch)
        };
        if let Some(kind) = kind {
            f(
                seg.channel,
                Event::Damage(damage_at(seg.path, 0, header_len, kind)),
            );
        }
        Ok(Some(header_len))
    }

    /// Reads the records of the segment opened as `src` from `pos` on.
    fn read_from(
        &mut self,
        seg: &Segment<'_>,
        src: &mut SegmentBytes,
        pos: u64,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> SegmentEnd {
        if self.compressed {
            // Moved in whole, never live; perhaps read in part while it was
            // staged, up to `pos`.
            return self.read_compressed(seg, src, pos, f);
        }
        let file_len = src.total();
        let live = self.rule == CrcRule::ZeroIsUnfilled && !over;
        let mut scan = ScanBudget::for_len(usize::try_from(file_len).unwrap_or(usize::MAX));
        let mut pos = pos;
        loop {
            if live {
                match committed_run(seg, src, pos, self.rule, f) {
                    Ok(Run::Sealed) => return SegmentEnd::Sealed,
                    Ok(Run::Ended(end)) => pos = end,
                    Err(()) => return SegmentEnd::UpTo(pos),
                }
                let tag = src.get(pos, 4).map(|t| t.iter().all(|&b| b == 0));
                if tag.unwrap_or(true) {
                    // The next record, being written: wait for it.
                    return SegmentEnd::UpTo(pos);
                }
            }
            // Not a committed record at `pos`: judge the rest of the
            // segment as a whole, as the reader judges it.
            let Ok(found) = parse::next_at(src, pos, self.rule, &mut scan) else {
                return SegmentEnd::UpTo(pos);
            };
            match found {
                // Every record of the segment read, and no seal.
                None if over => return SegmentEnd::Unsealed(file_len),
                None => return SegmentEnd::UpTo(pos),
                // Committed meanwhile: read it after a fence, above.
                Some(Found::Record { .. }) if live => {}
                Some(Found::Record { at, len, next }) => {
                    if emit(seg, src, at, len, next - at, f) {
                        return SegmentEnd::Sealed;
                    }
                    pos = next;
                }
                Some(Found::Skipped { offset, len, .. }) => {
                    let d = damage_at(seg.path, offset, len, DamageKind::Corrupt);
                    f(seg.channel, Event::Damage(d));
                    pos = offset + len;
                }
                Some(Found::Tail {
                    offset,
                    len,
                    tag_is_zero,
                }) => {
                    if !over {
                        // Being written, or damage: the writer has the
                        // last word until it stops.
                        return SegmentEnd::UpTo(offset);
                    }
                    let kind = self.tail_kind(seg, tag_is_zero);
                    f(
                        seg.channel,
                        Event::Damage(damage_at(seg.path, offset, len, kind)),
                    );
                    return SegmentEnd::Unsealed(file_len);
                }
            }
        }
    }

    /// What bytes that are no record, and no record after them, are at the
    /// end of `seg` once its writer stopped, as the reader judges it: a
    /// zero tag at the end of what the writer wrote is a record it never
    /// committed.
    fn tail_kind(&mut self, seg: &Segment<'_>, tag_is_zero: bool) -> DamageKind {
        let last = seg.staged
            || self
                .present_after(seg.staging, seg.channel, seg.index)
                .is_none();
        if tag_is_zero && last {
            DamageKind::TornTail
        } else {
            DamageKind::Corrupt
        }
    }

    /// Reads a compressed segment from the record at uncompressed offset
    /// `from` on (records before it were read while it was staged), block
    /// by block, through the same parser.
    fn read_compressed(
        &mut self,
        seg: &Segment<'_>,
        src: &mut SegmentBytes,
        from: u64,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> SegmentEnd {
        self.blocks.rewind();
        loop {
            let (block_at, block_len, raw_offset) = match self.blocks.advance_in(src) {
                Ok(None) => break,
                Err(e) => {
                    let kind = DamageKind::Unreadable(e.to_string());
                    f(seg.channel, Event::Damage(damage_at(seg.path, 0, 0, kind)));
                    return SegmentEnd::Unusable;
                }
                Ok(Some(BlockStep::Damaged { file_offset, len })) => {
                    let d = damage_at(seg.path, file_offset, len, DamageKind::Corrupt);
                    f(seg.channel, Event::Damage(d));
                    continue;
                }
                Ok(Some(BlockStep::Records {
                    file_offset,
                    file_len,
                    raw_offset,
                })) => (file_offset, file_len, raw_offset),
            };
            let in_block = damage_at(seg.path, block_at, block_len, DamageKind::CorruptInBlock);
            for item in parse::Records::new(self.blocks.records(), raw_offset, CrcRule::Every) {
                let at = match &item {
                    Parsed::Data { offset, .. }
                    | Parsed::Gap { offset, .. }
                    | Parsed::Seal { offset, .. }
                    | Parsed::Invalid { offset, .. }
                    | Parsed::Skipped { offset, .. }
                    | Parsed::Tail { offset, .. } => *offset,
                };
                // Only a segment read in part while staged starts past
                // its header; block offsets are the writer's word for
                // where records were, and skip nothing otherwise.
                if from > SEGMENT_HEADER_LEN as u64 && at < from {
                    continue;
                }
                match item {
                    Parsed::Data { record, .. } => f(seg.channel, Event::Data(record)),
                    Parsed::Gap { gap, .. } => f(seg.channel, Event::Gap(gap)),
                    Parsed::Seal { .. } => return SegmentEnd::Sealed,
                    Parsed::Invalid { .. } | Parsed::Skipped { .. } | Parsed::Tail { .. } => {
                        f(seg.channel, Event::Damage(in_block.clone()));
                    }
                }
            }
        }
        // No seal: it was in a damaged block (reported). The segment is
        // complete, whatever it lost: go on with the next.
        SegmentEnd::Unusable
    }
}

/// Damage of `len` bytes at `offset` of `file`.
fn damage_at(file: &Path, offset: u64, len: u64, kind: DamageKind) -> Damage {
    Damage {
        file: file.to_path_buf(),
        offset,
        len,
        kind,
        records_lost: 0,
    }
}

/// The segment header of `src`, plain or compressed, or its damage;
/// `None` if it could not be read.
fn read_header(src: &mut SegmentBytes) -> Option<Result<SegmentHeader, parse::HeaderDamage>> {
    let bytes = src.get(0, SEGMENT_HEADER_LEN).ok()?;
    Some(parse::check_header(bytes).or_else(|d| compress::compressed_header(bytes).ok_or(d)))
}

/// How a run of committed records ended.
enum Run {
    /// At a seal.
    Sealed,
    /// At this offset, after the last committed record.
    Ended(u64),
}

/// Hands over the records of a live segment committed from `pos` on. It
/// is still being written, and `read()` orders nothing: the records whose
/// tags a first pass saw are read once more after an acquire fence, so
/// their payloads are whole (`format::committed_end`). `Err` if a read
/// failed (a staged file moved meanwhile: the next poll reads on).
fn committed_run(
    seg: &Segment<'_>,
    src: &mut SegmentBytes,
    pos: u64,
    rule: CrcRule,
    f: &mut dyn FnMut(&str, Event<'_>),
) -> Result<Run, ()> {
    let file_len = src.total();
    let end = parse::committed_end(src, pos, rule).map_err(|_| ())?;
    fence(Ordering::Acquire);
    src.forget();
    src.set_total(end);
    // Every byte up to `end` is records: the budget is never drawn on.
    let mut scan = ScanBudget::for_len(0);
    let mut at = pos;
    let ended = loop {
        match parse::next_at(src, at, rule, &mut scan) {
            Ok(Some(Found::Record { at: r, len, next })) => {
                if emit(seg, src, r, len, next - r, f) {
                    break Ok(Run::Sealed);
                }
                at = next;
            }
            Ok(_) => break Ok(Run::Ended(at)),
            Err(_) => break Err(()),
        }
    };
    src.set_total(file_len);
    ended
}

/// Hands the record of `len` bytes at `at` (`span` with its padding) to
/// `f`, damage if it is invalid; `true` if it is the seal.
fn emit(
    seg: &Segment<'_>,
    src: &SegmentBytes,
    at: u64,
    len: usize,
    span: u64,
    f: &mut dyn FnMut(&str, Event<'_>),
) -> bool {
    match parse::record_item(src.loaded(at, len), at, span) {
        Parsed::Data { record, .. } => f(seg.channel, Event::Data(record)),
        Parsed::Gap { gap, .. } => f(seg.channel, Event::Gap(gap)),
        Parsed::Seal { .. } => return true,
        Parsed::Invalid { offset, len, .. } => {
            let d = damage_at(seg.path, offset, len, DamageKind::Corrupt);
            f(seg.channel, Event::Damage(d));
        }
        Parsed::Skipped { .. } | Parsed::Tail { .. } => {}
    }
    false
}

/// The segment [`Follower::read_segment`] reads, and where it was found.
struct Segment<'a> {
    path: &'a Path,
    channel: &'a str,
    index: u64,
    /// Found in the staging directory.
    staged: bool,
    staging: Option<&'a Path>,
}

enum SegmentEnd {
    /// A seal was read: go on with the next segment.
    Sealed,
    /// Everything committed so far was read; continue at this offset.
    UpTo(u64),
    /// The session is over and the segment, read to this offset (its
    /// end), has no seal.
    Unsealed(u64),
    /// The segment cannot be read (reported).
    Unusable,
}
