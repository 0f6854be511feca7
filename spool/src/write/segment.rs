//! One memory-mapped segment file: created, allocated and prefaulted by the
//! background thread, filled by the hot path, sealed and retired.

use std::io;
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};
use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use crate::store::format::{
    self, RecordHeader, RecordKind, SegmentHeader, RECORD_ALIGN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, WRITTEN_TO_OFFSET,
};
use crate::store::fsutil;
use crate::write::config::CRC_AT_APPEND_MIN;

/// Facts every segment of a session shares: what its header repeats, and
/// how its records are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionFacts {
    pub session_id: [u8; 16],
    pub session_start_unix_ns: u64,
    pub monotonic_base_ns: u64,
    /// The hot path stores the CRC of each record of at least
    /// [`CRC_AT_APPEND_MIN`] bytes as it appends it
    /// ([`SpoolConfig::checksum_at_append`](crate::SpoolConfig::checksum_at_append)).
    pub checksum_at_append: bool,
}

/// A segment mapped for writing.
pub(crate) struct MappedSegment {
    map: MmapMut,
    path: PathBuf,
    index: u64,
    /// Bytes up to here have been prefetched for writing ([`WARM_AHEAD`]).
    warm_to: usize,
    /// Large records get their CRC as they are written ([`SessionFacts`]).
    checksum_at_append: bool,
}

/// How far past the end of each record the hot path asks the CPU to fetch
/// the segment's cache lines for writing.
///
/// The segment's pages were last written long before (zeroed when
/// allocated, or by a previous use of the segment), so their
/// lines sit in main memory: a record written into them pays for fetching
/// every line, which a burst of appends hides (the CPU's own prefetchers
/// run ahead) but an isolated append does not: fetching them costs it
/// several times the copy itself, unless the previous append asked for
/// them (figures in `PERFORMANCE.md`). A prefetch never faults and never
/// waits; each line is asked for once.
const WARM_AHEAD: usize = 1024;

/// Size of a cache line, the unit of prefetching.
const CACHE_LINE: usize = 64;

impl std::fmt::Debug for MappedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedSegment")
            .field("path", &self.path)
            .field("index", &self.index)
            .finish()
    }
}

impl MappedSegment {
    /// Creates `dir/NNNNNNNN.seg` of `capacity` bytes, allocates every block
    /// up front (never sparse: a store into a hole on a full filesystem is a
    /// `SIGBUS`), maps it, touches every page so the hot path never faults,
    /// and writes the header (with `first_seq` still zero: the hot path sets
    /// it when the segment goes live).
    pub fn create(
        dir: &Path,
        channel: &str,
        index: u64,
        capacity: usize,
        session: &SessionFacts,
    ) -> io::Result<MappedSegment> {
        let path = dir.join(format::segment_file_name(index));
        let file = fsutil::create_new_file(&path)?;
        let result = (|| {
            fsutil::allocate(&file, capacity as u64)?;
            // SAFETY: the file is ours (created O_EXCL, 0600, in a 0700
            // directory) and sized above, and nothing cuts it short while
            // this mapping lives: the spool cuts a segment to its used size
            // only in direct mode, after dropping the mapping
            // (`background::finish_in_place`), and copies it out otherwise.
            let mut map = unsafe { MmapOptions::new().len(capacity).populate().map_mut(&file)? };
            // MAP_POPULATE prefaults tmpfs pages fully; on a disk file it only
            // read-faults, so dirty every page once to take the write faults
            // here rather than on the hot path.
            if !fsutil::is_memory_backed(dir) {
                for page in map.chunks_mut(4096) {
                    page[0] = 0;
                }
            }
            write_header(&mut map, channel, index, session);
            Ok(map)
        })();
        match result {
            Ok(map) => Ok(MappedSegment {
                map,
                path,
                index,
                warm_to: SEGMENT_HEADER_LEN,
                checksum_at_append: session.checksum_at_append,
            }),
            Err(e) => {
                // A failed fallocate can leave a partly allocated file (and a
                // full filesystem) behind: remove it.
                drop(file);
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Renames the segment's file to `to` (nothing may be there).
    pub fn rename(&mut self, to: PathBuf) -> io::Result<()> {
        fsutil::rename_noreplace(&self.path, &to)?;
        self.path = to;
        Ok(())
    }

    /// Makes this mapping a fresh segment `index` of `channel`: writes the
    /// new header, as [`MappedSegment::create`] leaves it. The records of
    /// its previous use stay behind the header, where nothing reads them:
    /// the header's `written_to` says the segment holds no record yet, and
    /// each append moves it past one record only (`FORMAT.md`). Not zeroing
    /// them saves a memset of every byte the previous use wrote, a third of
    /// the preparer's CPU in a busy memory ring (`PERFORMANCE.md`). The
    /// file keeps its name; the caller renames it into place once this
    /// returns.
    pub fn reset(&mut self, channel: &str, index: u64, session: &SessionFacts) {
        write_header(&mut self.map, channel, index, session);
        self.index = index;
        self.warm_to = SEGMENT_HEADER_LEN;
        self.checksum_at_append = session.checksum_at_append;
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// The mapped bytes (for copying a retired segment out).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Sets the sequence number of the segment's first record and re-seals
    /// the header checksum. Called once, when the segment goes live.
    pub fn set_first_seq(&mut self, seq: u64) {
        if let Ok(h) = SegmentHeader::mut_from_bytes(&mut self.map[..SEGMENT_HEADER_LEN]) {
            h.first_seq = U64::new(seq);
            h.header_crc = U32::new(h.compute_crc());
        }
    }

    /// Fills in the CRC of every record in the first `used` bytes and flags
    /// the header ([`format::fill_checksums`]). Called by the retirer, which
    /// owns the sealed segment; returns where the walk of the records ended
    /// (`used`, unless something is wrong).
    pub fn fill_checksums(&mut self, used: usize) -> usize {
        let used = used.min(self.map.len());
        format::fill_checksums(&mut self.map[..used])
    }

    /// Writes one record at `offset` and publishes it, with its CRC if the
    /// session stores them at append and the payload has at least
    /// [`CRC_AT_APPEND_MIN`] bytes, else with `crc = 0`.
    ///
    /// Header fields and payload go in first; the commit tag goes in last
    /// with release ordering, so a concurrent reader that sees the tag (with
    /// acquire ordering) sees the whole record. The caller has checked that
    /// the record fits.
    #[inline]
    pub fn write_record(
        &mut self,
        offset: usize,
        kind: RecordKind,
        dir: u8,
        ts_ns: u64,
        seq: u32,
        payload: &[u8],
    ) {
        let tag = format::record_tag(kind, dir);
        let mut header = RecordHeader {
            tag: U32::new(tag),
            len: U32::new(payload.len() as u32),
            ts_ns: U64::new(ts_ns),
            seq: U32::new(seq),
            crc: U32::new(0),
        };
        // A segment bound for disk needs every CRC, and the payload is in
        // the cache now, having just been read: computed here it costs a
        // fifth of what the retirer pays to bring the sealed segment back
        // from memory for it (`PERFORMANCE.md`). A memory ring's segments
        // mostly never leave staging: their CRCs wait for a report
        // (`fill_checksums`), and until then the tag vouches for a record.
        if self.checksum_at_append && payload.len() >= CRC_AT_APPEND_MIN {
            header.crc = U32::new(format::record_crc(&header, payload));
        }
        let body = offset + RECORD_HEADER_LEN;
        let end = body + format::align_up(payload.len());
        // Bytes 4..24 of the header, then the payload. The padding is
        // zeroed first (the payload then covers the rest of that word): a
        // reused segment holds its previous use there.
        self.map[offset + 4..body].copy_from_slice(&header.as_bytes()[4..]);
        if end > body + payload.len() {
            self.map[end - RECORD_ALIGN..end].fill(0);
        }
        self.map[body..body + payload.len()].copy_from_slice(payload);
        // `offset` and `end` are multiples of 8 in a page-aligned mapping,
        // so these are release-ordered word stores, not the unaligned
        // fallback: the tag commits the record, then `written_to` moves
        // past it (segments are at most 1 GiB, so `end` fits a u32).
        format::store_word(&mut self.map, offset, tag);
        format::store_word(&mut self.map, WRITTEN_TO_OFFSET, end as u32);
        self.warm(end);
    }

    /// Prefetches for writing the lines from `end` to [`WARM_AHEAD`] past
    /// it that earlier calls have not asked for yet.
    #[inline]
    fn warm(&mut self, end: usize) {
        let target = (end + WARM_AHEAD).min(self.map.len());
        let mut line = self.warm_to.max(end) & !(CACHE_LINE - 1);
        while line < target {
            prefetch_for_write(self.map[line..].as_ptr());
            line += CACHE_LINE;
        }
        self.warm_to = self.warm_to.max(target);
    }
}

/// Writes the header of a new segment `index` of `channel` at the start of
/// `map` (with `first_seq` still zero: the hot path sets it when the
/// segment goes live).
fn write_header(map: &mut MmapMut, channel: &str, index: u64, session: &SessionFacts) {
    let mut header = SegmentHeader::new(
        session.session_id,
        channel,
        index,
        session.session_start_unix_ns,
        session.monotonic_base_ns,
        map.len() as u64,
    );
    // No records yet: whatever follows the header (a reused segment's
    // previous use) is not this segment's.
    header.written_to = U32::new(SEGMENT_HEADER_LEN as u32);
    map[..SEGMENT_HEADER_LEN].copy_from_slice(header.as_bytes());
}

/// Asks the CPU to bring the cache line at `p` in, ready to be written.
#[inline(always)]
fn prefetch_for_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults, whatever the
    // address, and `p` points into a live mapping anyway.
    #[allow(unused_unsafe)]
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        _mm_prefetch::<_MM_HINT_ET0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
