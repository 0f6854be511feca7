//! Per-call cost of capturing a chunk: the spool against what it replaces.
//!
//! ```text
//! cargo bench -p e2e --bench append -- [table|local|slow|all|profile|cold|evict] [quick]
//! ```
//!
//! * `table`: unpaced bursts of 64 B, 1 KiB, 64 KiB and 256 KiB appends into
//!   (1) a memcpy into a pre-touched buffer (the limit), (2) ryll ≤ 0.2's
//!   inline pcap writer, (3) ryll 0.3.0's queue + writer thread, (4) the
//!   spool (staging in its default memory-backed root), (5) the same with
//!   every record CRC left to the retirer (`checksum_at_append` off).
//!   Latency percentiles per call, throughput and drops.
//! * `local`: 1 KiB appends paced at 150 MB/s for 20 s, capture directory on
//!   the local disk.
//! * `slow`: 512 B appends paced at 0.5 MB/s for 40 s, capture directory on
//!   the slow FUSE disk of `scripts/slowfs.py` (mount it with
//!   `scripts/slowfs-mount.sh DIR` and set `SLOWFS_DIR=DIR`; skipped if
//!   unset), plus the spool mapping its segments in the capture directory.
//! * `quick` divides every count and duration by 10.
//! * `profile` (not part of `all`): only spool appends of 64 B and 1 KiB,
//!   untimed, for about 10 s, to look at the hot path with `perf record`.
//! * `cold` (not part of `all`): 512 B spool appends 1 ms apart after
//!   different warm-ups, to see what an isolated append pays for cold
//!   caches (code versus data).
//! * `evict` (not part of `all`): 512 B appends and memcpys, each after
//!   reading 4 MiB to push the caller's code and data out of the core's
//!   private caches, plus the append's parts (the clock read; an append
//!   through a handle with a fixed timestamp). Steadier from run to run than
//!   `cold`, so it is the mode for comparing two builds of the hot path.
//!
//! Each call is timed alone with `Instant` (the timer's own cost, measured
//! at start, is subtracted); samples go into a pre-allocated, pre-touched
//! `Vec<u32>`, sorted afterwards, so nothing is allocated in the timed
//! region. Without `--bench` (as `cargo test --benches` runs it) it only
//! does a smoke run of a few calls per design.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ryll_tools::baseline::{InlinePcap, RyllThreads};
use spool::{Direction, Spool, SpoolConfig, StagingChoice};

const CHANNEL: &str = "display";
const DIR: Direction = Direction::ServerToClient;

// ── Targets ─────────────────────────────────────────────

const TARGET_P50_NS: u32 = 50;
const TARGET_P999_NS: u32 = 1_000;
const TARGET_MAX_NS: u32 = 1_000_000;
const TARGET_MEMCPY_FRACTION: f64 = 0.5;

// ── Measurement ─────────────────────────────────────────

/// Per-call latencies (ns) of one run, and what came of the calls.
struct Run {
    samples: Vec<u32>,
    /// Per call: was the chunk dropped?
    dropped: Vec<bool>,
    size: usize,
    drops: u64,
    /// Wall time of the whole run (pacing included).
    wall: Duration,
}

impl Run {
    fn sorted(mut self) -> Stats {
        let kept_ns: u64 = self
            .samples
            .iter()
            .zip(&self.dropped)
            .filter(|(_, &d)| !d)
            .map(|(&s, _)| s as u64)
            .sum();
        self.samples.sort_unstable();
        let n = self.samples.len();
        let pct = |p: f64| -> u32 {
            if n == 0 {
                return 0;
            }
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            self.samples[i]
        };
        let accepted = n as u64 - self.drops;
        Stats {
            calls: n as u64,
            p50: pct(0.50),
            p99: pct(0.99),
            p999: pct(0.999),
            max: self.samples.last().copied().unwrap_or(0),
            over_1ms: self.samples.iter().filter(|&&s| s > 1_000_000).count() as u64,
            // Bytes per ns spent inside calls = GB/s; ×1000 = MB/s.
            kept_mb_s: (accepted * self.size as u64) as f64 / kept_ns.max(1) as f64 * 1e3,
            wall_mb_s: (accepted * self.size as u64) as f64 / self.wall.as_secs_f64() / 1e6,
            drops: self.drops,
        }
    }
}

struct Stats {
    calls: u64,
    p50: u32,
    p99: u32,
    p999: u32,
    max: u32,
    over_1ms: u64,
    /// Bytes kept per second of time spent inside the calls that kept them.
    kept_mb_s: f64,
    /// Bytes accepted per second of wall time.
    wall_mb_s: f64,
    drops: u64,
}

/// The cost of `Instant::now()` twice, as seen between two calls: the
/// median of many back-to-back pairs.
fn timer_overhead() -> u32 {
    let mut v: Vec<u32> = (0..200_000)
        .map(|_| {
            let a = Instant::now();
            let b = Instant::now();
            (b - a).as_nanos() as u32
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// How calls are spaced.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back.
    Burst,
    /// At this many bytes per second (calls of the run's size).
    Rate(f64),
}

/// Times `calls` calls of `f(data)` (after `warmup` untimed ones).
fn measure(
    calls: usize,
    warmup: usize,
    data: &[u8],
    pace: Pace,
    overhead: u32,
    mut f: impl FnMut(&[u8]) -> bool,
) -> Run {
    for _ in 0..warmup {
        std::hint::black_box(f(data));
    }
    // Pre-touched, so pushing a sample never faults or allocates.
    let mut samples = vec![u32::MAX; calls];
    let mut dropped = vec![false; calls];
    let mut drops = 0u64;
    let interval_ns = match pace {
        Pace::Burst => 0.0,
        Pace::Rate(r) => data.len() as f64 / r * 1e9,
    };
    let start = Instant::now();
    for (i, (slot, lost)) in samples.iter_mut().zip(dropped.iter_mut()).enumerate() {
        if interval_ns > 0.0 {
            let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
            // Busy-wait, so the core stays awake and its caches warm; a
            // sleep between calls adds wake-up and cold-cache cost to
            // every design alike.
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        let t0 = Instant::now();
        let ok = f(data);
        let t1 = Instant::now();
        *slot = ((t1 - t0).as_nanos() as u64)
            .saturating_sub(overhead as u64)
            .min(u32::MAX as u64) as u32;
        *lost = !ok;
        drops += u64::from(!ok);
    }
    let wall = start.elapsed();
    Run {
        samples,
        dropped,
        size: data.len(),
        drops,
        wall,
    }
}

// ── Designs ─────────────────────────────────────────────

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Design {
    Memcpy,
    InlinePcap,
    RyllThreads,
    Spool,
    /// The spool mapping its segments in the capture directory.
    SpoolDirect,
    /// The spool with every record CRC left to the retirer (as before the
    /// hot path stored those of large records).
    SpoolCrcByRetirer,
}

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Memcpy => "memcpy (limit)",
            Design::InlinePcap => "inline pcap (ryll<=0.2)",
            Design::RyllThreads => "ryll-threads (0.3.0)",
            Design::Spool => "spool (tmpfs staging)",
            Design::SpoolDirect => "spool (mmap in capture dir)",
            Design::SpoolCrcByRetirer => "spool, CRCs by the retirer",
        }
    }
}

/// Where designs write: a fresh directory per run under `base`, removed
/// afterwards.
struct Place {
    base: PathBuf,
    label: &'static str,
}

const MEMCPY_BUFFER: usize = 256 << 20;

fn spool_config(dir: &Path, design: Design) -> SpoolConfig {
    let staging = if design == Design::SpoolDirect {
        StagingChoice::CaptureDir
    } else {
        StagingChoice::Auto
    };
    SpoolConfig::new(dir)
        .staging(staging)
        .checksum_at_append(design != Design::SpoolCrcByRetirer)
        .segment_bytes(16 << 20)
        .ready_ahead(4)
        .staging_budget(512 << 20)
        .channels(&[CHANNEL])
}

/// Runs one design over one workload in a fresh capture directory.
fn run_design(
    design: Design,
    place: &Place,
    calls: usize,
    data: &[u8],
    pace: Pace,
    overhead: u32,
) -> Run {
    let warmup = (calls / 100).min(1_000);
    let tmp = tempfile::Builder::new()
        .prefix("append-bench-")
        .tempdir_in(&place.base)
        .expect("temporary capture directory");
    let dir = tmp.path().join("capture");
    let run = match design {
        Design::Memcpy => {
            let mut buf = vec![1u8; MEMCPY_BUFFER];
            let mut off = 0usize;
            measure(calls, warmup, data, pace, overhead, |d| {
                if off + d.len() > buf.len() {
                    off = 0;
                }
                buf[off..off + d.len()].copy_from_slice(d);
                off += d.len();
                std::hint::black_box(&mut buf);
                true
            })
        }
        Design::InlinePcap => {
            let sink = InlinePcap::create(&dir).expect("inline pcap");
            let r = measure(calls, warmup, data, pace, overhead, |d| {
                sink.append(CHANNEL, DIR, d)
            });
            sink.close();
            r
        }
        Design::RyllThreads => {
            let sink = RyllThreads::create(&dir).expect("ryll threads");
            let r = measure(calls, warmup, data, pace, overhead, |d| {
                sink.append(CHANNEL, DIR, d)
            });
            sink.close();
            if sink.write_errors() > 0 {
                eprintln!("  ryll-threads: {} write errors", sink.write_errors());
            }
            r
        }
        Design::Spool | Design::SpoolDirect | Design::SpoolCrcByRetirer => {
            let spool = Spool::create(spool_config(&dir, design)).expect("spool");
            let r = measure(calls, warmup, data, pace, overhead, |d| {
                spool.append(CHANNEL, DIR, d)
            });
            let counters = spool.counters(CHANNEL).unwrap_or_default();
            if let Err(e) = spool.close() {
                eprintln!("  spool close: {e}");
            }
            if counters.dropped_records != r.drops {
                eprintln!(
                    "  spool counted {} drops, the bench {} (warm-up included in the former)",
                    counters.dropped_records, r.drops
                );
            }
            r
        }
    };
    drop(tmp);
    // Discard what the run left dirty, so the next run starts clean.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    run
}

// ── Output ──────────────────────────────────────────────

fn ns(v: u32) -> String {
    match v {
        0..=9_999 => format!("{v} ns"),
        10_000..=9_999_999 => format!("{:.1} us", v as f64 / 1e3),
        _ => format!("{:.1} ms", v as f64 / 1e6),
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size & 1023 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn print_header(wall: bool) {
    println!(
        "| {:<27} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>9} | {:>9} | {:>6} |",
        "design",
        "payload",
        "calls",
        "p50",
        "p99",
        "p99.9",
        "max",
        if wall { "MB/s wall" } else { "MB/s kept" },
        "drops",
        ">1ms"
    );
    println!(
        "|{:-<29}|{:->9}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:->11}|{:->11}|{:->8}|",
        "", "", "", "", "", "", "", "", "", ""
    );
}

fn print_row(design: Design, size: usize, s: &Stats, wall: bool) {
    println!(
        "| {:<27} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>9.1} | {:>9} | {:>6} |",
        design.name(),
        size_label(size),
        s.calls,
        ns(s.p50),
        ns(s.p99),
        ns(s.p999),
        ns(s.max),
        if wall { s.wall_mb_s } else { s.kept_mb_s },
        s.drops,
        s.over_1ms
    );
}

/// The spool's three latency targets against one run, met or missed.
fn latency_verdicts(s: &Stats) -> String {
    format!(
        "p50 {} <= {} ns: {}; p99.9 {} <= 1 us: {}; max {} <= 1 ms: {}",
        ns(s.p50),
        TARGET_P50_NS,
        verdict(s.p50 <= TARGET_P50_NS),
        ns(s.p999),
        verdict(s.p999 <= TARGET_P999_NS),
        ns(s.max),
        verdict(s.max <= TARGET_MAX_NS),
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

// ── The runs ────────────────────────────────────────────

struct Ctx {
    overhead: u32,
    scale: usize,
    local: Place,
    data: Vec<u8>,
}

impl Ctx {
    fn payload(&self, size: usize) -> &[u8] {
        &self.data[..size]
    }
}

fn table(ctx: &Ctx) {
    const SIZES: [usize; 4] = [64, 1 << 10, 64 << 10, 256 << 10];
    const DESIGNS: [Design; 5] = [
        Design::Memcpy,
        Design::InlinePcap,
        Design::RyllThreads,
        Design::Spool,
        Design::SpoolCrcByRetirer,
    ];
    println!(
        "\n## Unpaced bursts, capture directory on {} (fresh per cell)\n",
        ctx.local.label
    );
    print_header(false);
    let mut results: Vec<(Design, usize, Stats)> = Vec::new();
    for &size in &SIZES {
        // 200k calls, at most 1 GiB per cell.
        let calls = ((1usize << 30) / size).min(200_000) / ctx.scale;
        for &design in &DESIGNS {
            let s = run_design(
                design,
                &ctx.local,
                calls,
                ctx.payload(size),
                Pace::Burst,
                ctx.overhead,
            )
            .sorted();
            print_row(design, size, &s, false);
            results.push((design, size, s));
        }
    }
    let get = |d: Design, size: usize| {
        results
            .iter()
            .find(|(rd, rs, _)| *rd == d && *rs == size)
            .map(|(_, _, s)| s)
            .expect("every cell ran")
    };
    println!(
        "\nMB/s kept = payload bytes kept / time spent inside the appends that kept them. \
         Latencies are of all calls, drops included."
    );
    println!("Targets (spool):");
    for size in [64, 1 << 10] {
        let s = get(Design::Spool, size);
        println!("  {:>7}: {}", size_label(size), latency_verdicts(s));
    }
    for size in [64 << 10, 256 << 10] {
        let s = get(Design::Spool, size);
        let m = get(Design::Memcpy, size);
        let frac = s.kept_mb_s / m.kept_mb_s;
        println!(
            "  {:>7}: {:.0} MB/s = {:.0} % of memcpy's {:.0} MB/s (>= {:.0} %): {}; drops {}",
            size_label(size),
            s.kept_mb_s,
            frac * 100.0,
            m.kept_mb_s,
            TARGET_MEMCPY_FRACTION * 100.0,
            verdict(frac >= TARGET_MEMCPY_FRACTION),
            s.drops,
        );
    }
}

fn sustained(
    ctx: &Ctx,
    title: &str,
    place: &Place,
    size: usize,
    rate: f64,
    secs: f64,
    designs: &[Design],
) -> Vec<(Design, Stats)> {
    let secs = secs / ctx.scale as f64;
    let calls = (rate * secs / size as f64) as usize;
    println!(
        "\n## {title}: {} appends paced at {:.1} MB/s for {:.0} s ({} calls), capture directory on {}\n",
        size_label(size),
        rate / 1e6,
        secs,
        calls,
        place.label
    );
    print_header(true);
    let mut out = Vec::new();
    for &design in designs {
        let s = run_design(
            design,
            place,
            calls,
            ctx.payload(size),
            Pace::Rate(rate),
            ctx.overhead,
        )
        .sorted();
        print_row(design, size, &s, true);
        out.push((design, s));
    }
    println!("\nMB/s wall = payload bytes accepted / wall time of the run (pacing included).");
    out
}

fn local(ctx: &Ctx) {
    let designs = [
        Design::Memcpy,
        Design::InlinePcap,
        Design::RyllThreads,
        Design::Spool,
    ];
    let r = sustained(
        ctx,
        "Sustained, local disk",
        &ctx.local,
        1 << 10,
        150e6,
        20.0,
        &designs,
    );
    let s = &r.iter().find(|(d, _)| *d == Design::Spool).expect("ran").1;
    println!(
        "Targets (spool): drops {} == 0: {}; {}",
        s.drops,
        verdict(s.drops == 0),
        latency_verdicts(s)
    );
}

fn slow(ctx: &Ctx) {
    let Some(dir) = std::env::var_os("SLOWFS_DIR") else {
        println!(
            "\n## Sustained, slow disk: not run (SLOWFS_DIR is not set; mount one with \
             `scripts/slowfs-mount.sh DIR` and run with SLOWFS_DIR=DIR)"
        );
        return;
    };
    let place = Place {
        base: PathBuf::from(dir),
        label: "the slow FUSE disk (slowfs.py)",
    };
    let designs = [
        Design::Memcpy,
        Design::InlinePcap,
        Design::RyllThreads,
        Design::Spool,
        Design::SpoolDirect,
    ];
    let r = sustained(
        ctx,
        "Sustained, slow disk",
        &place,
        512,
        0.5e6,
        40.0,
        &designs,
    );
    for (d, s) in r
        .iter()
        .filter(|(d, _)| matches!(d, Design::Spool | Design::SpoolDirect))
    {
        println!(
            "Targets ({}): {}; drops {}",
            d.name(),
            latency_verdicts(s),
            s.drops
        );
    }
}

/// One row of the `cold` and `evict` tables: the mean of the calls below
/// p99, then p50, p90, p99 and p99.9. The timer counts in steps of about
/// 10 ns; the mean resolves smaller differences between two builds.
fn print_cold_row(label: &str, samples: &mut [u32]) {
    samples.sort_unstable();
    let at = |q: f64| ns(samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]);
    let body = &samples[..samples.len() * 99 / 100];
    let mean = body.iter().map(|&v| f64::from(v)).sum::<f64>() / body.len().max(1) as f64;
    println!(
        "| {label} | {mean:.1} ns | {} | {} | {} | {} |",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999)
    );
}

/// Why an isolated append costs more than one in a burst: 512 B appends one
/// millisecond apart (the slow-disk run's pace), each timed alone, after
/// different warm-ups — nothing, one append to another channel (warms the
/// code, not this channel's data), one append to the same channel (warms
/// everything). Capture directory on the local disk; staging in the
/// default memory-backed root.
fn cold(ctx: &Ctx) {
    let tmp = tempfile::tempdir_in(&ctx.local.base).expect("temporary directory");
    let config = SpoolConfig::new(tmp.path().join("capture"))
        .staging(StagingChoice::Auto)
        .segment_bytes(16 << 20)
        .channels(&[CHANNEL, "other"]);
    let spool = Spool::create(config).expect("spool");
    let data = ctx.payload(512);
    let calls = 3_000 / ctx.scale;
    println!("\n## Cold appends: 512 B, 1 ms apart, {calls} per warm-up\n");
    println!("| warm-up before each timed append | mean below p99 | p50 | p90 | p99 | p99.9 |");
    println!("|---|---|---|---|---|---|");
    for (label, warm) in [
        ("none", None),
        ("an append to another channel", Some("other")),
        ("an append to the same channel", Some(CHANNEL)),
    ] {
        let mut samples = vec![0u32; calls];
        let start = Instant::now();
        for (i, slot) in samples.iter_mut().enumerate() {
            let due = start + Duration::from_millis(i as u64);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            if let Some(ch) = warm {
                spool.append(ch, DIR, data);
            }
            let t0 = Instant::now();
            std::hint::black_box(spool.append(CHANNEL, DIR, data));
            let t1 = Instant::now();
            *slot = ((t1 - t0).as_nanos() as u64).saturating_sub(ctx.overhead as u64) as u32;
        }
        print_cold_row(label, &mut samples);
    }
    spool.close().expect("close");
}

/// Cold appends made repeatable: before each timed call, reads 4 MiB (four
/// times this machine's L2) to push the call's code and data out of the
/// core's private caches. The figures move far less from run to run than
/// the 1 ms-apart ones of `cold`, so it is the mode for comparing two
/// builds of the hot path.
fn evict(ctx: &Ctx) {
    let tmp = tempfile::tempdir_in(&ctx.local.base).expect("temporary directory");
    let config = SpoolConfig::new(tmp.path().join("capture"))
        .staging(StagingChoice::Auto)
        .segment_bytes(64 << 20)
        .channels(&[CHANNEL]);
    let spool = Spool::create(config).expect("spool");
    let data = ctx.payload(512);
    let calls = 20_000 / ctx.scale;
    let scratch = vec![1u8; 4 << 20];
    let mut target = vec![1u8; 64 << 20];
    let mut off = 0;
    println!("\n## Evicted appends: 512 B, {calls} calls, 4 MiB read before each\n");
    println!("| design | mean below p99 | p50 | p90 | p99 | p99.9 |");
    println!("|---|---|---|---|---|---|");
    let run = |label: &str, f: &mut dyn FnMut() -> bool| {
        let mut samples = vec![0u32; calls];
        for slot in samples.iter_mut() {
            let mut sum = 0u8;
            for line in scratch.chunks(64) {
                sum = sum.wrapping_add(line[0]);
            }
            std::hint::black_box(sum);
            let t0 = Instant::now();
            std::hint::black_box(f());
            let t1 = Instant::now();
            *slot = ((t1 - t0).as_nanos() as u64).saturating_sub(ctx.overhead as u64) as u32;
        }
        print_cold_row(label, &mut samples);
    };
    run("memcpy", &mut || {
        if off + data.len() > target.len() {
            off = 0;
        }
        target[off..off + data.len()].copy_from_slice(data);
        off += data.len();
        true
    });
    run("spool.append", &mut || spool.append(CHANNEL, DIR, data));
    // Its parts: the clock read alone, and an append without the clock or
    // the lookup by name (a handle, a fixed timestamp).
    run("  clock only (now_ns)", &mut || spool.now_ns() > 0);
    let handle = spool.channel(CHANNEL).expect("channel handle");
    run("  handle.append_at", &mut || handle.append_at(DIR, 1, data));
    spool.close().expect("close");
}

/// Spool appends back to back, untimed, for a profiler: fresh spools of
/// 16 MiB of 64 B or 1 KiB records, so nothing is ever dropped.
fn profile(ctx: &Ctx) {
    let mut calls = 0u64;
    let mut append_time = Duration::ZERO;
    for round in 0..200 / ctx.scale {
        let size = if round % 2 == 0 { 64 } else { 1024 };
        let tmp = tempfile::tempdir_in(&ctx.local.base).expect("temporary directory");
        let spool =
            Spool::create(spool_config(&tmp.path().join("capture"), Design::Spool)).expect("spool");
        let data = ctx.payload(size);
        // Records are padded to 8 bytes behind a 24-byte header.
        let n = (15 << 20) / (size + 24);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(spool.append(CHANNEL, DIR, std::hint::black_box(data)));
        }
        append_time += t.elapsed();
        calls += n as u64;
        let k = spool.counters(CHANNEL).unwrap_or_default();
        assert_eq!(k.dropped_records, 0);
        spool.close().expect("close");
    }
    println!(
        "profile: {calls} spool appends, {:.1} ns each on average (no per-call timer)",
        append_time.as_nanos() as f64 / calls as f64
    );
}

/// A few calls of every design, to show the bench works (`cargo test`).
fn smoke(ctx: &Ctx) {
    for design in [
        Design::Memcpy,
        Design::InlinePcap,
        Design::RyllThreads,
        Design::Spool,
        Design::SpoolDirect,
    ] {
        let s = run_design(
            design,
            &ctx.local,
            100,
            ctx.payload(1024),
            Pace::Burst,
            ctx.overhead,
        )
        .sorted();
        assert_eq!(s.calls, 100);
        assert_eq!(s.drops, 0, "{design:?} dropped in a 100-call smoke run");
    }
    println!("append bench: smoke run passed (run `cargo bench -p e2e --bench append` to measure)");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let quick = words.contains(&"quick");
    let mode = words
        .iter()
        .copied()
        .find(|w| *w != "quick")
        .unwrap_or("all");
    if !["table", "local", "slow", "all", "profile", "cold", "evict"].contains(&mode) {
        eprintln!("usage: append [table|local|slow|all|profile|cold|evict] [quick]");
        std::process::exit(2);
    }

    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("append-bench");
    std::fs::create_dir_all(&base).expect("bench directory");
    let data: Vec<u8> = (0..256u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let ctx = Ctx {
        overhead: timer_overhead(),
        scale: if quick || !benching { 10 } else { 1 },
        local: Place {
            base: base.clone(),
            label: "the local disk (ext4)",
        },
        data,
    };
    if !benching {
        smoke(&ctx);
        return;
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "# append bench: {} CPUs ({cpu}); timer overhead {} ns per call (subtracted); local dir {}{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ctx.overhead,
        base.display(),
        if quick { "; QUICK (counts and durations / 10)" } else { "" }
    );
    if matches!(mode, "table" | "all") {
        table(&ctx);
    }
    if matches!(mode, "local" | "all") {
        local(&ctx);
    }
    if matches!(mode, "slow" | "all") {
        slow(&ctx);
    }
    if mode == "cold" {
        cold(&ctx);
    }
    if mode == "evict" {
        evict(&ctx);
    }
    if mode == "profile" {
        profile(&ctx);
    }
}
