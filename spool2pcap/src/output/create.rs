//! Creating output files and directories safely: capture directories are
//! untrusted, and the outputs hold keystrokes.
//!
//! Directories are opened component by component with `O_NOFOLLOW` and
//! created with mode 0700, files created in a held directory descriptor
//! (`openat`) with mode 0600, never through a symlink, never over one of
//! the capture's own files, and a FIFO or device is refused without
//! waiting on it ([`create_output_file`], [`OutputDir`]).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::guard::InputFiles;

/// Why an output file or directory was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The file exists and overwriting was not asked for.
    #[error("already exists (use --force to overwrite)")]
    Exists,
    /// A component of the path is a symlink: outputs never follow one.
    #[error("{0}: is a symlink: refusing to follow it (give the real path)")]
    Symlink(PathBuf),
    /// Something that is not a directory where the output directory (or
    /// one on its path) should be.
    #[error("{0}: exists and is not a directory")]
    NotADirectory(PathBuf),
    /// A FIFO, device or socket where the output file should be.
    #[error("exists and is not a regular file (--force overwrites only a regular file)")]
    NotRegular,
    /// A directory where the output file should be.
    #[error("is a directory: -w names the file to write (-o OUTDIR writes one file per channel into a directory)")]
    IsDirectory,
    /// The output is one of the files of the capture being read.
    #[error("is one of the capture's own files: refusing to overwrite it")]
    IsInput,
    /// The output directory is inside the capture's `spool/`.
    #[error("is inside the capture's spool/ directory: refusing to write there")]
    InsideSpool,
    /// The path cannot be passed to the system (a NUL byte, a prefix).
    #[error("not a usable path")]
    BadPath,
    /// The system refused.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl CreateError {
    /// Whether the error is the caller's choice of output rather than a
    /// failure of the system.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CreateError::IsInput | CreateError::InsideSpool | CreateError::IsDirectory
        )
    }
}

/// `path` as a C string for the `*at` calls.
fn c_path(path: &std::ffi::OsStr) -> Result<CString, CreateError> {
    CString::new(path.as_bytes()).map_err(|_| CreateError::BadPath)
}

/// `openat(dir, name, flags, mode)` as an owned descriptor.
fn open_at(dir: BorrowedFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor, `name` NUL-terminated; the
    // returned descriptor, if any, is new and ours to own.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`'s file type bits.
fn type_at(dir: BorrowedFd, name: &CStr) -> io::Result<u32> {
    // SAFETY: an all-zero `stat` is a valid value for the call to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, `st` ours to write.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT)
}

/// Flags of every directory descriptor on an output path: a handle to the
/// directory itself, never through a symlink.
const DIR_FLAGS: i32 = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Opens the directory `path` names, component by component, never
/// following a symlink (`O_NOFOLLOW` on each), creating missing ones with
/// mode 0700 if `create`. However the path is spelled (a trailing slash,
/// `.` or `..` after a link), a symlink on it is refused. Nothing is
/// created inside the directory `forbidden` (by device and inode), and the
/// result may not be inside it either.
fn open_dir_path(
    path: &Path,
    create: bool,
    forbidden: Option<(u64, u64)>,
) -> Result<OwnedFd, CreateError> {
    let start = if path.is_absolute() { "/" } else { "." };
    let mut fd = OwnedFd::from(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(DIR_FLAGS)
            .open(start)?,
    );
    let mut shown = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    for component in path.components() {
        let name = match component {
            Component::RootDir | Component::CurDir => continue,
            Component::Prefix(_) => return Err(CreateError::BadPath),
            Component::ParentDir => std::ffi::OsStr::new(".."),
            Component::Normal(n) => n,
        };
        shown.push(name);
        let c = c_path(name)?;
        let opened = match open_at(fd.as_fd(), &c, DIR_FLAGS, 0) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                if let Some(f) = forbidden {
                    if is_within(fd.as_fd(), f)? {
                        return Err(CreateError::InsideSpool);
                    }
                }
                // SAFETY: valid descriptor and NUL-terminated name; mkdirat
                // never follows a symlink in the name it creates.
                let rc = unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o700) };
                let made = if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                };
                match made {
                    Ok(()) => open_at(fd.as_fd(), &c, DIR_FLAGS, 0),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        open_at(fd.as_fd(), &c, DIR_FLAGS, 0)
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        fd = match opened {
            Ok(next) => next,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(match type_at(fd.as_fd(), &c) {
                    Ok(libc::S_IFLNK) => CreateError::Symlink(shown),
                    _ => CreateError::NotADirectory(shown),
                });
            }
            Err(e) => return Err(e.into()),
        };
    }
    if let Some(f) = forbidden {
        if is_within(fd.as_fd(), f)? {
            return Err(CreateError::InsideSpool);
        }
    }
    Ok(fd)
}

/// Whether the directory `dir` is `ancestor` (by device and inode) or
/// below it, following `..` up to the root.
fn is_within(dir: BorrowedFd, ancestor: (u64, u64)) -> io::Result<bool> {
    let id = |fd: &OwnedFd| -> io::Result<(u64, u64)> {
        let md = File::from(fd.try_clone()?).metadata()?;
        Ok((md.dev(), md.ino()))
    };
    let mut fd = open_at(dir, c".", DIR_FLAGS, 0)?;
    // Deeper than any path the system resolves: a loop guard only.
    for _ in 0..4096 {
        let here = id(&fd)?;
        if here == ancestor {
            return Ok(true);
        }
        let parent = open_at(fd.as_fd(), c"..", DIR_FLAGS, 0)?;
        if id(&parent)? == here {
            return Ok(false);
        }
        fd = parent;
    }
    Ok(false)
}

/// The directory and last component of an output file's path.
fn split_file_path(path: &Path) -> Result<(&Path, &std::ffi::OsStr), CreateError> {
    match path.components().next_back() {
        Some(Component::Normal(name)) if !path.as_os_str().as_bytes().ends_with(b"/") => {
            let parent = path.parent().unwrap_or(Path::new(""));
            Ok((parent, name))
        }
        _ => Err(CreateError::IsDirectory),
    }
}

/// Creates the output file `name` in the directory `dir` (a descriptor of
/// [`open_dir_path`]), readable by its owner only (mode 0600).
///
/// Without `force` an existing file is an error (`O_EXCL`). With `force` it
/// is overwritten, but only once it is known to be a regular file and none
/// of `inputs`: it is opened without truncation, checked, then truncated. A
/// symlink is never followed (`O_NOFOLLOW`), and the open never blocks (a
/// FIFO is refused, not waited on).
fn create_file_at(
    dir: BorrowedFd,
    name: &std::ffi::OsStr,
    force: bool,
    inputs: Option<&InputFiles>,
) -> Result<File, CreateError> {
    let c = c_path(name)?;
    let mut flags =
        libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !force {
        flags |= libc::O_EXCL;
    }
    let fd = match open_at(dir, &c, flags, 0o600) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match e.raw_os_error() {
                // What exists decides what to say: only a regular file is
                // one --force would overwrite.
                Some(libc::EEXIST) => match type_at(dir, &c) {
                    Ok(libc::S_IFREG) => CreateError::Exists,
                    Ok(libc::S_IFDIR) => CreateError::IsDirectory,
                    Ok(libc::S_IFLNK) => CreateError::Symlink(PathBuf::from(name)),
                    Ok(_) => CreateError::NotRegular,
                    Err(_) => CreateError::Exists,
                },
                Some(libc::ELOOP) => CreateError::Symlink(PathBuf::from(name)),
                // A FIFO nobody reads, a device without its driver.
                Some(libc::ENXIO | libc::ENODEV) => CreateError::NotRegular,
                Some(libc::EISDIR) => CreateError::IsDirectory,
                _ => e.into(),
            });
        }
    };
    let file = File::from(fd);
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(CreateError::NotRegular);
    }
    if inputs.is_some_and(|i| i.contains(&md)) {
        return Err(CreateError::IsInput);
    }
    if force {
        file.set_len(0)?;
    }
    // Writes may block like any file's from here on.
    // SAFETY: fcntl on a descriptor `file` owns.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(file)
}

/// Creates the output file `path` as [`OutputDir::create_file`] does, in
/// its directory as it exists (opened as [`OutputDir::open`] does, never
/// through a symlink, and refused inside the capture's `spool/`).
pub fn create_output_file(
    path: &Path,
    force: bool,
    inputs: Option<&InputFiles>,
) -> Result<File, CreateError> {
    let (parent, name) = split_file_path(path)?;
    let dir = open_dir_path(parent, false, inputs.and_then(InputFiles::spool_dir))?;
    create_file_at(dir.as_fd(), name, force, inputs)
}

/// An output directory, held open so that every file is created in it and
/// nowhere else, whatever happens to its path meanwhile.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
}

impl OutputDir {
    /// Opens the output directory `path`, creating it (and missing
    /// parents) with mode 0700; no component of `path` may be a symlink.
    /// With `inputs`, a directory inside the capture's `spool/` is refused.
    pub fn open(path: &Path, inputs: Option<&InputFiles>) -> Result<OutputDir, CreateError> {
        let forbidden = inputs.and_then(InputFiles::spool_dir);
        Ok(OutputDir {
            fd: open_dir_path(path, true, forbidden)?,
        })
    }

    /// Whether something named `name` exists in the directory (a symlink
    /// counts).
    pub fn contains(&self, name: &str) -> Result<bool, CreateError> {
        match type_at(self.fd.as_fd(), &c_path(name.as_ref())?) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the output file `name` in the directory, readable by its
    /// owner only (mode 0600). Without `force` an existing file is an
    /// error; with it, an existing regular file that is none of `inputs` is
    /// truncated (checked before truncating). A symlink is never followed,
    /// and a FIFO or device is refused without waiting on it.
    pub fn create_file(
        &self,
        name: &str,
        force: bool,
        inputs: Option<&InputFiles>,
    ) -> Result<File, CreateError> {
        create_file_at(self.fd.as_fd(), name.as_ref(), force, inputs)
    }

    /// Removes `name` from this directory (a file this run created), by
    /// the directory's descriptor, so no symlink swapped into the path
    /// since can redirect it.
    pub fn remove_file(&self, name: &str) -> Result<(), CreateError> {
        let c = c_path(name.as_ref())?;
        // SAFETY: unlinkat with a descriptor we own and a NUL-terminated
        // name; it touches only the directory entry.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }
}
/// An output named on the command line: standard output, or a file or
/// directory by its path. Shown as the path, or as `<stdout>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// Standard output.
    Stdout,
    /// A file or directory.
    Path(PathBuf),
}

impl OutputTarget {
    /// The path, if it is not standard output.
    pub fn path(&self) -> Option<&Path> {
        match self {
            OutputTarget::Stdout => None,
            OutputTarget::Path(p) => Some(p),
        }
    }

    /// Opens the output as a file, unbuffered: a path is created as
    /// [`create_output_file`] does (refusing one of `inputs`); standard
    /// output is a plain `File` on a duplicated descriptor, so that writes
    /// bypass `Stdout`'s line buffering (which scans binary data for
    /// newlines) and go straight to the pipe in big chunks. Standard
    /// output that is one of `inputs` (`1<>capture/spool/…`) is refused
    /// as a path would be.
    pub fn open(&self, force: bool, inputs: Option<&InputFiles>) -> Result<File, CreateError> {
        match self {
            OutputTarget::Path(p) => create_output_file(p, force, inputs),
            OutputTarget::Stdout => {
                let file = File::from(io::stdout().as_fd().try_clone_to_owned()?);
                let md = file.metadata()?;
                if inputs.is_some_and(|i| i.contains(&md)) {
                    return Err(CreateError::IsInput);
                }
                Ok(file)
            }
        }
    }
}

impl std::fmt::Display for OutputTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputTarget::Stdout => f.write_str("<stdout>"),
            OutputTarget::Path(p) => p.display().fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_are_exclusive_private_and_never_follow_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pcap");
        create_output_file(&p, false, None).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_output_file(&p, false, None).is_err(), "no overwrite");
        create_output_file(&p, true, None).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.pcap");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_output_file(&link, true, None).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn output_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/y");
        OutputDir::open(&p, None).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        OutputDir::open(&p, None).unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(matches!(
            OutputDir::open(&f, None),
            Err(CreateError::NotADirectory(_))
        ));
    }

    #[test]
    fn output_paths_never_pass_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let spelled = |s: &str| PathBuf::from(format!("{}{s}", link.display()));
        for p in [
            spelled(""),
            spelled("/"),
            spelled("//"),
            spelled("/."),
            spelled("/sub"),
        ] {
            assert!(
                matches!(OutputDir::open(&p, None), Err(CreateError::Symlink(_))),
                "{}",
                p.display()
            );
            assert!(create_output_file(&p.join("f.pcap"), true, None).is_err());
        }
        assert!(create_output_file(&spelled("/f.pcap"), true, None).is_err());
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn output_files_refuse_fifos_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            create_output_file(&fifo, true, None),
            Err(CreateError::NotRegular)
        ));
        // Without --force too: saying "use --force" would only lead to the
        // refusal above.
        assert!(matches!(
            create_output_file(&fifo, false, None),
            Err(CreateError::NotRegular)
        ));
    }

    #[test]
    fn a_directory_is_refused_as_one_with_or_without_force() {
        let dir = tempfile::tempdir().unwrap();
        for force in [false, true] {
            let e = create_output_file(dir.path(), force, None).unwrap_err();
            assert!(matches!(e, CreateError::IsDirectory), "{force}: {e}");
            assert!(e.is_usage());
        }
        let mut slash = dir.path().as_os_str().to_owned();
        slash.push("/");
        assert!(matches!(
            create_output_file(Path::new(&slash), false, None),
            Err(CreateError::IsDirectory)
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            create_output_file(&file, false, None),
            Err(CreateError::Exists)
        ));
    }
}
