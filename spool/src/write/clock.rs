//! The hot path's clock: `CLOCK_MONOTONIC` nanoseconds, read from the TSC.
//!
//! Every append stamps its record, so the clock read is part of the hot
//! path's cost. Through the vDSO, `clock_gettime(CLOCK_MONOTONIC)` costs
//! about half the budget of a whole append; reading the time-stamp counter
//! and scaling it costs a fraction of that (figures in `PERFORMANCE.md`).
//!
//! So where the kernel itself trusts the TSC (its clocksource is `tsc`, which
//! it only keeps when the counter is invariant and synchronised across CPUs),
//! [`Clock::now_ns`] computes `ns_ref + (tsc - tsc_ref) * mult` from
//! parameters that the spool's background thread keeps fitted to
//! `CLOCK_MONOTONIC` ([`Clock::recalibrate`], every
//! [`RECALIBRATE_EVERY`]): each fit measures the error against the kernel's
//! clock and slews it away over the next period, without a jump, so
//! readings never go backwards and stay within a few microseconds of
//! `CLOCK_MONOTONIC` (the `clock` tests check 100 µs). Should the error
//! ever exceed [`WATCHDOG_NS`] (a migrated VM, a TSC the kernel was wrong
//! about), the clock falls back to `clock_gettime` for good. Elsewhere
//! (another clocksource, another architecture) it is `clock_gettime` from
//! the start.
//!
//! The parameters are published in two alternating sets (a "latch"): a
//! recalibration writes the set readers are not using, then flips a
//! generation counter. The hot path does plain loads and never waits for
//! the background thread — with a single sequence lock it would spin for as
//! long as that niced thread stayed preempted halfway through an update.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

/// How often the background thread refits the TSC to `CLOCK_MONOTONIC`.
pub const RECALIBRATE_EVERY: Duration = Duration::from_millis(250);

/// An error against `CLOCK_MONOTONIC` beyond this turns the TSC off.
pub const WATCHDOG_NS: i64 = 1_000_000;

/// Fixed-point shift of `mult` (nanoseconds per tick, 32.32).
const SHIFT: u32 = 32;

/// The first fit waits this long between two readings of both clocks.
const FIRST_FIT: Duration = Duration::from_millis(2);

/// The error of each fit is slewed away over this many nanoseconds.
const SLEW_NS: u64 = 250_000_000;

/// `CLOCK_MONOTONIC` in nanoseconds, from the kernel.
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tsc() -> u64 {
    0
}

/// Whether the kernel keeps time with the TSC (so it found the counter
/// invariant and synchronised across CPUs).
fn kernel_trusts_tsc() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|s| s.trim() == "tsc")
}

/// One simultaneous reading of both clocks.
#[derive(Debug, Clone, Copy)]
struct Pair {
    tsc: u64,
    ns: u64,
}

/// Reads both clocks, keeping the tightest of a few tries (a try that was
/// preempted between its TSC readings is worthless).
fn pair() -> Pair {
    let mut best = (u64::MAX, Pair { tsc: 0, ns: 0 });
    for _ in 0..5 {
        let a = tsc();
        let ns = monotonic_ns();
        let b = tsc();
        let width = b.wrapping_sub(a);
        if width < best.0 {
            best = (
                width,
                Pair {
                    tsc: a + width / 2,
                    ns,
                },
            );
        }
    }
    best.1
}

/// `(ns << SHIFT) / ticks`, the 32.32 rate between two pairs.
fn rate(from: Pair, to: Pair) -> Option<u64> {
    let ticks = to.tsc.checked_sub(from.tsc)?;
    let ns = to.ns.checked_sub(from.ns)?;
    if ticks == 0 || ns == 0 {
        return None;
    }
    u64::try_from((u128::from(ns) << SHIFT) / u128::from(ticks)).ok()
}

/// `CLOCK_MONOTONIC ≈ ns_ref + (tsc - tsc_ref) * mult >> SHIFT`.
#[derive(Debug, Default)]
struct Params {
    tsc_ref: AtomicU64,
    ns_ref: AtomicU64,
    mult: AtomicU64,
}

/// One consistent read of a parameter set, with the counter.
#[derive(Debug, Clone, Copy)]
struct Reading {
    tsc_ref: u64,
    ns_ref: u64,
    mult: u64,
    /// The counter, read with the parameters.
    tsc: u64,
}

impl Reading {
    /// `CLOCK_MONOTONIC` at counter value `tsc`, by these parameters.
    #[inline(always)]
    fn ns_at(&self, tsc: u64) -> u64 {
        let ticks = tsc.saturating_sub(self.tsc_ref);
        self.ns_ref + ((u128::from(ticks) * u128::from(self.mult)) >> SHIFT) as u64
    }
}

/// A monotonic nanosecond clock, cheap to read from any thread.
///
/// Everything a reading needs (the state word, both parameter sets and the
/// origin) fills exactly one cache line, so a cold reading, as the first
/// append after a quiet spell makes, waits for one miss instead of three.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Clock {
    /// Generation, bumped after each update (`sets[generation % 2]` is the
    /// current set), with [`KERNEL`] set while readings come from
    /// `clock_gettime` instead of the TSC.
    state: AtomicU64,
    sets: [Params; 2],
    /// The reading taken when the clock was made: [`Clock::elapsed_ns`]
    /// counts from here.
    origin_ns: u64,
    /// The pair the long-run rate is measured from (recalibration only).
    anchor: std::sync::Mutex<Option<Pair>>,
}

/// The bit of [`Clock::state`] that says "use `clock_gettime`". Set from
/// the start where the TSC is not trusted, and for good by the watchdog.
const KERNEL: u64 = 1 << 63;

impl Clock {
    /// A clock on the TSC if the kernel trusts it, else on `clock_gettime`.
    /// Fitting the TSC takes about 2 ms.
    pub fn new() -> Clock {
        Clock::with_tsc(kernel_trusts_tsc())
    }

    /// A clock that never reads the TSC.
    pub fn kernel() -> Clock {
        Clock::with_tsc(false)
    }

    fn with_tsc(want: bool) -> Clock {
        let mut clock = Clock {
            state: AtomicU64::new(KERNEL),
            sets: Default::default(),
            origin_ns: 0,
            anchor: std::sync::Mutex::new(None),
        };
        if want {
            let a = pair();
            std::thread::sleep(FIRST_FIT);
            let b = pair();
            if let Some(mult) = rate(a, b) {
                clock.publish(b.tsc, b.ns, mult);
                *clock.anchor.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
                clock.state.fetch_and(!KERNEL, Ordering::Release);
            }
        }
        clock.origin_ns = clock.now_ns();
        clock
    }

    /// Whether readings come from the TSC.
    pub fn uses_tsc(&self) -> bool {
        self.state.load(Ordering::Relaxed) & KERNEL == 0
    }

    /// Now, in `CLOCK_MONOTONIC` nanoseconds.
    #[inline(always)]
    pub fn now_ns(&self) -> u64 {
        match self.reading() {
            Some(r) => r.ns_at(r.tsc),
            None => monotonic_ns(),
        }
    }

    /// The `CLOCK_MONOTONIC` reading taken when the clock was made.
    pub fn origin_ns(&self) -> u64 {
        self.origin_ns
    }

    /// Nanoseconds since [`Clock::origin_ns`].
    #[inline(always)]
    pub fn elapsed_ns(&self) -> u64 {
        self.now_ns().saturating_sub(self.origin_ns)
    }

    /// The current parameters and the counter, read together, or `None` if
    /// the clock is on `clock_gettime`. The counter is read between the two
    /// loads of the generation, as the kernel's vDSO reads it inside its
    /// sequence lock, so a reading never pairs a counter value from after a
    /// recalibration with the parameters from before it.
    #[inline(always)]
    fn reading(&self) -> Option<Reading> {
        loop {
            let g = self.state.load(Ordering::Acquire);
            if g & KERNEL != 0 {
                return None;
            }
            let p = &self.sets[(g & 1) as usize];
            let r = Reading {
                tsc_ref: p.tsc_ref.load(Ordering::Relaxed),
                ns_ref: p.ns_ref.load(Ordering::Relaxed),
                mult: p.mult.load(Ordering::Relaxed),
                tsc: tsc(),
            };
            fence(Ordering::Acquire);
            // Unchanged: the set was not rewritten under us (that takes two
            // updates, 250 ms apart). Changed: the new set is complete, read
            // it instead — this never waits for the writer.
            if self.state.load(Ordering::Relaxed) == g {
                return Some(r);
            }
        }
    }

    /// Writes new parameters into the set not in use, then makes it
    /// current. Only one thread calls this at a time (the constructor, then
    /// the background thread under `anchor`'s lock).
    fn publish(&self, tsc_ref: u64, ns_ref: u64, mult: u64) {
        let g = self.state.load(Ordering::Relaxed);
        let p = &self.sets[((g + 1) & 1) as usize];
        p.tsc_ref.store(tsc_ref, Ordering::Relaxed);
        p.ns_ref.store(ns_ref, Ordering::Relaxed);
        p.mult.store(mult, Ordering::Relaxed);
        // The generation sits in the low bits; `KERNEL` is kept as it was.
        self.state.store(g + 1, Ordering::Release);
    }

    /// Refits the TSC to `CLOCK_MONOTONIC`: the rate over the whole run so
    /// far, plus a correction that slews the current error away over the next
    /// quarter second (readings stay continuous and never go back). Returns the
    /// error it found, in nanoseconds (positive: the TSC clock was behind),
    /// or `None` if the clock does not use the TSC (any more).
    pub fn recalibrate(&self) -> Option<i64> {
        if !self.uses_tsc() {
            return None;
        }
        let mut anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let from = (*anchor)?;
        let now = pair();
        let ours = self.reading()?.ns_at(now.tsc);
        let error = now.ns as i64 - ours as i64;
        let Some(base) = rate(from, now) else {
            return Some(error);
        };
        if error.abs() > WATCHDOG_NS {
            self.state.fetch_or(KERNEL, Ordering::Release);
            *anchor = None;
            return Some(error);
        }
        // Ticks in the slew period, at the base rate.
        let slew_ticks = ((u128::from(SLEW_NS) << SHIFT) / u128::from(base.max(1))).max(1);
        let correction = (i128::from(error) << SHIFT) / slew_ticks as i128;
        let limit = i128::from(base / 10);
        let adjusted = i128::from(base) + correction.clamp(-limit, limit);
        // The new rate takes over from this instant, where old and new
        // agree: no jump, whatever time passed since `now` was read.
        let r = self.reading()?;
        self.publish(r.tsc, r.ns_at(r.tsc), adjusted as u64);
        Some(error)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// Wall-clock nanoseconds since the Unix epoch (0 before it): when a
/// session started or closed. Records are stamped with [`Clock`] instead.
pub(crate) fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_clock_follows_clock_monotonic() {
        let c = Clock::kernel();
        assert!(!c.uses_tsc());
        let a = monotonic_ns();
        let t = c.now_ns();
        let b = monotonic_ns();
        assert!(a <= t && t <= b);
        assert_eq!(c.recalibrate(), None);
    }

    /// Readings never go back on one thread, across recalibrations, and
    /// stay close to the kernel's clock.
    #[test]
    fn tsc_clock_is_monotonic_and_close() {
        let c = Clock::new();
        if !c.uses_tsc() {
            // Not an x86 machine whose kernel keeps time with the TSC:
            // nothing more to check here than the test above.
            return;
        }
        let mut last = c.now_ns();
        let mut worst = 0i64;
        let start = std::time::Instant::now();
        let mut next_fit = start;
        while start.elapsed() < Duration::from_millis(1500) {
            for _ in 0..10_000 {
                let t = c.now_ns();
                assert!(t >= last, "clock went back from {last} to {t}");
                last = t;
            }
            let kernel = monotonic_ns() as i64;
            worst = worst.max((kernel - c.now_ns() as i64).abs());
            if std::time::Instant::now() >= next_fit {
                let e = c.recalibrate();
                assert!(e.is_some(), "the watchdog turned the TSC off: {e:?}");
                next_fit += Duration::from_millis(50);
            }
        }
        assert!(worst < 100_000, "{worst} ns away from CLOCK_MONOTONIC");
    }

    #[test]
    fn readings_from_many_threads_are_close_to_the_kernel() {
        let c = Clock::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100_000 {
                        let a = monotonic_ns() as i64;
                        let t = c.now_ns() as i64;
                        let b = monotonic_ns() as i64;
                        assert!(t > a - 100_000 && t < b + 100_000, "{a} {t} {b}");
                    }
                });
            }
            for _ in 0..10 {
                c.recalibrate();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }

    #[test]
    fn the_watchdog_falls_back_to_the_kernel() {
        let c = Clock::new();
        if !c.uses_tsc() {
            return;
        }
        // Pretend the TSC ran 10 ms ahead.
        let r = c.reading().expect("on the TSC");
        c.publish(r.tsc_ref, r.ns_ref + 10_000_000, r.mult);
        let e = c.recalibrate().expect("was on the TSC");
        assert!(e < -WATCHDOG_NS, "error {e}");
        assert!(!c.uses_tsc());
        let a = monotonic_ns();
        assert!(c.now_ns() >= a);
    }

    #[test]
    fn a_reading_needs_one_cache_line() {
        assert_eq!(std::mem::offset_of!(Clock, anchor), 64);
        assert_eq!(std::mem::align_of::<Clock>(), 64);
    }

    #[test]
    fn elapsed_counts_from_the_origin() {
        for c in [Clock::new(), Clock::kernel()] {
            std::thread::sleep(Duration::from_millis(1));
            let a = monotonic_ns() - c.origin_ns();
            let e = c.elapsed_ns();
            let b = monotonic_ns() - c.origin_ns();
            assert!(
                a >= 1_000_000,
                "origin {} is not in the past",
                c.origin_ns()
            );
            // Within the 100 µs the TSC clock keeps to.
            assert!(e + 100_000 >= a && e <= b + 100_000, "{a} {e} {b}");
        }
    }
}
