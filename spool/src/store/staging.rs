//! Where live segments are mapped: a private directory on a memory-backed
//! filesystem, one per session.
//!
//! Layout: `<root>/<session-id>/` (mode `0700`) holds `owner.json` (which
//! capture directory the segments belong to), `lock` (held with `flock` by
//! the writing process for as long as it lives), `<channel>/NNNNNNNN.seg`,
//! and `.spare/` (segments already moved into the capture directory, kept
//! to be reused: never read, deleted by whoever cleans up).
//! A crashed session is recognised by a lock that nobody holds.
//!
//! A manifest's `staging_dir` is only a claim: before anything acts on a
//! staging directory (moves or deletes its files), [`verify_owner`] checks
//! that the directory proves it belongs to that capture — named after the
//! capture's session id, inside a private root, with an `owner.json` naming
//! the capture directory by path and by device and inode.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::fsutil;

/// Name of the per-user directory under the runtime directory.
pub const STAGING_ROOT_NAME: &str = "ryll-spool";

/// File in a session's staging directory naming its capture directory.
pub const OWNER_FILE: &str = "owner.json";

/// File in a session's staging directory locked by the live writer.
pub const LOCK_FILE: &str = "lock";

/// Directory in a session's staging directory holding spare segments
/// (`crate::write::spare`). Not a valid channel name, so it is never taken
/// for a channel.
pub const SPARE_DIR: &str = ".spare";

/// Whether `name`, an entry of a session's staging directory, is one of
/// the staging directory's own files rather than a channel's directory.
pub fn is_own_entry(name: &str) -> bool {
    [OWNER_FILE, LOCK_FILE, SPARE_DIR].contains(&name)
}

/// Contents of `owner.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    /// Absolute path of the capture directory the segments belong to.
    pub capture_dir: String,
    /// Process id of the writer (informational; the lock is what counts).
    pub pid: u32,
    /// Device of the capture directory, as `stat` reported it at creation.
    #[serde(default)]
    pub capture_dev: Option<u64>,
    /// Inode of the capture directory, as `stat` reported it at creation.
    #[serde(default)]
    pub capture_ino: Option<u64>,
}

/// Largest `owner.json` read; a bigger one is not ours.
const MAX_OWNER_BYTES: u64 = 64 << 10;

/// Why a staging directory was not accepted as a capture's.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The path is not a private directory of this user.
    #[error("{}: {reason}", path.display())]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The directory does not prove it belongs to the capture.
    #[error("{} does not belong to capture {}: {reason}", path.display(), capture.display())]
    NotOwned {
        /// The staging directory.
        path: PathBuf,
        /// The capture directory.
        capture: PathBuf,
        /// The evidence that failed.
        reason: &'static str,
    },
    /// Reading the directory or its files failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
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

/// Name of the per-user directory of memory-only rings' capture
/// directories ([`crate::SpoolConfig::memory_ring`]).
pub const RING_ROOT_NAME: &str = "ryll-ring";

/// Where memory-only rings keep their capture directories (manifest and
/// metadata; their segments are staged under [`default_root`]): beside the
/// staging root, `$XDG_RUNTIME_DIR/ryll-ring` or `/dev/shm/ryll-ring-<uid>`.
/// `None` when no memory-backed directory exists: such a ring would have
/// to touch a disk, so there is none.
pub fn ring_root() -> Option<PathBuf> {
    let staging = default_root()?;
    let name = staging.file_name()?.to_str()?;
    let ring = name.replacen(STAGING_ROOT_NAME, RING_ROOT_NAME, 1);
    Some(staging.with_file_name(ring))
}

/// A root directory for this user's staging or rings, as
/// [`private_root`] found or made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRoot {
    /// The directory: private (`0700`), this user's, not a symlink.
    pub path: PathBuf,
    /// Set when `path` is a fallback: why the root asked for was not used.
    pub warning: Option<String>,
}

/// How many random names [`private_root`] tries for a fallback before
/// giving up (each is 128 random bits: a clash means something is wrong).
const FALLBACK_TRIES: usize = 8;

/// Most entries of a root's parent [`fallback_roots`] looks at.
pub const MAX_FALLBACK_SCAN: usize = 10_000;

/// `root` made ready for this user's files: created `0700` if missing,
/// tightened to `0700` if it is this user's and open to others, and
/// verified (a real directory, this user's, closed to others).
///
/// A root that fails — pre-created by another user in a shared directory
/// such as `/dev/shm`, a symlink, a file — is never used, and never
/// fails the caller: a fresh private directory beside it is used instead,
/// named `<root name>.<32 random hex digits>` ([`is_fallback_root`]), made
/// with `mkdir` (which neither follows nor reuses anything already
/// there), and the returned [`PrivateRoot::warning`] names both. Only when
/// no such directory can be made either (the parent is missing or not
/// writable) is this an error.
pub fn private_root(root: &Path) -> io::Result<PrivateRoot> {
    let why = match claim_root(root) {
        Ok(()) => {
            return Ok(PrivateRoot {
                path: root.to_path_buf(),
                warning: None,
            })
        }
        Err(why) => why,
    };
    let fallback = make_fallback_root(root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{why}; and no private directory could be made beside it: {e}"),
        )
    })?;
    let warning = format!(
        "{why}; using the private directory {} instead",
        fallback.display()
    );
    Ok(PrivateRoot {
        path: fallback,
        warning: Some(warning),
    })
}

/// Creates `root` if missing and checks that this user alone controls it.
/// The error says, naming `root`, why it cannot be used.
fn claim_root(root: &Path) -> Result<(), String> {
    let refuse = |why: &dyn std::fmt::Display| format!("{}: {why}: not used", root.display());
    match std::fs::symlink_metadata(root) {
        Ok(md) if md.file_type().is_symlink() => return Err(refuse(&"a symlink")),
        Ok(md) if !md.is_dir() => return Err(refuse(&"not a directory")),
        Ok(md) if md.uid() != fsutil::current_uid() => {
            return Err(refuse(&format_args!(
                "owned by another user (uid {})",
                md.uid()
            )))
        }
        _ => {}
    }
    fsutil::create_private_dir(root, true).map_err(|e| refuse(&e))?;
    match check_staging_dir(root) {
        Ok(true) => Ok(()),
        Ok(false) => Err(refuse(&"vanished while it was made")),
        Err(e) => Err(refuse(&e)),
    }
}

/// Makes a new private directory beside `root` with a random name.
fn make_fallback_root(root: &Path) -> io::Result<PathBuf> {
    let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root has no parent directory",
        ));
    };
    for _ in 0..FALLBACK_TRIES {
        let mut fallback = name.to_os_string();
        fallback.push(format!(".{}", fsutil::random_hex()));
        let path = parent.join(fallback);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
        return match check_staging_dir(&path) {
            Ok(true) => Ok(path),
            Ok(false) => Err(io::ErrorKind::NotFound.into()),
            Err(e) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                e.to_string(),
            )),
        };
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: every random name tried was taken", parent.display()),
    ))
}

/// Whether `path` is named as [`private_root`] names a fallback root:
/// `<name>.<32 lowercase hex digits>`.
pub fn is_fallback_root(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.rsplit_once('.').is_some_and(|(stem, hex)| {
        !stem.is_empty()
            && hex.len() == 32
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Removes `root` if it is an empty fallback root ([`is_fallback_root`]):
/// each holds one session's staging or one ring, and goes with it.
pub fn remove_empty_fallback(root: &Path) {
    if is_fallback_root(root) {
        let _ = std::fs::remove_dir(root);
    }
}

/// The fallback roots [`private_root`] made beside `root` that are still
/// there and still private to this user (at most [`MAX_FALLBACK_SCAN`]
/// entries of the parent are looked at), so that what crashed sessions
/// left in them is found as it is under `root` itself.
pub fn fallback_roots(root: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (root.parent(), root.file_name().and_then(|n| n.to_str()))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    entries
        .flatten()
        .take(MAX_FALLBACK_SCAN)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
                && is_fallback_root(p)
                && matches!(check_staging_dir(p), Ok(true))
        })
        .collect()
}

/// Checks a staging directory named in a manifest before trusting it: it must
/// be an absolute path to a real directory (not a symlink) owned by this user
/// and closed to others. `Ok(false)` when it no longer exists (the usual case
/// after a clean shutdown or a reboot).
pub fn check_staging_dir(dir: &Path) -> Result<bool, StagingError> {
    let unsafe_dir = |reason| StagingError::Unsafe {
        path: dir.to_path_buf(),
        reason,
    };
    if !dir.is_absolute() {
        return Err(unsafe_dir("not an absolute path"));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(md) => {
            if !md.is_dir() {
                return Err(unsafe_dir("not a directory"));
            }
            if md.uid() != fsutil::current_uid() {
                return Err(unsafe_dir("owned by another user"));
            }
            if md.mode() & 0o077 != 0 {
                return Err(unsafe_dir("open to other users"));
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StagingError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Reads a staging directory's `owner.json` (bounded, never through a
/// symlink).
pub fn read_owner(dir: &Path) -> Result<Owner, StagingError> {
    use std::io::Read;
    let path = dir.join(OWNER_FILE);
    let io_err = |source| StagingError::Io {
        path: path.clone(),
        source,
    };
    let mut text = Vec::new();
    // Never waiting on a FIFO planted in its place.
    fsutil::open_regular(&path)
        .and_then(|f| f.take(MAX_OWNER_BYTES).read_to_end(&mut text))
        .map_err(io_err)?;
    serde_json::from_slice(&text).map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Checks that `dir` is the staging directory of the capture in
/// `capture_dir` whose session id is `session_hex`, before anything is
/// moved out of or deleted in it:
///
/// * it is a private directory of this user ([`check_staging_dir`]), and
///   so is its parent, the staging root;
/// * its name is the session id, as [`StagingDir::create`] names it;
/// * its `owner.json` is a regular file naming `capture_dir`, and — when it
///   records them, as every writer of this version does — the device and
///   inode of `capture_dir` as it is now, so a path that was renamed or
///   replaced since does not match.
///
/// A directory that is merely private and owned by this user (say, one a
/// tampered manifest points at) fails the name and owner checks.
pub fn verify_owner(dir: &Path, capture_dir: &Path, session_hex: &str) -> Result<(), StagingError> {
    let not_owned = |reason| StagingError::NotOwned {
        path: dir.to_path_buf(),
        capture: capture_dir.to_path_buf(),
        reason,
    };
    if !check_staging_dir(dir)? {
        return Err(StagingError::Io {
            path: dir.to_path_buf(),
            source: io::ErrorKind::NotFound.into(),
        });
    }
    if dir.file_name().and_then(|n| n.to_str()) != Some(session_hex) {
        return Err(not_owned("its name is not the capture's session id"));
    }
    let root = dir
        .parent()
        .ok_or_else(|| not_owned("it has no parent directory"))?;
    if !check_staging_dir(root)? {
        return Err(not_owned("its staging root is missing"));
    }
    let owner = read_owner(dir)?;
    let capture = std::fs::canonicalize(capture_dir).map_err(|source| StagingError::Io {
        path: capture_dir.to_path_buf(),
        source,
    })?;
    if Path::new(&owner.capture_dir) != capture {
        return Err(not_owned("owner.json names another capture directory"));
    }
    if let (Some(dev), Some(ino)) = (owner.capture_dev, owner.capture_ino) {
        let md = std::fs::metadata(&capture).map_err(|source| StagingError::Io {
            path: capture.clone(),
            source,
        })?;
        if md.dev() != dev || md.ino() != ino {
            return Err(not_owned(
                "the capture directory is not the one owner.json recorded",
            ));
        }
    }
    Ok(())
}

/// The staging directory `manifest` (of the capture in `capture_dir`)
/// names, if a reader may list it: `Ok(None)` when it names none or the
/// directory is gone (after a clean close or a reboot); an error, naming
/// the directory, when it is there but fails [`verify_owner`] — the
/// same checks [`crate::store::recover::recover`] makes before it moves anything
/// — so a manifest cannot make a reader list another directory of this
/// user, however private.
pub fn trusted_for_reading(
    manifest: &crate::store::manifest::Manifest,
    capture_dir: &Path,
) -> Result<Option<PathBuf>, StagingError> {
    let Some(dir) = manifest.staging_dir.as_deref().map(PathBuf::from) else {
        return Ok(None);
    };
    if !check_staging_dir(&dir)? {
        return Ok(None);
    }
    verify_owner(&dir, capture_dir, &manifest.session_id)?;
    Ok(Some(dir))
}

/// A session's staging directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    _lock: File,
    warning: Option<String>,
}

impl StagingDir {
    /// Creates `<root>/<session_hex>/`, writes `owner.json` and takes the lock.
    /// A root this user cannot trust (another user's, a symlink, shared)
    /// is replaced by a private one beside it ([`private_root`]), with a
    /// [`StagingDir::warning`] saying so; the manifest records the path,
    /// so recovery finds it all the same.
    pub fn create(root: &Path, session_hex: &str, capture_dir: &Path) -> io::Result<StagingDir> {
        let root = private_root(root)?;
        let path = root.path.join(session_hex);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let made = (|| {
            let lock = fsutil::create_new_file(&path.join(LOCK_FILE))?;
            if !try_lock(&lock)? {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "staging lock already held",
                ));
            }
            let capture_md = std::fs::metadata(capture_dir)?;
            let owner = Owner {
                capture_dir: capture_dir.to_string_lossy().into_owned(),
                pid: std::process::id(),
                capture_dev: Some(capture_md.dev()),
                capture_ino: Some(capture_md.ino()),
            };
            let json = serde_json::to_vec_pretty(&owner).map_err(io::Error::other)?;
            fsutil::write_atomic(&path.join(OWNER_FILE), &json)?;
            Ok(lock)
        })();
        match made {
            Ok(lock) => Ok(StagingDir {
                path,
                _lock: lock,
                warning: root.warning,
            }),
            Err(e) => {
                // Nothing of a session that never started is left behind.
                crate::store::recover::remove_emptied(&path);
                Err(e)
            }
        }
    }

    /// Why the staging directory is not under the root asked for, if it
    /// is not (see [`StagingDir::create`]).
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The session's staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor holding the lock (a mover process inherits it).
    pub(crate) fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
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

/// Takes an exclusive `flock` on the directory `dir` itself (never
/// through a symlink), without waiting: `Ok(None)` if another process
/// holds it. [`crate::Spool::create`] holds its capture directory's while
/// it claims it, so that of writers started at once on one directory one
/// wins and the others are told it is in use, before any of them has
/// made anything.
pub fn lock_dir(dir: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    Ok(try_lock(&file)?.then_some(file))
}

/// Takes the lock of the staging directory `dir` for whoever moves its
/// segments, so two processes never move the same session at once.
/// `Ok(None)` when someone (the writer, its mover, another reclaimer)
/// holds it. A missing lock file is created.
pub fn take_lock(dir: &Path) -> io::Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    // A regular file or nothing: a FIFO in its place is not waited on.
    let file = match fsutil::open_regular(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => fsutil::create_new_file(&path)?,
        Err(e) => return Err(e),
    };
    Ok(try_lock(&file)?.then_some(file))
}

/// Whether the writer of the session staged in `dir` is still alive (holds
/// the lock). A missing lock file counts as not alive.
pub fn writer_alive(dir: &Path) -> bool {
    match fsutil::open_regular(&dir.join(LOCK_FILE)) {
        Ok(f) => !try_lock(&f).unwrap_or(false),
        Err(_) => false,
    }
}
