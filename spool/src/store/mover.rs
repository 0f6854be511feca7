//! Moving staged segments into the capture directory after the writer has
//! returned from [`crate::Spool::close_within`]: a detached process.
//!
//! A session that closes with segments still staged (the disk was too slow
//! to take them within the grace period) has sealed every channel and
//! written its final manifest, saying `pending_move: true`. What remains is
//! plain file work: copy each staged segment into the capture directory
//! (CRCs filled in, a temporary file, `fsync`, `rename`), then rewrite the
//! manifest without the staging directory and remove it. That work must
//! outlive the process, which is about to exit, so it is done by a child
//! made with `fork`.
//!
//! # Why `fork`, and what the child may do
//!
//! The host (ryll) is multithreaded, and after `fork` only the calling
//! thread exists in the child: any lock another thread held at that moment
//! stays locked for ever there, and glibc's `malloc` is the only allocator
//! that promises to be usable after `fork` of a threaded process — the
//! host may use another. So the child does nothing that takes a lock or
//! allocates: the parent prepares everything before forking — every path
//! as a NUL-terminated string, the final manifest's bytes, a read buffer as
//! large as a segment — and the child only makes system calls (`open`,
//! `read`, `write`, `fsync`, `rename`, `unlink`, `rmdir`, `close`,
//! `_exit`) and computes CRCs in that buffer. It never returns into the
//! caller's stack (it ends in `_exit`), never touches stdout, stderr or any
//! logging, and any failure simply ends it with the staged files where
//! they are: the next session's reclaimer finishes the job
//! ([`crate::store::recover::reclaim_abandoned_in_background`]).
//!
//! Re-executing the program instead would need the host's `main` to
//! recognise a mover invocation; `posix_spawn` of a helper binary would
//! need one installed. `fork` needs neither.
//!
//! Before its first move the child
//!
//! * closes every descriptor but the staging lock — above all the SPICE
//!   connections, whose servers must see them close when ryll exits — and
//!   points 0, 1 and 2 at `/dev/null`;
//! * starts a session of its own (`setsid`), so the terminal's Ctrl-C and
//!   hang-up do not reach it, and restores the default action of the
//!   signals a host commonly catches;
//! * lowers its CPU and I/O priority.
//!
//! It keeps the staging lock the parent held (an inherited descriptor of
//! the same open file, hence the same `flock`), so no reclaimer moves the
//! same segments at the same time, and a crashed mover is told by the lock
//! coming free.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::store::format::{self, MAX_SEGMENT_BYTES};

/// Everything the mover child needs, prepared by the parent.
pub(crate) struct MovePlan {
    jobs: Vec<SegmentPaths>,
    buf: Vec<u8>,
    manifest: CString,
    manifest_tmp: CString,
    manifest_bytes: Vec<u8>,
    capture_dir: CString,
    staging_subdirs: Vec<CString>,
    owner_file: CString,
    lock_file: CString,
    staging_dir: CString,
    dev_null: CString,
}

fn cstr(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

impl MovePlan {
    /// Plans the move of every `<channel>/NNNNNNNN.seg` in `staging_dir`
    /// into `capture_spool/<channel>/`, then the final manifest. The
    /// channel directories in the capture directory are made here, by the
    /// parent.
    pub(crate) fn new(
        staging_dir: &Path,
        capture_dir: &Path,
        capture_spool: &Path,
        manifest_bytes: Vec<u8>,
        segment_bytes: usize,
    ) -> std::io::Result<MovePlan> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL");
        let mut jobs = Vec::new();
        let mut staging_subdirs = Vec::new();
        for e in std::fs::read_dir(staging_dir)?.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if format::validate_channel_name(&name).is_err()
                || !e.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let src_dir = staging_dir.join(&name);
            let dst_dir = capture_spool.join(&name);
            let mut any = false;
            for f in std::fs::read_dir(&src_dir)?.flatten() {
                let fname = f.file_name();
                if fname
                    .to_str()
                    .and_then(format::parse_segment_file_name)
                    .is_none()
                {
                    continue;
                }
                jobs.push(SegmentPaths::new(&src_dir.join(&fname), &dst_dir).ok_or_else(bad)?);
                any = true;
            }
            if any {
                crate::store::fsutil::create_private_dir(&dst_dir, true)?;
            }
            staging_subdirs.push(cstr(&src_dir).ok_or_else(bad)?);
        }
        let manifest = capture_dir.join(crate::store::manifest::MANIFEST_FILE);
        let mut manifest_tmp = manifest.as_os_str().to_owned();
        manifest_tmp.push(".tmp");
        Ok(MovePlan {
            jobs,
            buf: vec![0; segment_bytes],
            manifest: cstr(&manifest).ok_or_else(bad)?,
            manifest_tmp: cstr(Path::new(&manifest_tmp)).ok_or_else(bad)?,
            manifest_bytes,
            capture_dir: cstr(capture_dir).ok_or_else(bad)?,
            staging_subdirs,
            owner_file: cstr(&staging_dir.join(crate::store::staging::OWNER_FILE))
                .ok_or_else(bad)?,
            lock_file: cstr(&staging_dir.join(crate::store::staging::LOCK_FILE)).ok_or_else(bad)?,
            staging_dir: cstr(staging_dir).ok_or_else(bad)?,
            dev_null: CString::from(c"/dev/null"),
        })
    }
}

/// Forks the mover. Returns its pid in the parent; the child never returns.
/// `keep_fd` is the staging lock, the one descriptor the child keeps.
///
/// The caller has stopped its own background threads, so no lock of this
/// crate is held; see the module documentation for why the child is safe
/// whatever the host's other threads hold.
pub(crate) fn spawn(mut plan: MovePlan, keep_fd: i32) -> std::io::Result<u32> {
    // SAFETY: fork has no memory-safety preconditions. In the child only
    // `run_child` runs, which makes system calls on data prepared before
    // the fork and ends in `_exit`, never returning into this stack.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let code = run_child(&mut plan, keep_fd);
        // SAFETY: _exit ends the child without running destructors or
        // atexit handlers, which belong to the parent's state.
        unsafe { libc::_exit(code) };
    }
    Ok(pid as u32)
}

/// The child's work; the exit code says how far it got.
fn run_child(plan: &mut MovePlan, keep_fd: i32) -> i32 {
    detach(keep_fd, &plan.dev_null);
    let MovePlan { jobs, buf, .. } = plan;
    for job in jobs.iter() {
        if move_segment(&job.src, &job.tmp, &job.dst, &job.dst_dir, buf).is_err() {
            return 1;
        }
    }
    if write_file_atomic(
        &plan.manifest_tmp,
        &plan.manifest,
        &plan.capture_dir,
        &plan.manifest_bytes,
    )
    .is_err()
    {
        return 2;
    }
    // SAFETY: plain syscalls on NUL-terminated paths we own.
    unsafe {
        for d in &plan.staging_subdirs {
            libc::rmdir(d.as_ptr());
        }
        libc::unlink(plan.owner_file.as_ptr());
        libc::unlink(plan.lock_file.as_ptr());
        libc::rmdir(plan.staging_dir.as_ptr());
    }
    0
}

/// Cuts the child loose from the parent's descriptors, terminal and
/// priority. Async-signal-safe calls only.
fn detach(keep_fd: i32, dev_null: &CStr) {
    // SAFETY: syscalls on descriptors and constants; no memory is shared
    // with other threads (there are none in the child).
    unsafe {
        let null = libc::open(dev_null.as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            if fd == null || fd == keep_fd {
                continue;
            }
            if null >= 0 {
                libc::dup2(null, fd);
            } else {
                // No /dev/null: closed is still better than the parent's
                // terminal or pipe.
                libc::close(fd);
            }
        }
        close_from_except(3, keep_fd, null);
        libc::setsid();
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGCHLD,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
    lower_io_priority();
}

/// Puts the calling thread's disk I/O in the best-effort class at its
/// lowest level: behind the host's own I/O, but never starved the way the
/// idle class can be. Failure leaves it as it was, which is harmless.
pub(crate) fn lower_io_priority() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    // SAFETY: a syscall on the calling thread (who 0) with constant
    // arguments; async-signal-safe, so the mover child may call it.
    unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            (IOPRIO_CLASS_BE << 13) | 7,
        );
    }
}

/// Closes every descriptor from `from` up, except `keep` and `also_keep`
/// (0, 1 and 2 are `/dev/null` by now, and `also_keep` is that
/// `/dev/null` if it landed above 2).
///
/// # Safety
/// Only for a process with one thread, whose descriptors no code still
/// uses.
unsafe fn close_from_except(from: i32, keep: i32, also_keep: i32) {
    let mut keeps = [keep, if also_keep > 2 { also_keep } else { -1 }];
    keeps.sort_unstable();
    let mut lo = from as libc::c_uint;
    for k in keeps {
        if k < from {
            continue;
        }
        let k = k as libc::c_uint;
        if k > lo {
            // SAFETY: this function's own contract, passed on.
            unsafe { close_range(lo, k - 1) };
        }
        lo = k + 1;
    }
    // SAFETY: this function's own contract, passed on.
    unsafe { close_range(lo, libc::c_uint::MAX) };
}

/// `close_range(2)`, or a loop of `close` up to the descriptor limit where
/// the kernel lacks it (before Linux 5.9).
unsafe fn close_range(lo: libc::c_uint, hi: libc::c_uint) {
    // SAFETY: see `close_from_except`.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0 as libc::c_uint) };
    if rc == 0 {
        return;
    }
    let mut lim: libc::rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as libc::c_uint
    } else {
        1 << 16
    };
    for fd in lo..hi.min(max).saturating_add(1) {
        // SAFETY: see `close_from_except`.
        unsafe { libc::close(fd as i32) };
    }
}

/// The last OS error number.
fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A descriptor closed when dropped.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}

fn open(path: &CStr, flags: i32, mode: libc::mode_t) -> Result<Fd, i32> {
    // SAFETY: a NUL-terminated path; the flags never follow a symlink in
    // the last component.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(Fd(fd))
    }
}

fn fsync_dir(dir: &CStr) -> Result<(), i32> {
    let fd = open(dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    // SAFETY: fsync on a descriptor we own.
    if unsafe { libc::fsync(fd.0) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// Removes `path` unless it is absent; a directory is an error.
fn unlink_if_present(path: &CStr) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path; unlink never follows a symlink.
    if unsafe { libc::unlink(path.as_ptr()) } != 0 {
        let e = errno();
        if e != libc::ENOENT {
            return Err(e);
        }
    }
    Ok(())
}

/// Writes `bytes` to a new `tmp` (after removing a stale one), `fsync`,
/// renames it over `dst` and `fsync`s `dir`.
fn write_file_atomic(tmp: &CStr, dst: &CStr, dir: &CStr, bytes: &[u8]) -> Result<(), i32> {
    unlink_if_present(tmp)?;
    let result = (|| {
        let fd = open(tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)?;
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            // SAFETY: writes from a live slice of `rest.len()` bytes.
            let n =
                uninterrupted(|| unsafe { libc::write(fd.0, rest.as_ptr().cast(), rest.len()) })?;
            if n == 0 {
                return Err(libc::EIO);
            }
            at += n;
        }
        // SAFETY: fsync on a descriptor we own.
        if unsafe { libc::fsync(fd.0) } != 0 {
            return Err(errno());
        }
        drop(fd);
        // SAFETY: rename between two NUL-terminated paths.
        if unsafe { libc::rename(tmp.as_ptr(), dst.as_ptr()) } != 0 {
            return Err(errno());
        }
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = unlink_if_present(tmp);
    }
    result
}

/// One `read(2)` or `write(2)`, made again while a signal interrupts it:
/// the bytes it moved, or its `errno`.
fn uninterrupted(mut call: impl FnMut() -> isize) -> Result<usize, i32> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Moves one staged segment into the capture directory: reads it into
/// `buf` (at most `buf.len()` bytes), keeps the bytes in use
/// ([`used_len`]), fills in the record CRCs, writes it to `tmp`, syncs it,
/// renames it over `dst`, syncs `dst_dir`, and only then removes `src`.
/// A stale `tmp` (an interrupted earlier move) is replaced. Returns the
/// bytes written, or `Ok(None)` if `src` is already gone.
///
/// Makes system calls only and allocates nothing, so the mover child can
/// use it (see the module documentation); recovery uses it too.
pub(crate) fn move_segment(
    src: &CStr,
    tmp: &CStr,
    dst: &CStr,
    dst_dir: &CStr,
    buf: &mut [u8],
) -> Result<Option<u64>, i32> {
    // Without waiting: a FIFO planted in staging would block the open.
    let fd = match open(src, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // SAFETY: `stat` is plain data, for which all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor this function owns into a local.
    if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
        return Err(errno());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(libc::EINVAL);
    }
    let mut len = 0;
    while len < buf.len() {
        let rest = &mut buf[len..];
        // SAFETY: reads into a live slice of `rest.len()` bytes.
        let n =
            uninterrupted(|| unsafe { libc::read(fd.0, rest.as_mut_ptr().cast(), rest.len()) })?;
        if n == 0 {
            break;
        }
        len += n;
    }
    drop(fd);
    let data = &mut buf[..len];
    let used = used_len(data);
    // The writer left record CRCs at zero; a segment in the capture
    // directory carries them all. Up to the torn tail, if any: a record
    // whose tag is still zero was never committed and gets none.
    format::fill_checksums(&mut data[..used]);
    write_file_atomic(tmp, dst, dst_dir, &data[..used])?;
    // SAFETY: unlink of a NUL-terminated path.
    if unsafe { libc::unlink(src.as_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(Some(used as u64))
}

/// Bytes of a staged segment worth keeping: up to its header's
/// `written_to` (what follows is a reused segment's previous use); in a
/// segment without one, every record up to the first unwritten tag (a
/// record may end in zero bytes, so trailing zeroes alone do not tell),
/// and never less than up to the last non-zero byte.
pub(crate) fn used_len(data: &[u8]) -> usize {
    if let Some(written) = format::written_len(data) {
        return written;
    }
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

/// Paths of one segment move, for callers with [`Path`]s.
pub(crate) struct SegmentPaths {
    src: CString,
    tmp: CString,
    dst: CString,
    dst_dir: CString,
}

impl SegmentPaths {
    /// `src` to `dst_dir/<its file name>`; `None` if a path holds a NUL.
    pub(crate) fn new(src: &Path, dst_dir: &Path) -> Option<SegmentPaths> {
        let dst: PathBuf = dst_dir.join(src.file_name()?);
        let mut tmp = dst.as_os_str().to_owned();
        tmp.push(".tmp");
        Some(SegmentPaths {
            src: cstr(src)?,
            tmp: cstr(Path::new(&tmp))?,
            dst: cstr(&dst)?,
            dst_dir: cstr(dst_dir)?,
        })
    }

    /// [`move_segment`] on these paths.
    pub(crate) fn move_with(&self, buf: &mut [u8]) -> std::io::Result<Option<u64>> {
        move_segment(&self.src, &self.tmp, &self.dst, &self.dst_dir, buf)
            .map_err(std::io::Error::from_raw_os_error)
    }
}

/// A read buffer for one segment: its file's size, bounded by the largest
/// segment any reader accepts.
pub(crate) fn segment_buffer(src: &Path) -> std::io::Result<Vec<u8>> {
    let len = std::fs::symlink_metadata(src)?.len().min(MAX_SEGMENT_BYTES);
    Ok(vec![0; len as usize])
}
