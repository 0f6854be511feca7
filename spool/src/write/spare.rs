//! Spare segments: staged files whose contents are already safe in the
//! capture directory, kept mapped so that the preparer reuses them instead
//! of making new ones.
//!
//! A new segment costs the preparer a `posix_fallocate` and a prefault of
//! every page (the kernel allocates and zeroes each), and retiring it costs
//! unmapping and freeing them all; writing a new header into a mapping
//! that already exists costs next to nothing. Its old records stay behind
//! the header, where no reader looks: the header's `written_to` says where
//! the segment's records end (`FORMAT.md`).
//! So the retirer, once a segment is durably in the capture directory,
//! hands it here rather than deleting it, and the preparer takes from here
//! before it creates anything.
//!
//! Readers never see a spare change under a name they trust: the retirer
//! renames the file out of its channel's directory (into
//! `<session>/.spare/`, [`SPARE_DIR`]) *before* anything in it is
//! overwritten, and a reader that opened it earlier checks after reading
//! that its path still names the file it read
//! ([`fsutil::still_names`]); if not, it reads the capture directory's
//! copy. A spare is never read: anyone cleaning up a staging directory
//! deletes them ([`crate::store::recover::remove_emptied`]).
//!
//! Only the background threads and `close` touch the pool, never the hot
//! path, so a plain mutex serves.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::store::format::segment_file_name;
use crate::store::fsutil;
use crate::store::staging::SPARE_DIR;
use crate::write::segment::{MappedSegment, SessionFacts};

/// A segment moved out already, waiting to be reused.
pub(crate) struct Spare {
    segment: MappedSegment,
}

impl Spare {
    /// Bytes of memory it holds.
    pub fn capacity(&self) -> usize {
        self.segment.capacity()
    }

    /// Makes this spare segment `index` of `channel`, in `dir`: given its
    /// new header, and only then renamed into place, so that a reader
    /// finding it by name sees a fresh segment. If the rename fails the
    /// file is deleted and the error returned with the path it was to take.
    pub fn reuse(
        self,
        dir: &Path,
        channel: &str,
        index: u64,
        session: &SessionFacts,
    ) -> Result<MappedSegment, io::Error> {
        let Spare { mut segment } = self;
        segment.reset(channel, index, session);
        match segment.rename(dir.join(segment_file_name(index))) {
            Ok(()) => Ok(segment),
            Err(e) => {
                let path = segment.path().to_path_buf();
                drop(segment);
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }
}

/// The spares of one session.
pub(crate) struct SparePool {
    /// `<session>/.spare/`; `None` when segments are not staged (they are
    /// then finished in place and never reused).
    dir: Option<PathBuf>,
    spares: Mutex<Vec<Spare>>,
    /// Most spares kept ([`crate::SpoolConfig::spare_segments`]). The
    /// retirer hands back about one segment per rotation and the preparer
    /// takes one, so a few cover a burst of rotations.
    max: usize,
    /// Names given so far.
    named: AtomicU64,
    /// Spares taken for reuse so far.
    reused: AtomicU64,
    /// `dir` was made private by an earlier keep and no rename into it has
    /// failed since: checked once, not per segment.
    dir_made: AtomicBool,
}

impl SparePool {
    /// A pool keeping up to `max` spares in `staging/.spare/`, or none at
    /// all when `staging` is `None`.
    pub fn new(staging: Option<&Path>, max: usize) -> SparePool {
        SparePool {
            dir: staging.map(|s| s.join(SPARE_DIR)),
            spares: Mutex::new(Vec::with_capacity(max)),
            max,
            named: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            dir_made: AtomicBool::new(false),
        }
    }

    /// Keeps `segment`, which is now safe in the capture directory (or
    /// trimmed from a memory ring), as a spare: renamed out of its
    /// channel's directory first. Gives it back when the pool is full, keeps
    /// no spares, or the rename fails (nothing is lost: the caller deletes
    /// it, as without reuse).
    pub fn keep(&self, mut segment: MappedSegment) -> Result<(), MappedSegment> {
        let Some(dir) = &self.dir else {
            return Err(segment);
        };
        let mut spares = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        if spares.len() >= self.max {
            return Err(segment);
        }
        let n = self.named.fetch_add(1, Ordering::Relaxed);
        let made = if self.dir_made.load(Ordering::Relaxed) {
            Ok(())
        } else {
            fsutil::create_private_dir(dir, true)
        };
        let renamed = made.and_then(|()| segment.rename(dir.join(format!("spare-{n}"))));
        // Under the `spares` lock, like every other use of the flag.
        self.dir_made.store(renamed.is_ok(), Ordering::Relaxed);
        if renamed.is_err() {
            return Err(segment);
        }
        spares.push(Spare { segment });
        Ok(())
    }

    /// A spare to reuse, if there is one.
    pub fn take(&self) -> Option<Spare> {
        let spare = self
            .spares
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(spare)
    }

    /// Spares taken for reuse so far.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Bytes the spares hold now: staged memory that holds no record.
    pub fn bytes(&self) -> u64 {
        let spares = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        spares.iter().map(|s| s.capacity() as u64).sum()
    }

    /// Unmaps and deletes every spare. Returns the bytes freed, and the
    /// files that could not be deleted (their memory stays staged, and the
    /// next session's recovery deletes them).
    pub fn free_all(&self) -> (u64, Vec<(PathBuf, io::Error)>) {
        let spares = std::mem::take(&mut *self.spares.lock().unwrap_or_else(|p| p.into_inner()));
        let mut freed = 0;
        let mut errors = Vec::new();
        for spare in spares {
            let size = spare.capacity() as u64;
            let path = spare.segment.path().to_path_buf();
            drop(spare);
            match std::fs::remove_file(&path) {
                Ok(()) => freed += size,
                Err(e) => errors.push((path, e)),
            }
        }
        if let Some(dir) = &self.dir {
            // Gone with its last spare, so that the staging directory can
            // go too; kept if a spare could not be deleted.
            let _ = std::fs::remove_dir(dir);
        }
        (freed, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::{self, RecordKind, SEGMENT_HEADER_LEN};

    const SEGMENT_BYTES: usize = 64 << 10;

    fn session() -> SessionFacts {
        SessionFacts {
            session_id: [7; 16],
            session_start_unix_ns: 1,
            monotonic_base_ns: 2,
            checksum_at_append: false,
        }
    }

    /// A reused segment reads as the segment a new file would have been:
    /// the same header, and no records, although its previous use's
    /// records (CRCs filled in and all) are still behind the header.
    #[test]
    fn a_reused_segment_is_indistinguishable_from_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let channel_dir = dir.path().join("display");
        std::fs::create_dir(&channel_dir).unwrap();
        let staging = dir.path().join("session");
        std::fs::create_dir(&staging).unwrap();
        let mut seg =
            MappedSegment::create(&channel_dir, "display", 0, SEGMENT_BYTES, &session()).unwrap();
        let mut used = SEGMENT_HEADER_LEN;
        for i in 0..60u32 {
            let payload = vec![0xA0 | (i as u8 & 0xF); 1000];
            seg.write_record(used, RecordKind::Data, 1, i.into(), i, &payload);
            used += 1024;
        }
        seg.fill_checksums(used);

        let pool = SparePool::new(Some(&staging), 4);
        assert!(pool.keep(seg).is_ok());
        assert!(
            !channel_dir.join("00000000.seg").exists(),
            "left under its name"
        );
        let spare = pool.take().unwrap();
        let reused = spare.reuse(&channel_dir, "display", 7, &session()).unwrap();
        let fresh_dir = dir.path().join("fresh");
        std::fs::create_dir(&fresh_dir).unwrap();
        let fresh =
            MappedSegment::create(&fresh_dir, "display", 7, SEGMENT_BYTES, &session()).unwrap();
        assert_eq!(reused.path(), channel_dir.join("00000007.seg"));
        assert_eq!(
            reused.bytes()[..SEGMENT_HEADER_LEN],
            fresh.bytes()[..SEGMENT_HEADER_LEN]
        );
        assert_ne!(
            reused.bytes()[SEGMENT_HEADER_LEN..],
            fresh.bytes()[SEGMENT_HEADER_LEN..],
            "the previous use was zeroed"
        );
        assert_eq!(
            format::written_part(reused.bytes()).len(),
            SEGMENT_HEADER_LEN
        );
        assert_eq!(
            format::written_part(fresh.bytes()).len(),
            SEGMENT_HEADER_LEN
        );
        assert_eq!(pool.reused(), 1);
        assert_eq!(pool.bytes(), 0);
    }

    /// A full pool gives segments back to be deleted, and `free_all`
    /// deletes every spare and their directory.
    #[test]
    fn the_pool_keeps_at_most_its_limit_and_frees_everything() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("session");
        let channel_dir = staging.join("display");
        std::fs::create_dir_all(&channel_dir).unwrap();
        const MAX_SPARES: usize = 3;
        let pool = SparePool::new(Some(&staging), MAX_SPARES);
        for index in 0..=MAX_SPARES as u64 {
            let seg =
                MappedSegment::create(&channel_dir, "display", index, SEGMENT_BYTES, &session())
                    .unwrap();
            let kept = pool.keep(seg);
            assert_eq!(kept.is_ok(), index < MAX_SPARES as u64, "segment {index}");
        }
        assert_eq!(pool.bytes(), (MAX_SPARES * SEGMENT_BYTES) as u64);
        let (freed, failed) = pool.free_all();
        assert!(failed.is_empty());
        assert_eq!(freed, (MAX_SPARES * SEGMENT_BYTES) as u64);
        assert!(!staging.join(SPARE_DIR).exists());
        // Direct mode keeps no spares.
        let seg =
            MappedSegment::create(&channel_dir, "display", 99, SEGMENT_BYTES, &session()).unwrap();
        assert!(SparePool::new(None, 4).keep(seg).is_err());
    }
}
