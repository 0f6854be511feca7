//! A bounded window over a segment file: what [`ChannelReader`] reads
//! records and blocks through, instead of the whole segment.
//!
//! The parser asks for the bytes it needs at once ([`ByteSource::get`]): a
//! record header, a whole record (at most
//! [`MAX_RECORD_PAYLOAD`](crate::store::format::MAX_RECORD_PAYLOAD) bytes),
//! a whole compressed block (at most
//! [`MAX_BLOCK_STORED`](crate::store::block::MAX_BLOCK_STORED)), or a
//! chunk of a scan. The window keeps what it has read from the first byte
//! asked for on, reads ahead to its target size, and slides forward, so a
//! reader holds one window, or one record or block if that is larger,
//! whatever the segment claims to be: a sparse file of a few kilobytes
//! claiming a gigabyte costs one window.
//!
//! The target shrinks as more windows are open at once
//! ([`WINDOW_BUDGET`] shared by all, each between [`MIN_WINDOW`] and
//! [`MAX_WINDOW`]): a merged conversion of ten thousand channels holds ten
//! thousand windows, and together they stay within the budget (plus
//! [`MIN_WINDOW`] each once the budget is spread thinner than that).
//!
//! A staged file may be moved out of staging and reused for another
//! segment while it is read (`FORMAT.md`, "Sealing and moving"): after
//! each read of a staged file, the window checks that its path still
//! names the file it read, and fails the read ([`moved`]) if not.
//!
//! [`ChannelReader`]: super::reader::ChannelReader

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::Mmap;

use crate::store::source::ByteSource;

/// Bytes a window reads ahead when few windows are open.
pub const MAX_WINDOW: usize = 1 << 20;

/// Bytes a window reads ahead however many are open.
pub const MIN_WINDOW: usize = 4 << 10;

/// Read-ahead shared by every window open at once.
pub const WINDOW_BUDGET: usize = 64 << 20;

/// Windows alive now, in this process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The read-ahead of each window while `open` windows are alive.
fn target(open: usize) -> usize {
    (WINDOW_BUDGET / open.max(1)).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// The error a window's read gives when a staged file no longer bears its
/// name: it was moved meanwhile, and perhaps reused.
pub(super) fn moved() -> std::io::Error {
    std::io::Error::other("moved while read")
}

/// Whether `e` is [`moved`]'s.
pub(super) fn is_moved(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string() == "moved while read"
}

/// Where a segment's bytes come from: a window over its file, or a
/// mapping of the whole file (`reader::map_segment` says when).
pub(super) enum SegmentBytes {
    /// No segment open.
    None,
    /// Read through a window.
    Window(FileWindow),
    /// Mapped whole.
    Map(Mmap),
}

impl SegmentBytes {
    /// Bytes `at..at + len` that a [`ByteSource::get`] just made ready
    /// (empty if they are not).
    pub(super) fn loaded(&self, at: u64, len: usize) -> &[u8] {
        match self {
            SegmentBytes::None => &[],
            SegmentBytes::Window(w) => w.loaded(at, len),
            SegmentBytes::Map(m) => &m[range(m.len(), at, len)],
        }
    }

    /// Bytes of memory held for the segment's bytes (a mapping's pages
    /// are the kernel's, not counted).
    pub(super) fn held_bytes(&self) -> usize {
        match self {
            SegmentBytes::Window(w) => w.buf.capacity(),
            SegmentBytes::None | SegmentBytes::Map(_) => 0,
        }
    }

    /// Makes the next reads read the file again (after a fence).
    pub(super) fn forget(&mut self) {
        if let SegmentBytes::Window(w) = self {
            w.buf.clear();
        }
    }

    /// Sets how many bytes there are: a staged segment ends, for this
    /// reader, where its committed records end.
    pub(super) fn set_total(&mut self, total: u64) {
        if let SegmentBytes::Window(w) = self {
            w.total = total;
        }
    }
}

impl ByteSource for SegmentBytes {
    fn total(&self) -> u64 {
        match self {
            SegmentBytes::None => 0,
            SegmentBytes::Window(w) => w.total,
            SegmentBytes::Map(m) => m.len() as u64,
        }
    }

    fn get(&mut self, at: u64, len: usize) -> std::io::Result<&[u8]> {
        match self {
            SegmentBytes::None => Ok(&[]),
            SegmentBytes::Window(w) => w.get(at, len),
            SegmentBytes::Map(m) => Ok(&m[range(m.len(), at, len)]),
        }
    }
}

/// Bytes `at..at + len` of `total`, cut at the end.
fn range(total: usize, at: u64, len: usize) -> std::ops::Range<usize> {
    let start = usize::try_from(at).map_or(total, |a| a.min(total));
    start..start.saturating_add(len).min(total)
}

/// Files a window keeps open between reads while at most this many
/// windows are alive; past it, each read opens the file again by its path
/// and checks it is the same file (device and inode), so that a merge of
/// tens of thousands of channels needs no more descriptors than one.
pub const MAX_OPEN_FILES: usize = 256;

/// A window over one file: bytes `base..base + buf.len()` of it.
pub(super) struct FileWindow {
    /// Open while few windows are (see [`MAX_OPEN_FILES`]).
    file: Option<File>,
    path: PathBuf,
    /// Device and inode of the file first opened.
    id: (u64, u64),
    /// A staged file: checked after each read to still bear its name.
    staged: bool,
    total: u64,
    base: u64,
    buf: Vec<u8>,
}

impl FileWindow {
    /// A window over the first `total` bytes of `file`, opened at `path`,
    /// reusing `buf`'s memory. `staged`: a staged file, whose name is
    /// checked after each read.
    pub(super) fn new(
        file: File,
        path: &Path,
        total: u64,
        staged: bool,
        buf: Vec<u8>,
    ) -> std::io::Result<FileWindow> {
        let md = file.metadata()?;
        OPEN.fetch_add(1, Ordering::Relaxed);
        let mut buf = buf;
        buf.clear();
        Ok(FileWindow {
            file: Some(file),
            path: path.to_path_buf(),
            id: (md.dev(), md.ino()),
            staged,
            total,
            base: 0,
            buf,
        })
    }

    /// Gives the buffer back, for the next segment's window.
    pub(super) fn into_buf(mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn loaded(&self, at: u64, len: usize) -> &[u8] {
        match at.checked_sub(self.base) {
            Some(from) => &self.buf[range(self.buf.len(), from, len)],
            None => &[],
        }
    }

    fn get(&mut self, at: u64, len: usize) -> std::io::Result<&[u8]> {
        let end = at.saturating_add(len as u64).min(self.total);
        let at = at.min(end);
        let have = self.base.saturating_add(self.buf.len() as u64);
        if at < self.base || end > have {
            self.fill(at, end)?;
        }
        Ok(self.loaded(at, (end - at) as usize))
    }

    /// Reads bytes `at..end` at least, and on to the target, keeping what
    /// the window holds from `at` on.
    fn fill(&mut self, at: u64, end: u64) -> std::io::Result<()> {
        #[cfg(test)]
        super::reuse_race::between_open_and_read();
        let want_end = end.max(at.saturating_add(target(OPEN.load(Ordering::Relaxed)) as u64));
        let want_end = want_end.min(self.total);
        let have = self.base.saturating_add(self.buf.len() as u64);
        if at >= self.base && at < have {
            self.buf.drain(..(at - self.base) as usize);
        } else {
            self.buf.clear();
        }
        self.base = at;
        // Bounded by the callers: a record, a block, or the target.
        let want = (want_end - at) as usize;
        if self.buf.capacity() > 2 * want.max(MIN_WINDOW) {
            self.buf.shrink_to(want);
        }
        let file = self.open()?;
        let read = self.read_from(&file, at, want);
        let named = !self.staged || crate::store::fsutil::still_names(&self.path, &file);
        // Kept whatever the read gave: a file that moved must fail the next
        // read as moved too, not as missing from its old name.
        if OPEN.load(Ordering::Relaxed) <= MAX_OPEN_FILES {
            self.file = Some(file);
        }
        let failed = match read {
            Err(e) => e,
            Ok(()) if !named => moved(),
            Ok(()) => return Ok(()),
        };
        self.buf.clear();
        Err(failed)
    }

    /// Reads the window's buffer on from what it holds to `want` bytes,
    /// from `file` at `at`.
    fn read_from(&mut self, file: &File, at: u64, want: usize) -> std::io::Result<()> {
        let mut pos = self.buf.len();
        self.buf.resize(want, 0);
        while pos < want {
            match file.read_at(&mut self.buf[pos..], at + pos as u64)? {
                // Cut short meanwhile: what is gone reads as zeroes.
                0 => break,
                n => pos += n,
            }
        }
        Ok(())
    }

    /// The file, open: kept from the last read, or opened again by its
    /// path — which must then name the same file, else it was replaced
    /// meanwhile ([`moved`]); a staged file no longer there was moved too.
    fn open(&mut self) -> std::io::Result<File> {
        if let Some(file) = self.file.take() {
            return Ok(file);
        }
        let file = match crate::store::fsutil::open_regular(&self.path) {
            // A staged file gone from its name was moved.
            Err(e) if self.staged && e.kind() == std::io::ErrorKind::NotFound => {
                return Err(moved())
            }
            opened => opened?,
        };
        let md = file.metadata()?;
        if (md.dev(), md.ino()) != self.id {
            return Err(moved());
        }
        Ok(file)
    }
}

impl Drop for FileWindow {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}
