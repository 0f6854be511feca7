//! Crash recovery: moving segments that a dead writer left staged in memory
//! into their capture directory.
//!
//! A writer that is killed leaves its live and not-yet-moved segments in its
//! staging directory on the memory-backed filesystem; every record it had
//! acknowledged is in them (the mapping is shared, so the bytes outlive the
//! process). The capture directory's manifest names that staging directory;
//! the staging directory's `owner.json` names the capture directory back, and
//! its `lock` tells whether the writer still lives. A reboot empties tmpfs
//! and loses what was staged.
//!
//! The hot path writes records without their CRC; recovery fills the CRCs in
//! (and flags the segment header) on the copy it writes to the capture
//! directory, as the writer's retirer would have. In direct mode (segments
//! mapped in the capture directory, no staging directory) there is nothing
//! to move and recovery leaves the files alone; readers accept their
//! unflagged records as they would staged ones.

use std::path::{Path, PathBuf};

use crate::format;
use crate::fsutil;
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::reader::SPOOL_DIR;
use crate::staging::{self, Owner};

/// What a recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments moved into the capture directory.
    pub segments: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// The staging directory that was emptied, if any.
    pub staging_dir: Option<PathBuf>,
}

/// Moves the segments staged for `capture_dir` into it, if its writer is no
/// longer running. Returns an empty report when there is nothing to do.
///
/// The manifest keeps `clean_shutdown: false` (the session did not shut down
/// cleanly) and loses its `staging_dir`, since everything is now in place.
pub fn recover(capture_dir: &Path) -> Result<RecoveryReport, String> {
    let manifest_path = capture_dir.join(MANIFEST_FILE);
    let mut manifest = Manifest::load(&manifest_path)?;
    let Some(staging_dir) = manifest.staging_dir.clone().map(PathBuf::from) else {
        return Ok(RecoveryReport::default());
    };
    if !staging::check_staging_dir(&staging_dir)? {
        return Ok(RecoveryReport::default());
    }
    if staging::writer_alive(&staging_dir) {
        return Err(format!(
            "{}: the session is still being written (its staging lock is held)",
            capture_dir.display()
        ));
    }
    let report = move_staged(&staging_dir, capture_dir)?;
    manifest.staging_dir = None;
    manifest.errors.push(format!(
        "recovered {} staged segments ({} bytes) after the writer stopped without closing",
        report.segments, report.bytes
    ));
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    fsutil::write_atomic(&manifest_path, &json)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    Ok(report)
}

/// Recovers every abandoned session under a staging root (what a new session
/// does at start): each staging directory whose lock nobody holds is moved
/// into the capture directory its `owner.json` names, if that directory's
/// manifest points back at it.
pub fn recover_abandoned(staging_root: &Path) -> Vec<Result<RecoveryReport, String>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(staging_root) else {
        return out;
    };
    for e in entries.flatten() {
        let dir = e.path();
        if !matches!(staging::check_staging_dir(&dir), Ok(true)) || staging::writer_alive(&dir) {
            continue;
        }
        let owner: Option<Owner> = std::fs::read(dir.join(staging::OWNER_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(owner) = owner else { continue };
        let capture = PathBuf::from(&owner.capture_dir);
        let points_back = Manifest::load(&capture.join(MANIFEST_FILE))
            .ok()
            .and_then(|m| m.staging_dir)
            .is_some_and(|s| Path::new(&s) == dir);
        if points_back {
            out.push(recover(&capture));
        }
    }
    out
}

fn move_staged(staging_dir: &Path, capture_dir: &Path) -> Result<RecoveryReport, String> {
    let mut report = RecoveryReport {
        staging_dir: Some(staging_dir.to_path_buf()),
        ..Default::default()
    };
    let spool = capture_dir.join(SPOOL_DIR);
    fsutil::create_private_dir(&spool, true).map_err(|e| format!("{}: {e}", spool.display()))?;
    let entries =
        std::fs::read_dir(staging_dir).map_err(|e| format!("{}: {e}", staging_dir.display()))?;
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if format::validate_channel_name(&name).is_err() || !e.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let src_dir = staging_dir.join(&name);
        let dst_dir = spool.join(&name);
        fsutil::create_private_dir(&dst_dir, true)
            .map_err(|e| format!("{}: {e}", dst_dir.display()))?;
        let files =
            std::fs::read_dir(&src_dir).map_err(|e| format!("{}: {e}", src_dir.display()))?;
        for f in files.flatten() {
            let fname = f.file_name();
            if fname
                .to_str()
                .and_then(format::parse_segment_file_name)
                .is_none()
            {
                continue;
            }
            let src = src_dir.join(&fname);
            let dst = dst_dir.join(&fname);
            let bytes = copy_segment(&src, &dst)?;
            std::fs::remove_file(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            report.segments += 1;
            report.bytes += bytes;
        }
        fsutil::sync_dir(&dst_dir).map_err(|e| format!("{}: {e}", dst_dir.display()))?;
        let _ = std::fs::remove_dir(&src_dir);
    }
    let _ = std::fs::remove_file(staging_dir.join(staging::OWNER_FILE));
    let _ = std::fs::remove_file(staging_dir.join(staging::LOCK_FILE));
    let _ = std::fs::remove_dir(staging_dir);
    Ok(report)
}

/// Copies a staged segment over its capture-directory name (the staged copy
/// is always at least as complete), cutting the unused zeroes at the end and
/// filling in its record CRCs on the way.
fn copy_segment(src: &Path, dst: &Path) -> Result<u64, String> {
    use std::io::{Read, Write};
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let mut data = Vec::new();
    fsutil::open_nofollow(src)
        .and_then(|f| {
            f.take(crate::reader::MAX_SEGMENT_BYTES)
                .read_to_end(&mut data)
        })
        .map_err(|e| err(src, e))?;
    let used = used_len(&data);
    // The writer left record CRCs at zero; a segment in the capture directory
    // carries them all. Up to the torn tail, if any: a record whose tag is
    // still zero was never committed and gets none.
    format::fill_checksums(&mut data[..used]);
    let mut tmp_name = dst.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    fsutil::remove_if_regular(&tmp).map_err(|e| err(&tmp, e))?;
    let mut f = fsutil::create_new_file(&tmp).map_err(|e| err(&tmp, e))?;
    f.write_all(&data[..used]).map_err(|e| err(&tmp, e))?;
    f.sync_all().map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, dst).map_err(|e| err(dst, e))?;
    Ok(used as u64)
}

/// Bytes of a staged segment worth keeping: every record up to the first
/// unwritten tag (a record may end in zero bytes, so trailing zeroes alone
/// do not tell), and never less than up to the last non-zero byte.
fn used_len(data: &[u8]) -> usize {
    let mut at = format::SEGMENT_HEADER_LEN;
    while at + format::RECORD_HEADER_LEN <= data.len() {
        let word = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
        if format::parse_tag(word(at)).is_none() {
            break;
        }
        let next = at.saturating_add(format::record_len(word(at + 4) as usize));
        if next > data.len() {
            break;
        }
        at = next;
    }
    let last = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    at.max(format::align_up(last)).min(data.len())
}
