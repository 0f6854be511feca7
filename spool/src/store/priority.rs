//! Thread priorities of the spool's background work.

/// Lowers the calling thread's CPU priority. The background threads do bulk
/// work that can wait a little; on a machine with few cores they must not
/// preempt the channel loops they serve, which at the default priority they
/// do for milliseconds at a time (see `PERFORMANCE.md`).
pub(crate) fn lower_priority(nice: i32) {
    // SAFETY: plain syscalls on the calling thread; failure leaves the
    // priority as it was, which is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// Niceness of the thread reclaiming crashed sessions' staging: below
/// everything of the live session.
pub(crate) const RECLAIM_NICE: i32 = 15;
