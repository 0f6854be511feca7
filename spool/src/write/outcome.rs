//! What a close reports: [`CloseOutcome`], [`CloseProgress`] while it
//! waits, and the [`MoverHandle`] of a mover process it started.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a close did.
#[derive(Debug, Clone)]
pub struct CloseOutcome {
    /// Bytes of segments moved into the capture directory during the
    /// session and its close.
    pub bytes_moved: u64,
    /// Bytes of segment files left staged in memory for the mover (as
    /// allocated; the mover writes only the part in use).
    pub bytes_left_staged: u64,
    /// The mover process, if segments were left staged.
    pub mover: Option<MoverHandle>,
}

/// A snapshot of a close in progress, for [`Spool::close_within_progress`](crate::Spool::close_within_progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseProgress {
    /// Bytes moved into the capture directory since the wait began.
    pub moved_bytes: u64,
    /// Bytes of segments still staged (as allocated).
    pub staged_bytes: u64,
    /// Bytes of segments staged when the wait began.
    pub staged_at_start: u64,
}

/// The detached mover process of a close. A thread of this process reaps
/// it when it exits, so it never lingers as a zombie.
#[derive(Debug, Clone)]
pub struct MoverHandle {
    pid: u32,
    exit: Arc<(Mutex<Option<Option<i32>>>, std::sync::Condvar)>,
}

impl MoverHandle {
    pub(crate) fn reap(pid: u32) -> MoverHandle {
        let exit = Arc::new((Mutex::new(None), std::sync::Condvar::new()));
        let e = Arc::clone(&exit);
        let reaper = std::thread::Builder::new()
            .name("spool-mover-reap".into())
            .spawn(move || {
                let mut status = 0;
                let code = loop {
                    // SAFETY: waitpid on our own child, into a local.
                    let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                    if rc == pid as libc::pid_t {
                        break libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
                    }
                    if rc < 0
                        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                    {
                        continue;
                    }
                    // Reaped by someone else (SIGCHLD ignored…): unknown.
                    break None;
                };
                *e.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(code);
                e.1.notify_all();
            });
        if reaper.is_err() {
            // Unreaped, it lingers as a zombie until this process exits.
            *exit.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(None);
        }
        MoverHandle { pid, exit }
    }

    /// The mover's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits up to `timeout` for the mover to exit. `None` if it is still
    /// running; `Some(true)` if it moved everything, `Some(false)` if it
    /// failed (or its exit could not be observed), in which case the next
    /// session reclaims what is left.
    pub fn wait(&self, timeout: Duration) -> Option<bool> {
        let (lock, cv) = &*self.exit;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        guard.map(|code| code == Some(0))
    }
}
