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

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use zerocopy::FromBytes;

use crate::read::reader::{
    Damage, DamageKind, DataRecord, Event, Gap, OpenError, MAX_SEGMENT_BYTES, SPOOL_DIR,
};
use crate::store::format::{
    self, CrcRule, Direction, GapPayload, RecordKind, SegmentHeader, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
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
    buf: Vec<u8>,
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
            buf: Vec::with_capacity(WINDOW),
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
            .and_then(|m| m.staging_dir.clone())
            .map(PathBuf::from)
            .filter(|s| matches!(staging::check_staging_dir(s), Ok(true)));
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
                    || self.channels.iter().any(|c| c.name == name)
                {
                    continue;
                }
                let first = manifest
                    .and_then(|m| m.trimmed.get(&name))
                    .map_or(0, |t| t.first_kept_index);
                self.channels.push(Followed {
                    name,
                    index: first,
                    offset: 0,
                    drained: false,
                    past_last: false,
                });
            }
        }
    }

    /// Where segment `index` of `channel` is now: staged while live, in the
    /// capture directory once moved.
    fn locate(&self, staging: Option<&Path>, channel: &str, index: u64) -> Option<PathBuf> {
        let name = format::segment_file_name(index);
        let candidates = [
            staging.map(|s| s.join(channel).join(&name)),
            Some(self.dir.join(SPOOL_DIR).join(channel).join(&name)),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }

    /// The smallest segment index above `index` present for `channel`.
    fn next_present(&self, staging: Option<&Path>, channel: &str, index: u64) -> Option<u64> {
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
            .filter(|&i| i > index)
            .min()
    }

    fn read_channel(
        &mut self,
        i: usize,
        staging: Option<&Path>,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) {
        loop {
            let (name, index, offset) = {
                let c = &mut self.channels[i];
                if c.past_last {
                    c.drained = true;
                    return;
                }
                (c.name.clone(), c.index, c.offset)
            };
            let Some(path) = self.locate(staging, &name, index) else {
                // Not there yet — or deleted by a ring limit while we were
                // behind, in which case later segments exist: skip to them.
                match self.next_present(staging, &name, index) {
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
                }
            };
            match self.read_segment(&path, &name, offset, over, f) {
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
                SegmentEnd::Unusable => {
                    // Reported; go on with the next segment if there is one.
                    self.channels[i].next_segment();
                }
            }
        }
    }

    /// Reads committed records of one segment from `offset` on.
    fn read_segment(
        &mut self,
        path: &Path,
        channel: &str,
        offset: u64,
        over: bool,
        f: &mut dyn FnMut(&str, Event<'_>),
    ) -> SegmentEnd {
        let damage = |offset: u64, len: u64, kind: DamageKind| Damage {
            file: path.to_path_buf(),
            offset,
            len,
            kind,
            records_lost: 0,
        };
        // Never through a symlink, never blocking on a FIFO swapped in.
        let Ok(mut file) = crate::store::fsutil::open_regular(path) else {
            return SegmentEnd::UpTo(offset);
        };
        let file_len = file
            .metadata()
            .map_or(0, |m| m.len())
            .min(MAX_SEGMENT_BYTES);
        let mut pos = offset;
        // The header on every look, not only the first: it says whether the
        // records carry their CRCs yet, which changes when the retirer fills
        // them in.
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        let header_read = file.read_exact(&mut h).is_ok();
        let header = SegmentHeader::read_from_bytes(&h[..])
            .ok()
            .filter(|h| header_read && h.is_current());
        let rule = header.as_ref().map_or(CrcRule::Every, CrcRule::of_header);
        if pos == 0 {
            if !header_read || h.iter().all(|&b| b == 0) {
                // Still being set up by the preparer.
                return SegmentEnd::UpTo(0);
            }
            match SegmentHeader::read_from_bytes(&h[..]) {
                Ok(_) if header.is_some() => {}
                Ok(h) if h.magic == SEGMENT_MAGIC => {
                    let kind = DamageKind::UnsupportedVersion(h.version.get());
                    f(channel, Event::Damage(damage(8, 2, kind)));
                    return SegmentEnd::Unusable;
                }
                _ => {
                    f(
                        channel,
                        Event::Damage(damage(0, SEGMENT_HEADER_LEN as u64, DamageKind::BadMagic)),
                    );
                    return SegmentEnd::Unusable;
                }
            }
            pos = SEGMENT_HEADER_LEN as u64;
        }
        loop {
            if pos + RECORD_HEADER_LEN as u64 > file_len {
                return SegmentEnd::UpTo(pos);
            }
            // Read a window, or the whole record if it is larger.
            let want = WINDOW.min((file_len - pos) as usize);
            if !self.fill(&mut file, pos, want) {
                return SegmentEnd::UpTo(pos);
            }
            if let Some(len) = record_len_at(&self.buf) {
                let need = (RECORD_HEADER_LEN + len) as u64;
                if need > self.buf.len() as u64
                    && pos + need <= file_len
                    && !self.fill(&mut file, pos, need as usize)
                {
                    return SegmentEnd::UpTo(pos);
                }
            }
            if rule == CrcRule::ZeroIsUnfilled {
                // Still being written, and `read()` orders nothing: read the
                // records whose tags this pass saw once more, after an
                // acquire fence, so their payloads are whole
                // (`format::committed_end`).
                let end = format::committed_end(&self.buf, 0, rule);
                if end > 0 {
                    fence(Ordering::Acquire);
                    if !self.fill(&mut file, pos, end) {
                        return SegmentEnd::UpTo(pos);
                    }
                }
            }
            let mut at = 0;
            let mut progressed = false;
            while let Some(r) = format::parse_record(&self.buf, at, rule) {
                progressed = true;
                let next = r.next(self.buf.len());
                match r.kind {
                    RecordKind::Data => {
                        if let Some(direction) = Direction::from_byte(r.dir) {
                            let payload = &self.buf[r.payload_at..r.payload_at + r.len];
                            f(
                                channel,
                                Event::Data(DataRecord {
                                    direction,
                                    ts_ns: r.ts_ns,
                                    seq: r.seq,
                                    payload,
                                }),
                            );
                        }
                    }
                    RecordKind::Gap => {
                        if let Ok(g) = GapPayload::read_from_bytes(
                            &self.buf[r.payload_at..r.payload_at + r.len],
                        ) {
                            f(channel, Event::Gap(Gap::from(&g)));
                        }
                    }
                    RecordKind::Seal => return SegmentEnd::Sealed,
                }
                at = next;
            }
            pos += at as u64;
            if progressed {
                continue;
            }
            // No complete record here. While the writer runs, one is being
            // written: wait. Once it has stopped, what is left is a torn
            // tail, unless valid records follow (then it is damage).
            if over {
                let rest = self.buf.iter().any(|&b| b != 0);
                if rest {
                    let kind = if self.buf.get(..4).is_some_and(|t| t == [0, 0, 0, 0]) {
                        DamageKind::TornTail
                    } else {
                        DamageKind::Corrupt
                    };
                    f(
                        channel,
                        Event::Damage(damage(pos, self.buf.len() as u64, kind)),
                    );
                }
                return SegmentEnd::UpTo(file_len);
            }
            return SegmentEnd::UpTo(pos);
        }
    }

    /// Reads up to `len` bytes at `pos` into the buffer; `false` on error.
    fn fill(&mut self, file: &mut File, pos: u64, len: usize) -> bool {
        self.buf.clear();
        if file.seek(SeekFrom::Start(pos)).is_err() {
            return false;
        }
        file.by_ref()
            .take(len as u64)
            .read_to_end(&mut self.buf)
            .is_ok()
    }
}

/// Payload length of the record at the start of `buf`, if its tag is valid.
fn record_len_at(buf: &[u8]) -> Option<usize> {
    let tag = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    format::parse_tag(tag)?;
    Some(u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?) as usize)
}

enum SegmentEnd {
    /// A seal was read: go on with the next segment.
    Sealed,
    /// Everything committed so far was read; continue at this offset.
    UpTo(u64),
    /// The segment cannot be read (reported).
    Unusable,
}
