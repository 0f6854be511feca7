//! File-system helpers with the capture's security rules built in.
//!
//! Capture files contain keystrokes and screen contents, so every directory
//! the spool makes is `0700`, every file `0600`, and nothing is created by
//! following a symlink: files are opened with `O_CREAT | O_EXCL | O_NOFOLLOW`,
//! and an existing directory is accepted only if it is a real directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `path` (and missing parents) with mode `0700`. An existing
/// directory is accepted only if it is a real directory, not a symlink; its
/// mode is left as the user chose it, except that `private_leaf` tightens the
/// last component to `0700` — and refuses a directory shared with other
/// users (sticky or world-writable, such as `/tmp` or `/dev/shm`).
pub fn create_private_dir(path: &Path, private_leaf: bool) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: is a symlink, refusing to use it", path.display()),
            ))
        }
        Ok(md) if md.is_dir() => {
            // A directory others may create in (/tmp, /dev/shm: sticky or
            // writable by all) is shared by design: made 0700, it would
            // lock every other user out of it.
            if private_leaf && (md.mode() & 0o1000 != 0 || md.mode() & 0o002 != 0) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{}: a directory shared with other users, refusing to make it private",
                        path.display()
                    ),
                ));
            }
            if private_leaf && md.mode() & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
            }
            return Ok(());
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists and is not a directory", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            create_private_dir(parent, false)?;
        }
    }
    // mkdir(2) never follows a symlink in the last component: if one appears
    // here meanwhile, this fails with EEXIST.
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = std::fs::symlink_metadata(path)?;
            if md.is_dir() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists and is not a directory", path.display()),
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates a new file with mode `0600`, failing if anything — a file or a
/// symlink — already exists at `path`.
pub fn create_new_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an existing regular file for reading without following a symlink.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens a file a capture directory claims is a regular file, for reading:
/// never through a symlink, never blocking (a FIFO planted in its place
/// would otherwise wait for a writer forever), and refused unless the
/// opened file itself is regular, so nothing can be swapped in between a
/// check and the open.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Renames `from` to `to`, failing with `AlreadyExists` if anything — a
/// file or a symlink — is at `to` (`renameat2` with `RENAME_NOREPLACE`).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: plain syscall on two valid NUL-terminated paths we own.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `path` still names `file` (same device and inode), without
/// following a symlink at `path`. A reader of a staged segment asks this
/// after reading it: the writer renames a moved segment away before it
/// reuses the file for another one, so a `true` here means what was read
/// is the segment the name promised.
pub fn still_names(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
        _ => false,
    }
}

/// `fsync` of a directory, so that a rename or create in it is durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Writes `bytes` to `path` atomically and durably: a new temporary file
/// beside it, `fsync`, `rename` over the target, `fsync` of the directory.
/// A reader sees the old contents or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    // A leftover from a crash in this same step is ours to replace.
    remove_if_regular(&tmp)?;
    let mut f = create_new_file(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Removes `path` if it is a regular file or a symlink (never what a symlink
/// points to); absent is fine.
pub fn remove_if_regular(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{}: is a directory", path.display()),
        )),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reserves `len` bytes for `file` with `posix_fallocate`, so that stores
/// into a mapping of it can never hit an unallocated block (which would kill
/// the process with `SIGBUS` on a full filesystem).
pub fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
    // SAFETY: plain syscall on a valid, owned file descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Whether `path` lives on a memory-backed filesystem (tmpfs or ramfs),
/// whose pages are never written back to a disk.
pub fn is_memory_backed(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; the path is a
    // valid NUL-terminated string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return false;
        }
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        let t = st.f_type as i64;
        t == TMPFS_MAGIC || t == RAMFS_MAGIC
    }
}

/// 16 random bytes from the kernel; if it cannot give them, bytes that are
/// at least unique to this process and moment.
pub fn random_bytes() -> [u8; 16] {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let ok = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (now ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    bytes
}

/// [`random_bytes`] as 32 lowercase hex digits.
pub fn random_hex() -> String {
    random_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The real user id of this process.
pub fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn open_regular_takes_files_and_refuses_fifos_and_symlinks_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file).is_ok());

        let fifo = dir.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Would block forever waiting for a writer without O_NONBLOCK.
        let err = open_regular(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            open_regular(&link).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    /// A staging root or capture directory named as `/tmp` or `/dev/shm`
    /// once made such a directory 0700, locking every other user out.
    #[test]
    fn a_shared_directory_is_refused_as_private_and_left_as_it_was() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        for mode in [0o1777, 0o777, 0o1700] {
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = create_private_dir(&shared, true).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{mode:o}");
            let now = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
            assert_eq!(now, mode, "{mode:o}");
            // As a parent (not the leaf) it is used as it is.
            assert!(create_private_dir(&shared.join(format!("mine-{mode:o}")), true).is_ok());
        }
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(create_private_dir(&shared, true).is_ok());
        let now = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(now, 0o700);
    }
}
