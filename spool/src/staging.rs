//! Where live segments are mapped: a private directory on a memory-backed
//! filesystem, one per session.
//!
//! Layout: `<root>/<session-id>/` (mode `0700`) holds `owner.json` (which
//! capture directory the segments belong to), `lock` (held with `flock` by
//! the writing process for as long as it lives) and `<channel>/NNNNNNNN.seg`.
//! A crashed session is recognised by a lock that nobody holds.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Name of the per-user directory under the runtime directory.
pub const STAGING_ROOT_NAME: &str = "ryll-spool";

/// File in a session's staging directory naming its capture directory.
pub const OWNER_FILE: &str = "owner.json";

/// File in a session's staging directory locked by the live writer.
pub const LOCK_FILE: &str = "lock";

/// Contents of `owner.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    /// Absolute path of the capture directory the segments belong to.
    pub capture_dir: String,
    /// Process id of the writer (informational; the lock is what counts).
    pub pid: u32,
}

/// The default staging root: `$XDG_RUNTIME_DIR/ryll-spool` when that is a
/// memory-backed directory, else `/dev/shm/ryll-spool-<uid>`; `None` when
/// neither exists (segments are then mapped in the capture directory).
pub fn default_root() -> Option<PathBuf> {
    if let Some(rt) = std::env::var_os("XDG_RUNTIME_DIR") {
        let rt = PathBuf::from(rt);
        if rt.is_absolute() && rt.is_dir() && fsutil::is_memory_backed(&rt) {
            return Some(rt.join(STAGING_ROOT_NAME));
        }
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && fsutil::is_memory_backed(shm) {
        return Some(shm.join(format!("{STAGING_ROOT_NAME}-{}", fsutil::current_uid())));
    }
    None
}

/// Checks a staging directory named in a manifest before trusting it: it must
/// be an absolute path to a real directory (not a symlink) owned by this user
/// and closed to others. `Ok(false)` when it no longer exists (the usual case
/// after a clean shutdown or a reboot).
pub fn check_staging_dir(dir: &Path) -> Result<bool, String> {
    if !dir.is_absolute() {
        return Err(format!("{}: not an absolute path", dir.display()));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(md) => {
            if !md.is_dir() {
                return Err(format!("{}: not a directory", dir.display()));
            }
            if md.uid() != fsutil::current_uid() {
                return Err(format!("{}: owned by another user", dir.display()));
            }
            if md.mode() & 0o077 != 0 {
                return Err(format!("{}: open to other users", dir.display()));
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// A session's staging directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    _lock: File,
}

impl StagingDir {
    /// Creates `<root>/<session_hex>/`, writes `owner.json` and takes the lock.
    pub fn create(root: &Path, session_hex: &str, capture_dir: &Path) -> io::Result<StagingDir> {
        fsutil::create_private_dir(root, true)?;
        let md = std::fs::symlink_metadata(root)?;
        if md.uid() != fsutil::current_uid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: owned by another user", root.display()),
            ));
        }
        let path = root.join(session_hex);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let lock = fsutil::create_new_file(&path.join(LOCK_FILE))?;
        if !try_lock(&lock)? {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "staging lock already held",
            ));
        }
        let owner = Owner {
            capture_dir: capture_dir.to_string_lossy().into_owned(),
            pid: std::process::id(),
        };
        let json = serde_json::to_vec_pretty(&owner).map_err(io::Error::other)?;
        fsutil::write_atomic(&path.join(OWNER_FILE), &json)?;
        Ok(StagingDir { path, _lock: lock })
    }

    /// The session's staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Takes an exclusive `flock` without waiting; `Ok(false)` if someone holds it.
pub fn try_lock(f: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether the writer of the session staged in `dir` is still alive (holds
/// the lock). A missing lock file counts as not alive.
pub fn writer_alive(dir: &Path) -> bool {
    match fsutil::open_nofollow(&dir.join(LOCK_FILE)) {
        Ok(f) => !try_lock(&f).unwrap_or(false),
        Err(_) => false,
    }
}
