//! The F12 bug report's timing: `ryll_hook::bundle::write_bug_report` on a
//! 1 GiB capture, with ryll's 24 MB budget and with a budget covering the
//! whole session, and `ryll_hook::bundle::capture_traffic_pcap` (the pcap alone, in
//! memory, as ryll's own report code asks for it) with the 24 MB budget.
//!
//! ```text
//! cargo bench -p e2e --bench bundle -- [quick] [mib=N] [rounds=N]
//! ```
//!
//! The capture is the `convert` bench's (SPICE-like traffic written by the
//! real spool writer, cached under `target/tmp/bench-capture/`; `quick`
//! uses 128 MiB). Each budget runs `rounds` times (default 3, `quick` 1),
//! alternating, after a `sync`, page cache warm; the zip goes to the same
//! filesystem and is removed after each run. MB/s read = spool bytes /
//! wall time (the function reads the spool twice: an index pass, then the
//! kept records). The zip is `fsync`ed before it is linked into place, so
//! a whole-session report pays for writing its gigabyte back to the disk.
//!
//! Without `--bench` (`cargo test --benches`) it bundles a 4 MiB capture
//! once per budget, as a smoke test.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::bench::*;
use ryll_hook::bundle::{
    capture_traffic_pcap, write_bug_report, BugReportOptions, BugReportSummary,
    DEFAULT_BUDGET_BYTES,
};

struct Budget {
    label: &'static str,
    bytes: u64,
}

const BUDGETS: [Budget; 2] = [
    Budget {
        label: "ryll's default (24 MB)",
        bytes: DEFAULT_BUDGET_BYTES,
    },
    Budget {
        label: "whole session (unbounded)",
        bytes: u64::MAX,
    },
];

fn run(capture: &Path, out_dir: &Path, budget: u64) -> (Duration, BugReportSummary, u64) {
    let zip = out_dir.join("bug-report.zip");
    let _ = std::fs::remove_file(&zip);
    sync();
    let t = Instant::now();
    let summary = write_bug_report(capture, &zip, budget).unwrap_or_else(|e| panic!("bundle: {e}"));
    let took = t.elapsed();
    let size = std::fs::metadata(&zip).map_or(0, |m| m.len());
    std::fs::remove_file(&zip).ok();
    (took, summary, size)
}

/// `capture_traffic_pcap` of every channel with `budget`: its time and summary.
fn run_pcap(capture: &Path, budget: u64) -> (Duration, BugReportSummary, u64) {
    let opts = BugReportOptions {
        budget_bytes: budget,
        ..BugReportOptions::default()
    };
    sync();
    let t = Instant::now();
    let (pcap, summary) = capture_traffic_pcap(capture, None, &opts)
        .unwrap_or_else(|e| panic!("capture_traffic_pcap: {e}"));
    let took = t.elapsed();
    let summary = BugReportSummary {
        traffic_capture: summary,
        channels: Default::default(),
    };
    (took, summary, pcap.len() as u64)
}

fn smoke() {
    let tmp = tempfile::tempdir_in(bench_dir("bundle-bench")).expect("temporary directory");
    let capture = tmp.path().join("capture");
    generate_capture(&capture, 4);
    for b in &BUDGETS {
        let (_, s, size) = run(&capture, tmp.path(), b.bytes);
        assert!(s.traffic_capture.packets_written > 0, "{}", b.label);
        assert!(size > 0);
    }
    let (_, s, len) = run_pcap(&capture, DEFAULT_BUDGET_BYTES);
    assert_eq!(len, s.traffic_capture.written_bytes);
    println!("bundle bench: smoke run passed (run `cargo bench -p e2e --bench bundle` to measure)");
}

fn main() {
    let args = Args::parse();
    if !args.benching {
        smoke();
        return;
    }
    let mib: u64 = args.number("mib", 1024, 128);
    let rounds: usize = args.number("rounds", 3, 1);
    let (capture, stats, cached) = cached_capture(mib);
    let out_dir = bench_dir("bundle-bench");
    let spool_bytes = spool_bytes(&capture);
    // Warm the page cache.
    for f in tree_files(&capture) {
        let _ = std::fs::read(f);
    }
    print_facts(
        &format!("bundle bench (F12): {rounds} round(s) per budget, alternating, warm page cache"),
        &[("capture dir", &capture), ("zip output dir", &out_dir)],
        &[("capture", describe(&stats, spool_bytes, cached))],
    );

    // The zip budgets, then `capture_traffic_pcap` with ryll's default.
    let labels: Vec<&str> = BUDGETS
        .iter()
        .map(|b| b.label)
        .chain(["capture_traffic_pcap only, in memory (24 MB)"])
        .collect();
    let mut results: Vec<Vec<(Duration, BugReportSummary, u64)>> =
        labels.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..labels.len() {
            let i = (k + round) % labels.len();
            let r = match BUDGETS.get(i) {
                Some(b) => run(&capture, &out_dir, b.bytes),
                None => run_pcap(&capture, DEFAULT_BUDGET_BYTES),
            };
            eprintln!(
                "round {}: {} {:.2} s",
                round + 1,
                labels[i],
                r.0.as_secs_f64()
            );
            results[i].push(r);
        }
    }

    println!(
        "| budget | runs | best s | median s | MB/s read (median) | traffic.pcap | packets written / omitted | oldest packet kept | zip |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (label, rs) in labels.iter().zip(&results) {
        let t: Vec<f64> = rs.iter().map(|r| r.0.as_secs_f64()).collect();
        let (_, s, zip) = &rs[0];
        let tc = &s.traffic_capture;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} | {:.1} MB | {} / {} | {} | {:.1} MB |",
            label,
            rs.len(),
            min(&t),
            median(&t),
            spool_bytes as f64 / median(&t) / 1e6,
            tc.written_bytes as f64 / 1e6,
            tc.packets_written,
            tc.packets_omitted,
            tc.oldest_packet_secs
                .map_or("–".into(), |s| format!("{s:.1} s into the session")),
            *zip as f64 / 1e6,
        );
    }
    println!(
        "\nMB/s read = {:.0} MB of spool / wall time (two passes over the spool). \
         Load average at end {}.",
        spool_bytes as f64 / 1e6,
        loadavg()
    );
}
