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
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use super::event::{Damage, DamageKind, Event};
use super::parse::{self, Parsed, ScanBudget};
use crate::read::reader::OpenError;
use crate::store::compress::{self, BlockReader, BlockStep};
use crate::store::format::{
    self, CrcRule, MAX_SEGMENT_BYTES, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::store::layout::SPOOL_DIR;
use crate::store::manifest::{Manifest, MANIFEST_FILE};
use crate::store::staging;

/// Bytes read per look at a live segment; more when a record needs it.
const WINDOW: usize = 64 << 10;

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
    buf: Vec<u8>,
    /// Decodes compressed segments (moved in whole, never live).
    blocks: BlockReader,
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
            buf: Vec::with_capacity(WINDOW),
            blocks: BlockReader::new(),
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

    fn read_channel(
        &mut self,
        i: usize,
        staging: Option<&Path>,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) {
        self.present = None;
        loop {
            let (name, index) = {
                let c = &mut self.channels[i];
                if c.past_last {
                    c.drained = true;
                    return;
                }
                (c.name.clone(), c.index)
            };
            let located = match self.locate(staging, &name, index) {
                Some(found) => Ok(found),
                // A later segment present: segments are created in index
                // order, so this one, absent a moment ago, exists by now
                // unless it is gone for good.
                None => match self.present_after(staging, &name, index) {
                    Some(next) => self.locate(staging, &name, index).ok_or(Some(next)),
                    None => Err(None),
                },
            };
            let (path, staged) = match located {
                Ok(found) => found,
                // Not there yet — or deleted by a ring limit while we were
                // behind, in which case later segments exist: skip to them.
                Err(later) => match later {
                    Some(next) => {
                        let kind = DamageKind::MissingSegments {
                            first: index,
                            count: next - index,
                        };
                        let file = self
                            .dir
                            .join(SPOOL_DIR)
                            .join(&name)
                            .join(format::segment_file_name(index));
                        f(
                            &name,
                            Event::Damage(Damage {
                                file,
                                offset: 0,
                                len: 0,
                                kind,
                                records_lost: 0,
                            }),
                        );
                        let c = &mut self.channels[i];
                        c.index = next;
                        c.offset = 0;
                        continue;
                    }
                    None => {
                        self.channels[i].drained = true;
                        return;
                    }
                },
            };
            let at = Segment {
                path: &path,
                channel: &name,
                index,
                staged,
                staging,
            };
            match self.read_segment(i, &at, over, f) {
                SegmentEnd::Sealed => {
                    let c = &mut self.channels[i];
                    c.next_segment();
                    c.drained = false;
                }
                SegmentEnd::UpTo(next) => {
                    let c = &mut self.channels[i];
                    c.offset = next;
                    c.drained = true;
                    return;
                }
                SegmentEnd::Unsealed(end) if staged => {
                    // The live end of a crashed session: as the reader
                    // does, read nothing after it.
                    let c = &mut self.channels[i];
                    c.offset = end;
                    c.drained = true;
                    return;
                }
                SegmentEnd::Unsealed(_) | SegmentEnd::Unusable => {
                    // Reported; go on with the next segment if there is one.
                    self.channels[i].next_segment();
                }
            }
        }
    }

    /// Reads the records of one segment from the channel's offset on,
    /// through the parser the reader uses ([`parse::next_item`]), so that
    /// what a follower yields from a finished segment is what a reader
    /// yields: the same records, the same damage skipped.
    ///
    /// A live segment is read a window at a time, and what is not a
    /// record yet is waited for while the writer runs: the next record
    /// being written has a zero tag. Damage is judged only on the rest of
    /// the segment as a whole, as the reader judges it, since a valid
    /// record may lie beyond the window.
    fn read_segment(
        &mut self,
        i: usize,
        seg: &Segment<'_>,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> SegmentEnd {
        let channel = seg.channel;
        let damage = |offset: u64, len: u64, kind: DamageKind| Damage {
            file: seg.path.to_path_buf(),
            offset,
            len,
            kind,
            records_lost: 0,
        };
        let offset = self.channels[i].offset;
        // Never through a symlink, never blocking on a FIFO swapped in.
        let Ok(mut file) = crate::store::fsutil::open_regular(seg.path) else {
            return SegmentEnd::UpTo(offset);
        };
        let file_len = file.metadata().map_or(0, |m| m.len());
        if let Some(kind) = super::too_large(file_len) {
            // As the reader refuses it.
            f(channel, Event::Damage(damage(0, 0, kind)));
            return SegmentEnd::Unusable;
        }
        // A sparse file's trailing hole is room never used, as the reader
        // takes it.
        let file_len =
            super::data_len(&file, file_len).max((SEGMENT_HEADER_LEN as u64).min(file_len));
        // The header on every look, not only the first: it says whether the
        // records carry their CRCs yet, which changes when the retirer fills
        // them in.
        if !self.fill(&mut file, seg, 0, SEGMENT_HEADER_LEN) {
            return SegmentEnd::UpTo(offset);
        }
        let header_of = |buf: &[u8]| {
            parse::check_header(buf).or_else(|d| compress::compressed_header(buf).ok_or(d))
        };
        let mut header = header_of(&self.buf);
        if seg.staged && header.as_ref().is_ok_and(|h| !h.checksum_ok()) {
            // The retirer flags a staged segment's header once its CRCs are
            // in: the flag, then the checksum. A read racing the two stores
            // can see one without the other. Look once more, as the reader
            // does.
            if !self.fill(&mut file, seg, 0, SEGMENT_HEADER_LEN) {
                return SegmentEnd::UpTo(offset);
            }
            header = header_of(&self.buf);
        }
        let compressed = header.as_ref().is_ok_and(compress::is_compressed);
        let rule = header.as_ref().map_or(CrcRule::Every, CrcRule::of_header);
        // Past `written_to` lies a reused segment's previous use; before
        // it, once this fence orders the reads below after the header's,
        // every record is whole.
        let written = header.as_ref().ok().filter(|h| h.is_current());
        let file_len = match written.and_then(|h| h.written_end(file_len as usize)) {
            Some(end) => {
                fence(Ordering::Acquire);
                end as u64
            }
            None => file_len,
        };
        let mut pos = offset;
        if pos == 0 {
            if self.buf.iter().all(|&b| b == 0) && (seg.staged || !over) {
                // Still being set up by the preparer.
                return SegmentEnd::UpTo(0);
            }
            let header = match header {
                Ok(header) => header,
                Err(d) => {
                    f(channel, Event::Damage(damage(d.offset, d.len, d.kind)));
                    return SegmentEnd::Unusable;
                }
            };
            let header_len = SEGMENT_HEADER_LEN as u64;
            if !header.checksum_ok() {
                // The records carry their own checksums: keep reading them.
                let kind = DamageKind::BadHeaderChecksum;
                f(channel, Event::Damage(damage(0, header_len, kind)));
            } else {
                let session = *self.channels[i].session.get_or_insert(header.session_id);
                if let Some(what) =
                    parse::header_mismatch(&header, channel, seg.index, Some(&session))
                {
                    let kind = DamageKind::HeaderMismatch(what);
                    f(channel, Event::Damage(damage(0, header_len, kind)));
                }
            }
            pos = header_len;
        }
        if compressed {
            // Moved in whole, never live; perhaps read in part while it was
            // staged, up to `pos`.
            return self.read_compressed(seg, &mut file, pos, f);
        }
        // Set once damage (or, after the writer stopped, unused room) was
        // met in a window: the rest of the segment is then read whole.
        let mut whole = false;
        loop {
            let remaining = file_len.saturating_sub(pos);
            let want = if whole {
                remaining
            } else {
                remaining.min(WINDOW as u64)
            };
            if !self.fill(&mut file, seg, pos, want as usize) {
                return SegmentEnd::UpTo(pos);
            }
            if let Some(len) = record_len_at(&self.buf) {
                // The whole record at `pos`, if the window cuts it.
                let need = (RECORD_HEADER_LEN as u64).saturating_add(len as u64);
                if need > self.buf.len() as u64
                    && need <= remaining
                    && !self.fill(&mut file, seg, pos, need as usize)
                {
                    return SegmentEnd::UpTo(pos);
                }
            }
            if rule == CrcRule::ZeroIsUnfilled && !over {
                // Still being written, and `read()` orders nothing: read the
                // records whose tags this pass saw once more, after an
                // acquire fence, so their payloads are whole
                // (`format::committed_end`).
                let end = format::committed_end(&self.buf, 0, rule);
                if end > 0 {
                    fence(Ordering::Acquire);
                    if !self.fill(&mut file, seg, pos, end) {
                        return SegmentEnd::UpTo(pos);
                    }
                }
            }
            let base = pos;
            let definitive = base.saturating_add(self.buf.len() as u64) >= file_len;
            let mut at = 0;
            // Where a window short of the segment's end stopped making sense.
            let mut unsure = None;
            let mut scan = ScanBudget::for_len(self.buf.len());
            while let Some((item, next)) = parse::next_item(&self.buf, at, base, rule, &mut scan) {
                match item {
                    Parsed::Data { record, .. } => f(channel, Event::Data(record)),
                    Parsed::Gap { gap, .. } => f(channel, Event::Gap(gap)),
                    Parsed::Seal { .. } => return SegmentEnd::Sealed,
                    Parsed::Invalid { offset, len, .. } => {
                        f(
                            channel,
                            Event::Damage(damage(offset, len, DamageKind::Corrupt)),
                        );
                    }
                    Parsed::Skipped { offset, .. } | Parsed::Tail { offset, .. } if !definitive => {
                        unsure = Some(offset);
                        break;
                    }
                    Parsed::Skipped { offset, len, .. } => {
                        f(
                            channel,
                            Event::Damage(damage(offset, len, DamageKind::Corrupt)),
                        );
                    }
                    Parsed::Tail {
                        offset,
                        len,
                        tag_is_zero,
                    } => {
                        if !over {
                            // Being written, or damage: the writer has the
                            // last word until it stops.
                            return SegmentEnd::UpTo(offset);
                        }
                        // As the reader judges it: a zero tag at the end of
                        // what the writer wrote is a record it never
                        // committed.
                        let last = seg.staged
                            || self
                                .present_after(seg.staging, channel, seg.index)
                                .is_none();
                        let kind = if tag_is_zero && last {
                            DamageKind::TornTail
                        } else {
                            DamageKind::Corrupt
                        };
                        f(channel, Event::Damage(damage(offset, len, kind)));
                        return SegmentEnd::Unsealed(file_len);
                    }
                }
                at = next;
            }
            let stop = unsure.unwrap_or(base.saturating_add(at as u64));
            if unsure.is_none() && definitive {
                // Every record of the segment read, and no seal.
                return if over {
                    SegmentEnd::Unsealed(file_len)
                } else {
                    SegmentEnd::UpTo(stop)
                };
            }
            if unsure.is_none() && at > 0 && at == self.buf.len() {
                // The window was all records: read on.
                pos = stop;
                whole = false;
                continue;
            }
            // Not a record at `stop`, in a window short of the end. While the
            // writer runs, a zero tag there is the next record being
            // written: wait for it. Otherwise judge the rest as a whole.
            let tag_is_zero = self
                .buf
                .get((stop - base) as usize..)
                .is_none_or(|b| b.iter().take(4).all(|&x| x == 0));
            if (!over && tag_is_zero) || whole {
                return SegmentEnd::UpTo(stop);
            }
            pos = stop;
            whole = true;
        }
    }

    /// Reads a compressed segment from the record at uncompressed offset
    /// `from` on (records before it were read while it was staged), block
    /// by block, through the same parser.
    fn read_compressed(
        &mut self,
        seg: &Segment<'_>,
        file: &mut File,
        from: u64,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> SegmentEnd {
        let damage = |offset: u64, len: u64, kind: DamageKind| {
            Event::Damage(Damage {
                file: seg.path.to_path_buf(),
                offset,
                len,
                kind,
                records_lost: 0,
            })
        };
        if !self.fill(file, seg, 0, MAX_SEGMENT_BYTES as usize) {
            return SegmentEnd::UpTo(from);
        }
        self.blocks.rewind();
        while let Some(step) = self.blocks.advance(&self.buf) {
            let (block_at, block_len, raw_offset) = match step {
                BlockStep::Damaged { file_offset, len } => {
                    f(seg.channel, damage(file_offset, len, DamageKind::Corrupt));
                    continue;
                }
                BlockStep::Records {
                    file_offset,
                    file_len,
                    raw_offset,
                } => (file_offset, file_len, raw_offset),
            };
            let in_block = DamageKind::CorruptInBlock;
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
                        f(seg.channel, damage(block_at, block_len, in_block.clone()));
                    }
                }
            }
        }
        // No seal: it was in a damaged block (reported). The segment is
        // complete, whatever it lost: go on with the next.
        SegmentEnd::Unusable
    }

    /// Reads up to `len` bytes at `pos` of `seg`, opened as `file`, into
    /// the buffer; `false` on error, and if a staged segment's file no
    /// longer bears its name once read: it was moved meanwhile, and perhaps
    /// reused for another segment (`FORMAT.md`, "Sealing and moving"), so
    /// the next poll reads on from the capture directory's copy.
    fn fill(&mut self, file: &mut File, seg: &Segment<'_>, pos: u64, len: usize) -> bool {
        super::read_range(file, pos, len as u64, &mut self.buf).is_ok()
            && (!seg.staged || crate::store::fsutil::still_names(seg.path, file))
    }
}

/// Payload length of the record at the start of `buf`, if its tag is valid.
fn record_len_at(buf: &[u8]) -> Option<usize> {
    let tag = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    format::parse_tag(tag)?;
    Some(u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?) as usize)
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
