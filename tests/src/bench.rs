//! Shared by the `convert`, `replay` and `bundle` benches: command-line
//! words, machine facts, a SPICE-like test capture (generated with the real
//! spool writer and cached under `target/`), and small statistics helpers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ryll_hook::metadata::ryll_metadata;
use ryll_hook::SpoolSink;
use spool::{Direction, SpoolConfig, StagingChoice};

// ── Command line ────────────────────────────────────────

/// What the bench was asked to do.
pub struct Args {
    /// `--bench` was given (`cargo bench`); without it (`cargo test
    /// --benches`) a bench only does a smoke run.
    pub benching: bool,
    /// `quick`: smaller data, one round.
    pub quick: bool,
    /// The other words (not starting with `-`).
    pub words: Vec<String>,
}

impl Args {
    pub fn parse() -> Args {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let benching = args.iter().any(|a| a == "--bench");
        let words: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
        Args {
            benching,
            quick: words.iter().any(|w| w == "quick"),
            words,
        }
    }

    pub fn has(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }

    /// The value of a `name=VALUE` word.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.words
            .iter()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    }

    /// A numeric `name=N` word, else `full`, or `quick` in quick mode.
    pub fn number<T: std::str::FromStr>(&self, name: &str, full: T, quick: T) -> T {
        self.value(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(if self.quick { quick } else { full })
    }
}

/// Where the benches keep their data: `target/tmp/<name>` (cargo's
/// `CARGO_TARGET_TMPDIR`, which only bench and test targets see at build
/// time, found from the running bench: `target/<profile>/deps/<bench>`).
pub fn bench_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("bench executable under target/<profile>/deps");
    let d = target.join("tmp").join(name);
    std::fs::create_dir_all(&d).expect("bench directory");
    d
}

// ── Machine facts ───────────────────────────────────────

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// `ext4 (/dev/vda)`: the type and source of the filesystem holding `path`.
pub fn filesystem_of(path: &Path) -> String {
    let p = path.to_string_lossy();
    first_line("findmnt", &["-n", "-o", "FSTYPE,SOURCE", "--target", &p])
        .map(|l| {
            let mut it = l.split_whitespace();
            let ty = it.next().unwrap_or("?").to_string();
            match it.next() {
                Some(src) => format!("{ty} ({src})"),
                None => ty,
            }
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / (1 << 20) as f64)
}

/// Prints the machine facts as a markdown table: CPUs, model, kernel,
/// memory, load, and the filesystem of every directory in `dirs`.
pub fn print_facts(title: &str, dirs: &[(&str, &Path)], extra: &[(&str, String)]) {
    println!("# {title}\n");
    println!("| machine fact | value |");
    println!("|---|---|");
    println!(
        "| nproc | {} |",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| CPU | {} |", cpu_model());
    println!(
        "| kernel | {} |",
        first_line("uname", &["-r"]).unwrap_or_else(|| "?".into())
    );
    println!("| memory | {:.1} GiB |", mem_total_gib());
    println!(
        "| load average at start | {} (the CPU is shared) |",
        loadavg()
    );
    for (what, dir) in dirs {
        println!("| {what} | `{}`: {} |", dir.display(), filesystem_of(dir));
    }
    for (k, v) in extra {
        println!("| {k} | {v} |");
    }
    println!();
}

// ── Statistics ──────────────────────────────────────────

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// CPU time of the calling thread, in seconds: on a shared machine work is
/// measured in CPU time, not wall time.
pub fn thread_cpu_secs() -> f64 {
    cpu_clock_secs(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process (all its threads), in seconds.
pub fn process_cpu_secs() -> f64 {
    cpu_clock_secs(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock_secs(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// `sync(2)`: flush what earlier steps left dirty, outside any timing.
pub fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Drops the page cache (root only); `false` if that was not possible.
pub fn drop_caches() -> bool {
    sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Total size of the regular files under `dir`.
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            total += tree_bytes(&e.path());
        } else if md.is_file() {
            total += md.len();
        }
    }
    total
}

/// The regular files under `dir`, sorted.
pub fn tree_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => out.extend(tree_files(&p)),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

pub fn remove_dir(dir: &Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("warning: removing {}: {e}", dir.display());
        }
    }
}

// ── A SPICE-like test capture ───────────────────────────

/// Bumped whenever the generator changes, so a cached capture made by an
/// older one is regenerated. The cache key also holds the spool's
/// [`spool::store::format::FORMAT_VERSION`], so a format change regenerates too
/// (a capture of the old format would read as damaged).
const GENERATOR_VERSION: u32 = 2;

/// xorshift64*: deterministic, fast, good enough for sizes and bytes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// What the generated capture holds.
#[derive(Debug, Clone, Default)]
pub struct CaptureStats {
    /// Data records per channel (name order of [`CHANNELS`]).
    pub records: u64,
    /// Payload bytes.
    pub payload_bytes: u64,
    /// Records of at most 1 KiB.
    pub small_records: u64,
    /// Records of 64 KiB or more.
    pub big_records: u64,
    /// Records the spool dropped while generating (should be 0).
    pub dropped: u64,
}

/// The channels of the generated session and the share of records each
/// gets (display dominates the bytes; inputs and cursor the record count
/// less than one would think, since display also sends many small draws).
pub const CHANNELS: &[(&str, u32)] = &[
    ("display", 50),
    ("main", 6),
    ("inputs", 16),
    ("cursor", 12),
    ("playback", 16),
];

/// One SPICE-like record (a socket read or write of a channel loop): one
/// or more whole messages with 6-byte mini headers (type u16, size u32),
/// or a 256 KiB piece of a bigger one. Bodies of image-like messages are
/// random (SPICE images are compressed), others structured and
/// compressible.
struct MessageSource {
    /// Bytes still to come of a message bigger than one read.
    pending: usize,
}

const READ_MAX: usize = 256 << 10;

impl MessageSource {
    fn header(out: &mut Vec<u8>, ty: u16, body: usize) {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(body as u32).to_le_bytes());
    }

    fn structured(out: &mut Vec<u8>, n: usize, rng: &mut Rng) {
        let base = rng.next();
        out.extend((0..n).map(|i| {
            if i % 8 < 5 {
                0
            } else {
                (base >> ((i % 8) * 8)) as u8 ^ (i / 64) as u8
            }
        }));
    }

    fn random(out: &mut Vec<u8>, n: usize, pool: &[u8], rng: &mut Rng) {
        let at = rng.range(0, pool.len() - n.min(pool.len()));
        out.extend_from_slice(&pool[at..at + n]);
    }

    /// Appends one message of `channel`, direction `dir`, to `out`.
    fn message(channel: &str, dir: Direction, out: &mut Vec<u8>, pool: &[u8], rng: &mut Rng) {
        let s2c = dir == Direction::ServerToClient;
        match (channel, s2c) {
            ("display", true) => {
                let r = rng.next() % 100;
                let (ty, body, image) = if r < 55 {
                    (302, rng.range(20, 400), false) // draw_fill, copy_bits…
                } else if r < 80 {
                    (304, rng.range(1 << 10, 16 << 10), true) // small draw_copy
                } else if r < 99 {
                    (304, rng.range(64 << 10, 250 << 10), true) // image
                } else {
                    (304, rng.range(300 << 10, 1 << 20), true) // big image
                };
                Self::header(out, ty, body);
                if image {
                    Self::random(out, body, pool, rng);
                } else {
                    Self::structured(out, body, rng);
                }
            }
            ("main", true) => {
                let body = if rng.chance(0.03) {
                    rng.range(32 << 10, 64 << 10) // agent data / clipboard
                } else {
                    rng.range(8, 300)
                };
                Self::header(out, 107, body);
                Self::structured(out, body, rng);
            }
            ("cursor", true) => {
                let body = if rng.chance(0.05) {
                    rng.range(4 << 10, 16 << 10) // a cursor shape
                } else {
                    rng.range(8, 40) // a move
                };
                Self::header(out, 102, body);
                Self::structured(out, body, rng);
            }
            ("playback", true) => {
                let body = rng.range(1 << 10, 4 << 10); // audio frames
                Self::header(out, 103, body);
                Self::random(out, body, pool, rng);
            }
            (_, true) => {
                let body = rng.range(4, 16); // acks and the like
                Self::header(out, 101, body);
                Self::structured(out, body, rng);
            }
            (_, false) => {
                let body = rng.range(0, 24); // acks, mouse motion, keys
                Self::header(out, 1, body);
                Self::structured(out, body, rng);
            }
        }
    }

    /// The next record into `out` (cleared first).
    fn record(
        &mut self,
        channel: &str,
        dir: Direction,
        out: &mut Vec<u8>,
        pool: &[u8],
        rng: &mut Rng,
    ) {
        out.clear();
        if dir == Direction::ServerToClient && self.pending > 0 {
            let n = self.pending.min(READ_MAX);
            Self::random(out, n, pool, rng);
            self.pending -= n;
            return;
        }
        // A read holds whatever the socket had: one message, or a few
        // small ones together.
        loop {
            let before = out.len();
            Self::message(channel, dir, out, pool, rng);
            if out.len() > READ_MAX {
                // Read the first 256 KiB now, the rest as later reads.
                self.pending = out.len() - READ_MAX;
                out.truncate(READ_MAX);
                return;
            }
            if out.len() - before > 1024 || out.len() > 4096 || !rng.chance(0.3) {
                return;
            }
        }
    }
}

/// A capture directory of about `mib` MiB of spool: metadata.json (ryll's
/// fields), the spool's manifest and segments (4 MiB, the writer's default),
/// written by [`SpoolSink`] with recorded timestamps.
pub fn generate_capture(dir: &Path, mib: u64) -> CaptureStats {
    generate_capture_mix(dir, mib, false)
}

/// [`generate_capture`], or with `small_only` a capture of small records
/// only (20–400-byte drawing messages and input/cursor traffic): the mix
/// where per-packet costs dominate rather than byte copies.
pub fn generate_capture_mix(dir: &Path, mib: u64, small_only: bool) -> CaptureStats {
    let staging = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("staging directory");
    let start_unix_ns = 1_700_000_000_000_000_000u64;
    let names: Vec<&str> = CHANNELS.iter().map(|c| c.0).collect();
    let config = SpoolConfig::new(dir)
        .staging(StagingChoice::Root(staging.path().join("staging")))
        .channels(&names)
        .session_start_unix_ns(start_unix_ns);
    let sink =
        SpoolSink::with_config(config, ryll_metadata("127.0.0.1", 5900, None)).expect("spool sink");
    let spool = sink.spool();
    let mut rng = Rng::new(0x5eed_0000 + mib);
    let pool: Vec<u8> = (0..(4usize << 20)).map(|_| rng.next() as u8).collect();
    let total_weight: u32 = CHANNELS.iter().map(|c| c.1).sum();
    let mut sources: Vec<MessageSource> = CHANNELS
        .iter()
        .map(|_| MessageSource { pending: 0 })
        .collect();
    let mut stats = CaptureStats::default();
    let want = mib << 20;
    let mut buf = Vec::with_capacity(2 << 20);
    // About 10 MB/s of traffic, as a busy desktop session: ~2 ms between
    // records on average (a 1 GiB capture spans about 2 minutes).
    let mut ts = 0u64;
    let mut written = 0u64;
    while written < want {
        let mut pick = (rng.next() % total_weight as u64) as u32;
        let ci = CHANNELS
            .iter()
            .position(|c| {
                if pick < c.1 {
                    true
                } else {
                    pick -= c.1;
                    false
                }
            })
            .unwrap_or(0);
        let name = CHANNELS[ci].0;
        // Mostly server→client; the client writes acks and input.
        let c2s_share = if name == "inputs" { 0.7 } else { 0.15 };
        let dir = if sources[ci].pending == 0 && rng.chance(c2s_share) {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        if small_only {
            buf.clear();
            let body = rng.range(20, 400);
            MessageSource::header(&mut buf, 302, body);
            MessageSource::structured(&mut buf, body, &mut rng);
            ts += rng.range(10_000, 390_000) as u64;
        } else {
            sources[ci].record(name, dir, &mut buf, &pool, &mut rng);
            ts += rng.range(100_000, 3_900_000) as u64;
        }
        // Never drop: wait for a prepared segment before every append (a
        // channel loop never would), as the fixture writer does.
        let t = Instant::now();
        while spool.ready_segments(name) == 0 {
            if t.elapsed() > Duration::from_secs(30) {
                panic!("{name}: no segment prepared in 30 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if spool.append_at(name, dir, ts, &buf) {
            stats.records += 1;
            stats.payload_bytes += buf.len() as u64;
            stats.small_records += u64::from(buf.len() <= 1024);
            stats.big_records += u64::from(buf.len() >= 64 << 10);
        } else {
            stats.dropped += 1;
        }
        written += 24 + (buf.len() as u64).div_ceil(8) * 8;
    }
    sink.close().expect("closing the generated spool");
    stats
}

/// The cached test capture of `mib` MiB under `target/tmp/bench-capture/`,
/// generated if missing (or made by another generator version).
pub fn cached_capture(mib: u64) -> (PathBuf, CaptureStats, bool) {
    cached_capture_mix(mib, false)
}

/// [`cached_capture`] of the given mix (see [`generate_capture_mix`]).
pub fn cached_capture_mix(mib: u64, small_only: bool) -> (PathBuf, CaptureStats, bool) {
    let root = bench_dir("bench-capture");
    let mix = if small_only { "small" } else { "spice-like" };
    let dir = root.join(format!(
        "{mix}-v{GENERATOR_VERSION}-f{}-{mib}MiB",
        spool::store::format::FORMAT_VERSION
    ));
    let marker = dir.join("bench-complete.txt");
    if let Some(stats) = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| parse_stats(&s))
    {
        return (dir, stats, true);
    }
    remove_dir(&dir);
    let t = Instant::now();
    let stats = generate_capture_mix(&dir, mib, small_only);
    eprintln!(
        "generated {} ({} MiB of spool) in {:.1} s",
        dir.display(),
        mib,
        t.elapsed().as_secs_f64()
    );
    std::fs::write(&marker, format_stats(&stats)).expect("marker");
    (dir, stats, false)
}

fn format_stats(s: &CaptureStats) -> String {
    format!(
        "{} {} {} {} {}\n",
        s.records, s.payload_bytes, s.small_records, s.big_records, s.dropped
    )
}

fn parse_stats(s: &str) -> Option<CaptureStats> {
    let v: Vec<u64> = s
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [records, payload_bytes, small_records, big_records, dropped] => Some(CaptureStats {
            records,
            payload_bytes,
            small_records,
            big_records,
            dropped,
        }),
        _ => None,
    }
}

/// Bytes of the spool proper (segment files under `spool/`).
pub fn spool_bytes(capture: &Path) -> u64 {
    tree_bytes(&capture.join("spool"))
}

/// One line describing the capture, for the facts table.
pub fn describe(stats: &CaptureStats, spool_bytes: u64, cached: bool) -> String {
    format!(
        "{:.2} GiB of spool, {} channels ({}), {} records: {:.0} % ≤ 1 KiB, {:.1} % ≥ 64 KiB, mean {:.1} KiB; {} dropped while generating; {}",
        spool_bytes as f64 / (1u64 << 30) as f64,
        CHANNELS.len(),
        CHANNELS.iter().map(|c| c.0).collect::<Vec<_>>().join(", "),
        stats.records,
        stats.small_records as f64 * 100.0 / stats.records.max(1) as f64,
        stats.big_records as f64 * 100.0 / stats.records.max(1) as f64,
        stats.payload_bytes as f64 / stats.records.max(1) as f64 / 1024.0,
        stats.dropped,
        if cached { "cached from an earlier run" } else { "generated in this run" }
    )
}
