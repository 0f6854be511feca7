//! The replay benchmark: the recorded real SPICE session replayed over
//! loopback (`ryll_tools::replay::replay`, what `ryll-replay` runs) with
//! `--pace max --repeat N` (≥ 500 MB per run) through each sink — `none`,
//! `spool`, `ryll-threads` — with the capture directory on the local disk
//! and on the slow FUSE disk of `scripts/slowfs.py`.
//!
//! ```text
//! scripts/slowfs-mount.sh /tmp/slowfs          # optional: the slow disk
//! SLOWFS_DIR=/tmp/slowfs cargo bench -p e2e --bench replay -- [quick] [mb=N] [rounds=N] [local|slow]
//! fusermount -u /tmp/slowfs
//! ```
//!
//! For each disk, each sink runs `rounds` times (default 3, `quick` 1),
//! interleaved with the others, each in a fresh capture directory that is
//! closed (timed) and removed afterwards. The read-loop latency is the time
//! of each `packet_received` call in the client read loops, as `ryll-replay`
//! prints it, over all channels; the table shows the median of the runs'
//! percentiles and, in brackets, the best and worst run. Without `SLOWFS_DIR`
//! the slow-disk part is skipped with a message.
//!
//! Without `--bench` (`cargo test --benches`) it replays the session once
//! per sink, as a smoke test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::bench::*;
use ryll_hook::{CaptureSink, NoCaptureSink, SpoolSink};
use ryll_tools::baseline::{DesignSink, RyllThreads};
use ryll_tools::recorded::{self, Session};
use ryll_tools::replay::{
    quantile_sorted, replay, ChannelStats, Pace, ReplayOptions, ReplayReport,
};
use spool::Direction;

/// On the slow disk the spool sink's read loop must stay within this
/// factor of `--sink none`.
const TARGET_RATIO: f64 = 2.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    None,
    Spool,
    RyllThreads,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::None, Kind::Spool, Kind::RyllThreads];

    fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Spool => "spool",
            Kind::RyllThreads => "ryll-threads",
        }
    }
}

/// ryll 0.3.0's design behind the renderer's trait.
type Threads = Arc<DesignSink<RyllThreads>>;

/// One replay through one sink.
struct Run {
    /// p50, p99, p99.9, max of the read loop's sink calls (ns).
    q: [u64; 4],
    /// The same of whole read-loop iterations: `read()` plus the sink call.
    lq: [u64; 4],
    reads: u64,
    bytes: u64,
    elapsed: Duration,
    /// Calls the sink answered `false`.
    drops: u64,
    /// Sink calls (reads + writes).
    calls: u64,
    close: Duration,
    /// What closing reported (write errors, dropped records).
    note: String,
}

fn run_once(session: &Session, kind: Kind, place: &Path, repeat: u32) -> Run {
    let tmp = tempfile::Builder::new()
        .prefix("replay-bench-")
        .tempdir_in(place)
        .expect("capture directory");
    let dir = tmp.path().join("capture");
    let (sink, spool, threads): (
        Arc<dyn CaptureSink>,
        Option<Arc<SpoolSink>>,
        Option<Threads>,
    ) = match kind {
        Kind::None => (Arc::new(NoCaptureSink), None, None),
        Kind::Spool => {
            let s = Arc::new(
                SpoolSink::create(&dir, "127.0.0.1", recorded::RECORDED_SESSION_PORT, None)
                    .expect("spool sink"),
            );
            (s.clone(), Some(s), None)
        }
        Kind::RyllThreads => {
            let t = Arc::new(DesignSink(RyllThreads::create(&dir).expect("ryll threads")));
            (t.clone(), None, Some(t))
        }
    };
    let opts = ReplayOptions {
        server_port: 0,
        pace: Pace::Max,
        repeat,
    };
    let report = replay(session, sink, &opts).unwrap_or_else(|e| panic!("replay: {e}"));
    let t = Instant::now();
    let note = if let Some(s) = &spool {
        s.close().expect("closing the spool");
        let dropped: u64 = s
            .all_counters()
            .iter()
            .map(|(_, c)| c.dropped_records)
            .sum();
        format!("{dropped} records dropped")
    } else if let Some(d) = &threads {
        d.0.close();
        format!("{} write errors", d.0.write_errors())
    } else {
        String::new()
    };
    let close = t.elapsed();
    drop(tmp);
    summarize(&report, close, note)
}

fn summarize(report: &ReplayReport, close: Duration, note: String) -> Run {
    let quantiles = |f: fn(&ChannelStats) -> &Vec<u64>| {
        let mut all: Vec<u64> = report
            .channels
            .values()
            .flat_map(|c| f(c).iter().copied())
            .collect();
        all.sort_unstable();
        [0.5, 0.99, 0.999, 1.0].map(|p| quantile_sorted(&all, p))
    };
    Run {
        q: quantiles(|c| &c.read_sink_ns),
        lq: quantiles(|c| &c.read_loop_ns),
        reads: report.channels.values().map(|c| c.reads).sum(),
        bytes: report.total_bytes(),
        elapsed: report.elapsed,
        drops: report.channels.values().map(|c| c.drops).sum(),
        calls: report.channels.values().map(|c| c.reads + c.writes).sum(),
        close,
        note,
    }
}

fn ns(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0} ns")
    } else if v < 1e6 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{:.1} ms", v / 1e6)
    }
}

/// Which latency a table shows: the sink call alone, or the whole loop.
#[derive(Clone, Copy)]
enum Measure {
    Sink,
    Loop,
}

impl Measure {
    fn of(self, r: &Run) -> &[u64; 4] {
        match self {
            Measure::Sink => &r.q,
            Measure::Loop => &r.lq,
        }
    }
}

/// `median [best–worst]` of one percentile over the runs.
fn spread(runs: &[Run], i: usize, m: Measure) -> String {
    let v: Vec<f64> = runs.iter().map(|r| m.of(r)[i] as f64).collect();
    format!("{} [{}–{}]", ns(median(&v)), ns(min(&v)), ns(max(&v)))
}

fn median_q(runs: &[Run], i: usize, m: Measure) -> f64 {
    median(&runs.iter().map(|r| m.of(r)[i] as f64).collect::<Vec<_>>())
}

struct Place {
    label: &'static str,
    dir: PathBuf,
}

fn bench_place(
    session: &Session,
    place: &Place,
    repeat: u32,
    rounds: usize,
) -> Vec<(Kind, Vec<Run>)> {
    let mut out: Vec<(Kind, Vec<Run>)> = Kind::ALL.iter().map(|&k| (k, Vec::new())).collect();
    for round in 0..rounds {
        for k in 0..Kind::ALL.len() {
            let i = (k + round) % Kind::ALL.len();
            let kind = Kind::ALL[i];
            sync();
            let r = run_once(session, kind, &place.dir, repeat);
            eprintln!(
                "{} round {}: {:<12} {:.0} MB in {:.2} s, p50 {} p99.9 {} max {}, drops {}, close {:.2} s {}",
                place.label,
                round + 1,
                kind.name(),
                r.bytes as f64 / 1e6,
                r.elapsed.as_secs_f64(),
                ns(r.q[0] as f64),
                ns(r.q[2] as f64),
                ns(r.q[3] as f64),
                r.drops,
                r.close.as_secs_f64(),
                r.note
            );
            out[i].1.push(r);
        }
    }
    out
}

fn smoke(session: &Session) {
    let base = bench_dir("replay-bench");
    for kind in Kind::ALL {
        let r = run_once(session, kind, &base, 1);
        assert!(r.reads > 0 && r.bytes > 0, "{kind:?}");
        assert_eq!(r.drops, 0, "{kind:?} dropped in a single replay");
    }
    println!("replay bench: smoke run passed (run `cargo bench -p e2e --bench replay` to measure)");
}

fn main() {
    let args = Args::parse();
    let session = recorded::load(
        &recorded::recorded_session_path(),
        recorded::RECORDED_SESSION_PORT,
    )
    .unwrap_or_else(|e| panic!("the recorded session: {e}"));
    if !args.benching {
        smoke(&session);
        return;
    }
    let mb: f64 = args.number("mb", 500.0, 50.0);
    let rounds: usize = args.number("rounds", 3, 1);
    let per_repeat: u64 = session
        .connections
        .iter()
        .map(|c| {
            (c.stream(Direction::ServerToClient).len() + c.stream(Direction::ClientToServer).len())
                as u64
        })
        .sum();
    let repeat = (mb * 1e6 / per_repeat as f64).ceil() as u32;

    let mut places = Vec::new();
    if !args.has("slow") {
        places.push(Place {
            label: "local disk",
            dir: bench_dir("replay-bench"),
        });
    }
    let slow = std::env::var_os("SLOWFS_DIR").map(PathBuf::from);
    let slow_msg = match (&slow, args.has("local")) {
        (_, true) => Some("slow disk: not asked for (`local`)".to_string()),
        (None, _) => Some(
            "slow disk: **not run** — SLOWFS_DIR is not set (mount one with \
             `scripts/slowfs-mount.sh DIR` and run with SLOWFS_DIR=DIR)"
                .to_string(),
        ),
        (Some(d), _) => {
            places.push(Place {
                label: "slow disk",
                dir: d.clone(),
            });
            None
        }
    };

    let dirs: Vec<(&str, &Path)> = places.iter().map(|p| (p.label, p.dir.as_path())).collect();
    let chunks: usize = session.connections.iter().map(|c| c.chunks.len()).sum();
    print_facts(
        &format!(
            "replay bench: --pace max --repeat {repeat}, {rounds} round(s) per sink, interleaved"
        ),
        &dirs,
        &[
            (
                "session",
                format!(
                    "`{}`: {} channels ({}), {} post-link bytes and {} recorded chunks per repeat; {:.0} MB per run",
                    recorded::recorded_session_path()
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy(),
                    session.connections.len(),
                    session
                        .connections
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    per_repeat,
                    chunks,
                    per_repeat as f64 * repeat as f64 / 1e6
                ),
            ),
            (
                "spool staging",
                "`/dev/shm` (tmpfs; SpoolSink's default, Auto)".to_string(),
            ),
        ],
    );

    let mut results = Vec::new();
    for place in &places {
        results.push((place, bench_place(&session, place, repeat, rounds)));
    }

    for (measure, title) in [
        (Measure::Sink, "time in the sink per read"),
        (
            Measure::Loop,
            "whole read-loop iteration: read() (with any wait for data) + the sink",
        ),
    ] {
        println!("\n{title}:\n");
        println!(
            "| disk | sink | runs | MB/run | wall MB/s | reads/run | read-loop p50 | p99 | p99.9 | max | drops/run (% of calls) | close s |"
        );
        println!("|---|---|---:|---:|---:|---:|---|---|---|---|---:|---:|");
        for (place, per_kind) in &results {
            for (kind, runs) in per_kind {
                let f = |g: &dyn Fn(&Run) -> f64| median(&runs.iter().map(g).collect::<Vec<_>>());
                let drops = f(&|r| r.drops as f64);
                let calls = f(&|r| r.calls as f64);
                println!(
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.0} ({:.1} %) | {:.2} |",
                    place.label,
                    kind.name(),
                    runs.len(),
                    f(&|r| r.bytes as f64) / 1e6,
                    f(&|r| r.bytes as f64 / r.elapsed.as_secs_f64()) / 1e6,
                    f(&|r| r.reads as f64),
                    spread(runs, 0, measure),
                    spread(runs, 1, measure),
                    spread(runs, 2, measure),
                    spread(runs, 3, measure),
                    drops,
                    drops * 100.0 / calls.max(1.0),
                    f(&|r| r.close.as_secs_f64()),
                );
            }
        }
    }
    if let Some(m) = &slow_msg {
        println!("\n{m}");
    }

    println!(
        "\n| disk | measure | spool ÷ none: p50 | p99 | p99.9 | max | wall time | target: ≤ {TARGET_RATIO}× on the slow disk |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for (place, per_kind) in results.iter().flat_map(|(p, k)| {
        [(p, k, Measure::Sink), (p, k, Measure::Loop)].map(|(p, k, m)| ((p, m), k))
    }) {
        let (place, measure) = place;
        let get = |k: Kind| &per_kind.iter().find(|(kk, _)| *kk == k).expect("ran").1;
        let (none, sp) = (get(Kind::None), get(Kind::Spool));
        let ratio = |i| median_q(sp, i, measure) / median_q(none, i, measure).max(1.0);
        let wall = |runs: &[Run]| {
            median(
                &runs
                    .iter()
                    .map(|r| r.elapsed.as_secs_f64())
                    .collect::<Vec<_>>(),
            )
        };
        let r: Vec<f64> = (0..4).map(ratio).collect();
        let worst = r.iter().copied().fold(0.0, f64::max);
        let verdict = if place.label != "slow disk" {
            "(target is for the slow disk)".to_string()
        } else if worst <= TARGET_RATIO {
            "met at every percentile".to_string()
        } else {
            let missed: Vec<&str> = ["p50", "p99", "p99.9", "max"]
                .iter()
                .zip(&r)
                .filter(|(_, &x)| x > TARGET_RATIO)
                .map(|(n, _)| *n)
                .collect();
            format!("**MISSED** at {}", missed.join(", "))
        };
        println!(
            "| {} | {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {verdict} |",
            place.label,
            match measure {
                Measure::Sink => "sink call",
                Measure::Loop => "read loop",
            },
            r[0],
            r[1],
            r[2],
            r[3],
            wall(sp) / wall(none)
        );
    }
    println!(
        "\nSink call = time of each `packet_received` call in the client read loops; read loop = \
         that plus the `read()` before it (all channels together), median of the runs' percentiles [best–worst run]. Drops = \
         sink calls answered `false` (ryll's `writer_dropped_count`). close = closing the sink \
         after the replay (spool: sealing and moving staged segments; ryll-threads: draining its \
         queue). Load average at end {}.",
        loadavg()
    );
}
