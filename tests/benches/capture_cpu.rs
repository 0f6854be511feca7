//! What capturing costs a session's CPU, per megabyte captured: every
//! session's memory-only ring (`SpoolConfig::memory_ring`), and a capture on
//! disk with segment reuse (`SpoolConfig::spare_segments`) and without,
//! compression on and off, against a run that appends nothing.
//!
//! ```text
//! cargo bench -p e2e --bench capture_cpu -- [rate=MB/s] [secs=S] [rounds=N] [only=TEXT] [quick]
//! cargo bench -p e2e --bench capture_cpu -- ceiling [secs=S]
//! ```
//!
//! `ceiling` finds the drop-free ceiling instead: the highest paced rate
//! (of a ladder from 50 to 3200 MB/s) that the memory ring, and a capture
//! on disk, keep for `secs` (default 30) with no record dropped, for 64 KiB
//! and 256 KiB records (a display channel's reads).
//!
//! One thread appends 64 KiB chunks (a display channel's reads) paced at
//! `rate` (default 30 MB/s, a busy guest's display traffic) for `secs`
//! (default 20; `quick`: 5 s, one round), into a spool whose capture directory is on the local disk
//! and whose staging is the default memory-backed directory; then the spool
//! is closed. Per configuration and round it prints the CPU time of the
//! whole process, of the appending thread, and of the preparer and retirer
//! threads, each per MB appended (milliseconds), plus drops and segments
//! reused; then the medians over rounds, and from them where each
//! millisecond per MB goes (hot path, preparer, mover, compression) for
//! the ring and a compressing capture (and that capture with its CRCs
//! computed by the retirer, as before the hot path stored them).
//! Configurations alternate within each round so that drift in the
//! machine's load spreads over all of them. The payload is half
//! incompressible bytes and half runs, so compression has work to do.
//!
//! `only=TEXT` runs the configurations whose name holds TEXT (for a
//! profiler). Without `--bench` (as `cargo test --benches` runs it) it does a one-second
//! smoke run of each configuration.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::bench::{bench_dir, median, print_facts, process_cpu_secs, thread_cpu_secs, Args};
use spool::{Direction, Spool, SpoolConfig};

const CHUNK: usize = 64 << 10;

/// One configuration measured.
#[derive(Clone, Copy)]
struct Setup {
    label: &'static str,
    kind: Kind,
}

/// Where the appends go.
#[derive(Clone, Copy)]
enum Kind {
    /// Nowhere: the pacing loop alone, the baseline the others are read
    /// against (its wake-ups cost CPU too).
    Nothing,
    /// A capture on disk, segments reused (`spares`) or new, compressed or
    /// not, record CRCs stored by the hot path (the default) or by the
    /// retirer (`SpoolConfig::checksum_at_append` off, as before it
    /// existed).
    Disk {
        spares: usize,
        compress: bool,
        crc_at_append: bool,
    },
    /// Every session's memory-only ring (`SpoolConfig::memory_ring`, the
    /// patched ryll's default without `--capture`): no disk, no mover.
    Ring,
}

const SETUPS: [Setup; 7] = [
    Setup {
        label: "no capture (pacing only)",
        kind: Kind::Nothing,
    },
    Setup {
        label: "memory ring, 48 MiB",
        kind: Kind::Ring,
    },
    Setup {
        label: "new segments, raw",
        kind: Kind::Disk {
            spares: 0,
            compress: false,
            crc_at_append: true,
        },
    },
    Setup {
        label: "reused segments, raw",
        kind: Kind::Disk {
            spares: 4,
            compress: false,
            crc_at_append: true,
        },
    },
    Setup {
        label: "new segments, zstd",
        kind: Kind::Disk {
            spares: 0,
            compress: true,
            crc_at_append: true,
        },
    },
    Setup {
        label: "reused segments, zstd",
        kind: Kind::Disk {
            spares: 4,
            compress: true,
            crc_at_append: true,
        },
    },
    Setup {
        label: "reused segments, zstd, CRCs by the retirer",
        kind: Kind::Disk {
            spares: 4,
            compress: true,
            crc_at_append: false,
        },
    },
];

/// The spool of `setup`, its capture directory `dir` (a ring's on tmpfs,
/// where it belongs); `None` for [`Kind::Nothing`].
fn spool_for(setup: Setup, dir: &Path) -> Option<Spool> {
    let config = match setup.kind {
        Kind::Nothing => return None,
        Kind::Disk {
            spares,
            compress,
            crc_at_append,
        } => SpoolConfig::new(dir)
            .spare_segments(spares)
            .compress(compress)
            .checksum_at_append(crc_at_append),
        Kind::Ring => SpoolConfig::memory_ring(ring_dir(dir), 48 << 20),
    };
    Some(Spool::create(config.channels(&[CHANNEL])).expect("spool"))
}

/// A ring's capture directory for the bench run in `dir`.
fn ring_dir(dir: &Path) -> std::path::PathBuf {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    Path::new("/dev/shm").join(format!("{name}-ring-{}", std::process::id()))
}

/// CPU seconds of one thread of this process, by its name (`comm`), from
/// `/proc/self/task/*/stat`; `None` if no thread has that name.
fn thread_cpu(name: &str) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the parenthesised command: state is field 3, utime
        // 14 and stime 15 (1-based, over the whole line).
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        return Some((utime + stime) / ticks);
    }
    None
}

struct Measured {
    mb: f64,
    drops: u64,
    process: f64,
    appender: f64,
    preparer: f64,
    retirer: f64,
    reused: u64,
}

fn run(setup: Setup, dir: &Path, payload: &[u8], rate: f64, secs: f64) -> Measured {
    run_chunks(setup, dir, payload, CHUNK, rate, secs)
}

fn run_chunks(
    setup: Setup,
    dir: &Path,
    payload: &[u8],
    chunk_len: usize,
    rate: f64,
    secs: f64,
) -> Measured {
    let _ = std::fs::remove_dir_all(dir);
    let cpu0 = process_cpu_secs();
    let spool = spool_for(setup, dir);
    let own0 = thread_cpu_secs();
    let start = Instant::now();
    let calls = (rate * secs / chunk_len as f64) as u64;
    let mut drops = 0;
    for i in 0..calls {
        let due = Duration::from_secs_f64(i as f64 * chunk_len as f64 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let off = (i as usize * 4099) % (payload.len() - chunk_len);
        let chunk = &payload[off..off + chunk_len];
        let kept = match &spool {
            Some(spool) => spool.append(CHANNEL, Direction::ServerToClient, chunk),
            None => std::hint::black_box(chunk).len() == chunk_len,
        };
        if !kept {
            drops += 1;
        }
    }
    let appender = thread_cpu_secs() - own0;
    // Read before the close, which ends the threads.
    let before_close = (
        thread_cpu("spool-prepare").unwrap_or(0.0),
        thread_cpu("spool-retire").unwrap_or(0.0),
    );
    let reused = spool.as_ref().map_or(0, Spool::segments_reused);
    if let Some(spool) = spool {
        spool.close().expect("close");
    }
    let process = process_cpu_secs() - cpu0;
    let _ = std::fs::remove_dir_all(dir);
    Measured {
        mb: (calls - drops) as f64 * chunk_len as f64 / 1e6,
        drops,
        process,
        appender,
        preparer: before_close.0,
        retirer: before_close.1,
        reused,
    }
}

const CHANNEL: &str = "display";

fn payload() -> Vec<u8> {
    // Half incompressible, half runs of a byte: display traffic mixes
    // compressed images with plain fills.
    let mut x: u32 = 0x1234_5678;
    (0..8usize << 20)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (i / 4096) % 2 == 0 {
                x as u8
            } else {
                (i / 512) as u8
            }
        })
        .collect()
}

/// Rates tried, in MB/s, lowest first, for the drop-free ceiling.
const LADDER: [f64; 7] = [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0];

/// `ceiling`: for 64 KiB and 256 KiB records, into the memory ring and into
/// a capture on disk, the highest rate of [`LADDER`] kept for `secs` with no
/// drop. Climbs until the first rate that drops.
fn ceiling(args: &Args, base: &Path, payload: &[u8]) {
    let secs: f64 = args.number("secs", 30.0, 5.0);
    print_facts(
        "capture_cpu bench: drop-free ceiling",
        &[("capture directory", base)],
        &[(
            "trial",
            format!("{secs:.0} s per rate, rates {LADDER:?} MB/s"),
        )],
    );
    println!("| records | configuration | highest rate with 0 drops (MB/s) | first rate that dropped | its drops |");
    println!("|---|---|---|---|---|");
    for chunk_len in [64 << 10, 256 << 10] {
        for setup in [SETUPS[1], SETUPS[5]] {
            let mut clean = None;
            let mut dropped = None;
            for rate in LADDER {
                let m = run_chunks(
                    setup,
                    &base.join("capture"),
                    payload,
                    chunk_len,
                    rate * 1e6,
                    secs,
                );
                if m.drops > 0 {
                    dropped = Some((rate, m.drops));
                    break;
                }
                clean = Some(rate);
            }
            println!(
                "| {} KiB | {} | {} | {} | {} |",
                chunk_len >> 10,
                setup.label,
                clean.map_or("none".into(), |r| format!("{r:.0}")),
                dropped.map_or("none".into(), |d| format!("{:.0}", d.0)),
                dropped.map_or(0, |d| d.1),
            );
        }
    }
}

/// Per-column medians of rounds of `[process, appender, preparer, retirer]`.
fn medians_of(rounds: &[[f64; 4]]) -> Option<[f64; 4]> {
    if rounds.is_empty() {
        return None;
    }
    let column = |c: usize| median(&rounds.iter().map(|r| r[c]).collect::<Vec<_>>());
    Some([column(0), column(1), column(2), column(3)])
}

/// Where each millisecond per MB goes, from the medians of the
/// configurations (indexes into [`SETUPS`]): the hot path is the appender
/// less the pacing loop's own wake-ups; the retirer of a compressing
/// capture splits into the mover (what the same capture's retirer costs
/// uncompressed: CRCs, copy, `fsync`, rename) and compression (the rest);
/// "other" is the process's CPU in no thread counted (creation, close).
fn print_breakdown(m: &[Option<[f64; 4]>]) {
    let (Some(pacing), Some(ring), Some(raw), Some(zstd)) = (m[0], m[1], m[3], m[5]) else {
        return;
    };
    let compression = (zstd[3] - raw[3]).max(0.0);
    let row = |label: &str, c: [f64; 4], compression: f64| {
        let hot = c[1] - pacing[1];
        let other = c[0] - c[1] - c[2] - c[3];
        println!(
            "| {label} | {:.3} | {hot:.3} | {:.3} | {:.3} | {compression:.3} | {other:.3} |",
            c[0] - pacing[0],
            c[2],
            c[3] - compression,
        );
    };
    println!("\n| where it goes, ms/MB (medians) | over no capture | hot path | preparer | mover | compression | other |");
    println!("|---|---|---|---|---|---|---|");
    row("memory ring", ring, 0.0);
    row("--capture (reused segments, zstd)", zstd, compression);
    if let Some(before) = m[6] {
        // Compression costs what it costs whoever computes the CRCs.
        row(
            "--capture, CRCs by the retirer (before)",
            before,
            compression,
        );
    }
}

fn main() {
    let args = Args::parse();
    if args.has("ceiling") {
        let base = bench_dir("capture-cpu-bench");
        return ceiling(&args, &base, &payload());
    }
    let rate = args.number("rate", 30.0, 30.0) * 1e6;
    let secs: f64 = if args.benching {
        args.number("secs", 20.0, 5.0)
    } else {
        1.0
    };
    let rounds: usize = if args.benching {
        args.number("rounds", 3, 1)
    } else {
        1
    };
    let base = bench_dir("capture-cpu-bench");
    let dir = base.join("capture");
    let payload = payload();
    print_facts(
        "capture_cpu bench",
        &[("capture directory", &base)],
        &[(
            "load",
            format!(
                "64 KiB appends at {:.0} MB/s for {secs:.0} s, {rounds} round(s)",
                rate / 1e6
            ),
        )],
    );
    println!(
        "| round | configuration | MB kept | drops | process ms/MB | appender | preparer | retirer | reused |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // Per configuration, per round: process, appender, preparer, retirer.
    let mut per_round: Vec<Vec<[f64; 4]>> = vec![Vec::new(); SETUPS.len()];
    for round in 1..=rounds {
        for (k, setup) in SETUPS.iter().enumerate() {
            if args.value("only").is_some_and(|o| !setup.label.contains(o)) {
                continue;
            }
            let m = run(*setup, &dir, &payload, rate, secs);
            let per = |s: f64| s * 1e3 / m.mb.max(1e-9);
            println!(
                "| {round} | {} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
                setup.label,
                m.mb,
                m.drops,
                per(m.process),
                per(m.appender),
                per(m.preparer),
                per(m.retirer),
                m.reused
            );
            per_round[k].push([
                per(m.process),
                per(m.appender),
                per(m.preparer),
                per(m.retirer),
            ]);
        }
    }
    let medians: Vec<Option<[f64; 4]>> = per_round.iter().map(|r| medians_of(r)).collect();
    println!("\n| configuration | process ms/MB | appender | preparer | retirer |  (medians over rounds)");
    println!("|---|---|---|---|---|");
    for (setup, m) in SETUPS.iter().zip(&medians) {
        let Some(m) = m else { continue };
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            setup.label, m[0], m[1], m[2], m[3]
        );
    }
    print_breakdown(&medians);
    println!(
        "\nprocess = all CPU of the process from creating the spool to the end of its close; \
         preparer and retirer are read just before the close (clock-tick resolution)."
    );
}
