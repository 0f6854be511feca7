//! Compressed at rest: what the retirer's compression saves and costs on
//! real traffic of the busy guest, and what it buys on a slow disk.
//!
//! ```text
//! cargo bench -p e2e --bench compress -- scroll=DIR random=DIR \
//!     [codecs] [replay] [sweep] [convert] [secs=N] [budget_mib=N] [slowfs=DIR]
//! ```
//!
//! `scroll=DIR` and `random=DIR` are capture directories of the real busy
//! guest recorded uncompressed, e.g. with `ryll-capture` (built without
//! compression, or with `--no-compress`) against
//! `tests/guest/spice-guest PORT scroll` and `… random --extra`. Each
//! part prints a markdown table:
//!
//! * `codecs`: every segment file of each recording through the retirer's
//!   [`SegmentCompressor`] (zstd level 1, a 256 KiB trial block, then
//!   1 MiB blocks) and through `lz4_flex` on 1 MiB blocks: ratio,
//!   compression and decompression speed in MB per CPU second of the
//!   thread (the machine is shared, so wall time would measure the
//!   neighbours).
//! * `replay`: the recording's records appended into a real [`Spool`] at
//!   `speed` (default 1) times the recorded pace, looped for `secs`
//!   (default 15) seconds, compression
//!   on and off, the capture directory on the local disk (`target/tmp`)
//!   and, if `slowfs=DIR` is given (mounted with
//!   `scripts/slowfs-mount.sh DIR`), on the slow FUSE disk: bytes on disk
//!   against raw, the retirer's CPU time spent compressing, drops, and how
//!   long the close took to move the backlog.
//! * `sweep` (needs `slowfs=DIR`): the same replay on the slow disk at 1/8,
//!   1/4, … 64 times the recorded pace, each with a staging budget of
//!   `budget_mib` (default 64) MiB, until records are dropped: the highest
//!   load the slow disk keeps in full, with and without compression.
//! * `convert`: `spool2pcap convert` of the local-disk replays (compressed
//!   and not) into pcap files on the same disk: output bytes per second
//!   (best of 3, warm cache).
//!
//! Without `--bench` (`cargo test --benches`) it does nothing but say so:
//! it needs recordings of the real guest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::bench::*;
use spool::read::capture::Capture;
use spool::read::event::Event;
use spool::store::compress::{BlockReader, BlockStep, SegmentCompressor, BLOCK_TARGET};
use spool::{Direction, Spool, SpoolConfig};

/// One data record of a recording.
struct Rec {
    channel: usize,
    dir: Direction,
    ts_ns: u64,
    payload: Vec<u8>,
}

/// A recording held in memory.
struct Recording {
    name: String,
    dir: PathBuf,
    channels: Vec<String>,
    records: Vec<Rec>,
    bytes: u64,
    span_ns: u64,
}

impl Recording {
    fn load(name: &str, dir: &Path) -> Recording {
        let cap = Capture::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut channels = Vec::new();
        let mut records = Vec::new();
        // Only the channels that carried data: each channel replayed holds
        // a segment of the staging budget.
        for files in cap.channels() {
            let ci = channels.len();
            let before = records.len();
            let mut r = cap.reader(&files.name).expect("listed channel");
            while let Some(ev) = r.next_event() {
                if let Event::Data(d) = ev {
                    records.push(Rec {
                        channel: ci,
                        dir: d.direction,
                        ts_ns: d.ts_ns,
                        payload: d.payload.to_vec(),
                    });
                }
            }
            if records.len() > before {
                channels.push(files.name.clone());
            }
        }
        records.sort_by_key(|r| r.ts_ns);
        let first = records.first().map_or(0, |r| r.ts_ns);
        for r in &mut records {
            r.ts_ns -= first;
        }
        let span_ns = records.last().map_or(1, |r| r.ts_ns.max(1));
        let bytes = records.iter().map(|r| r.payload.len() as u64).sum();
        Recording {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            channels,
            records,
            bytes,
            span_ns,
        }
    }

    /// Recorded data rate, MB/s.
    fn rate(&self) -> f64 {
        self.bytes as f64 / (self.span_ns as f64 / 1e9) / 1e6
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

// ── codecs ──────────────────────────────────────────────

fn codecs(recs: &[(String, PathBuf)]) {
    println!("## Codecs on the recorded segments (MB per CPU second of one thread, warm cache)\n");
    println!("| load | codec | raw MB | on disk MB | ratio | compress MB/s | decompress MB/s |");
    println!("|---|---|---|---|---|---|---|");
    let mut zc = SegmentCompressor::new().expect("zstd context");
    for (name, dir) in recs {
        let segs: Vec<Vec<u8>> = tree_files(&dir.join("spool"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        let raw: u64 = segs.iter().map(|s| s.len() as u64).sum();
        // zstd, as the retirer does it (adaptive: kept segments count as
        // stored), then decoded as a reader does.
        let mut zstd_out = Vec::new();
        let t = thread_cpu_secs();
        for s in &segs {
            match zc.compress(s) {
                Ok(c) => zstd_out.push(c.to_vec()),
                Err(_) => zstd_out.push(s.clone()),
            }
        }
        let zt = thread_cpu_secs() - t;
        let zdisk: u64 = zstd_out.iter().map(|s| s.len() as u64).sum();
        let mut br = BlockReader::new();
        let t = thread_cpu_secs();
        let mut decoded = 0u64;
        for s in &zstd_out {
            br.rewind();
            while let Some(step) = br.advance(s) {
                if let BlockStep::Records { .. } = step {
                    decoded += br.records().len() as u64;
                }
            }
        }
        let zd = thread_cpu_secs() - t;
        println!(
            "| {name} | zstd -1, adaptive (ours) | {:.1} | {:.1} | {:.2}× | {:.0} | {:.0}{} |",
            mb(raw),
            mb(zdisk),
            raw as f64 / zdisk.max(1) as f64,
            mb(raw) / zt,
            mb(decoded) / zd.max(1e-9),
            if decoded < raw / 2 {
                " (of the few segments compressed)"
            } else {
                ""
            }
        );
        // lz4_flex on the same block size, every segment.
        let t = thread_cpu_secs();
        let lz: Vec<Vec<Vec<u8>>> = segs
            .iter()
            .map(|s| {
                s.chunks(BLOCK_TARGET)
                    .map(lz4_flex::block::compress)
                    .collect()
            })
            .collect();
        let lt = thread_cpu_secs() - t;
        let ldisk: u64 = lz.iter().flatten().map(|b| b.len() as u64 + 32).sum();
        let t = thread_cpu_secs();
        let mut out = vec![0u8; BLOCK_TARGET];
        let mut ldec = 0u64;
        for (s, blocks) in segs.iter().zip(&lz) {
            for (chunk, b) in s.chunks(BLOCK_TARGET).zip(blocks) {
                let n = lz4_flex::block::decompress_into(b, &mut out[..chunk.len()])
                    .expect("lz4 round trip");
                ldec += n as u64;
            }
        }
        let ld = thread_cpu_secs() - t;
        println!(
            "| {name} | lz4_flex, every block | {:.1} | {:.1} | {:.2}× | {:.0} | {:.0} |",
            mb(raw),
            mb(ldisk),
            raw as f64 / ldisk.max(1) as f64,
            mb(raw) / lt,
            mb(ldec) / ld.max(1e-9)
        );
    }
    println!();
}

// ── replay ──────────────────────────────────────────────

/// What one replay run measured.
struct RunResult {
    offered_mb_s: f64,
    dropped_records: u64,
    dropped_bytes: u64,
    raw: u64,
    disk: u64,
    compressed_segments: u64,
    kept_segments: u64,
    cpu_s: f64,
    wall_s: f64,
    close_s: f64,
}

/// Appends the recording at `speed` times its pace, looped, for `secs`
/// seconds, into a new spool in `capture`.
fn replay(
    rec: &Recording,
    capture: &Path,
    compress: bool,
    speed: f64,
    secs_: f64,
    budget: u64,
) -> RunResult {
    remove_dir(capture);
    let config = SpoolConfig::new(capture)
        .compress(compress)
        .staging_budget(budget)
        .channels(&rec.channels);
    let spool = Spool::create(config).expect("spool");
    let handles: Vec<_> = rec
        .channels
        .iter()
        .map(|c| spool.channel(c).expect("channel"))
        .collect();
    let start = Instant::now();
    let until = Duration::from_secs_f64(secs_);
    let mut appended = 0u64;
    let mut round = 0u64;
    'outer: loop {
        let base = round as f64 * (rec.span_ns as f64 + 1e6);
        for r in &rec.records {
            let due = Duration::from_secs_f64((base + r.ts_ns as f64) / 1e9 / speed);
            if due >= until {
                break 'outer;
            }
            loop {
                let now = start.elapsed();
                if now >= due {
                    break;
                }
                let wait = due - now;
                if wait > Duration::from_micros(200) {
                    std::thread::sleep(wait - Duration::from_micros(100));
                } else {
                    std::hint::spin_loop();
                }
            }
            handles[r.channel].append(r.dir, &r.payload);
            appended += r.payload.len() as u64;
        }
        round += 1;
    }
    let wall_s = secs(start.elapsed());
    let t = Instant::now();
    spool.close().expect("close");
    let close_s = secs(t.elapsed());
    let (mut dr, mut db) = (0, 0);
    for (_, c) in spool.all_counters() {
        dr += c.dropped_records;
        db += c.dropped_bytes;
    }
    let st = spool.compression();
    drop(handles);
    RunResult {
        offered_mb_s: mb(appended) / wall_s,
        dropped_records: dr,
        dropped_bytes: db,
        raw: st.raw_bytes,
        disk: tree_bytes(&capture.join("spool")),
        compressed_segments: st.segments_compressed,
        kept_segments: st.segments_kept,
        cpu_s: st.cpu_ns as f64 / 1e9,
        wall_s,
        close_s,
    }
}

fn print_run_header() {
    println!("| load | disk | compress | speed | offered MB/s | drops (records / MB) | raw MB | on disk MB | ratio | segments compressed / kept | compress CPU s (% of a core) | close s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn print_run(load: &str, disk: &str, compress: bool, speed: f64, r: &RunResult) {
    println!(
        "| {load} | {disk} | {} | {speed}× | {:.1} | {} / {:.1} | {:.1} | {:.1} | {:.2}× | {} / {} | {:.2} ({:.1} %) | {:.1} |",
        if compress { "on" } else { "off" },
        r.offered_mb_s,
        r.dropped_records,
        mb(r.dropped_bytes),
        mb(r.raw),
        mb(r.disk),
        r.raw as f64 / r.disk.max(1) as f64,
        r.compressed_segments,
        r.kept_segments,
        r.cpu_s,
        100.0 * r.cpu_s / r.wall_s,
        r.close_s
    );
}

// ── convert ─────────────────────────────────────────────

/// Converts `capture` into pcap files in a scratch directory beside it,
/// three times: the bytes written and the best time.
fn convert_speed(capture: &Path) -> (u64, f64) {
    use spool2pcap::{convert, ConvertOptions, Destination};
    let out = capture.with_extension("pcaps");
    let mut best = f64::MAX;
    let mut bytes = 0;
    for _ in 0..3 {
        remove_dir(&out);
        sync();
        let mut opts = ConvertOptions::new(Destination::Dir(out.clone()));
        opts.force = true;
        let t = Instant::now();
        let report = convert(capture, &opts).expect("convert");
        best = best.min(secs(t.elapsed()));
        assert!(!report.has_damage(), "{}: damage", capture.display());
        bytes = tree_bytes(&out);
    }
    remove_dir(&out);
    (bytes, best)
}

fn main() {
    let args = Args::parse();
    if !args.benching {
        println!("compress bench: needs recordings of the real guest (scroll=DIR random=DIR); nothing to do");
        return;
    }
    let mut recs = Vec::new();
    for load in ["scroll", "random"] {
        if let Some(d) = args.value(load) {
            recs.push((load.to_string(), PathBuf::from(d)));
        }
    }
    assert!(!recs.is_empty(), "give scroll=DIR and/or random=DIR");
    let work = bench_dir("compress");
    let slowfs = args.value("slowfs").map(PathBuf::from);
    let mut dirs: Vec<(&str, &Path)> = vec![("local disk", work.as_path())];
    if let Some(s) = &slowfs {
        dirs.push(("slow disk", s.as_path()));
    }
    print_facts("Compressed at rest", &dirs, &[]);
    let all = !["codecs", "replay", "sweep", "convert"]
        .iter()
        .any(|w| args.has(w));
    if all || args.has("codecs") {
        codecs(&recs);
    }
    let secs_: f64 = args.number("secs", 15.0, 5.0);
    let speed: f64 = args.number("speed", 1.0, 1.0);
    let budget: u64 = args.number("budget_mib", 64u64, 64) << 20;
    let loaded: Vec<Recording> = recs.iter().map(|(n, d)| Recording::load(n, d)).collect();
    println!("| recording | channels | records | data MB | span s | pace MB/s |");
    println!("|---|---|---|---|---|---|");
    for r in &loaded {
        println!(
            "| {} (`{}`) | {} | {} | {:.1} | {:.1} | {:.1} |",
            r.name,
            r.dir.display(),
            r.channels.len(),
            r.records.len(),
            mb(r.bytes),
            r.span_ns as f64 / 1e9,
            r.rate()
        );
    }
    println!();
    if all || args.has("replay") || args.has("convert") {
        println!(
            "## Replay at {speed} times the recorded pace, {secs_} s, default staging budget\n"
        );
        print_run_header();
        for r in &loaded {
            for compress in [false, true] {
                let cap = work.join(format!("{}-{}", r.name, if compress { "z" } else { "raw" }));
                let res = replay(r, &cap, compress, speed, secs_, 256 << 20);
                print_run(&r.name, "local", compress, speed, &res);
            }
            if let Some(s) = &slowfs {
                for compress in [false, true] {
                    let cap = s.join(format!("bench-{}-{}", r.name, compress));
                    let res = replay(r, &cap, compress, speed, secs_, 256 << 20);
                    print_run(&r.name, "slow", compress, speed, &res);
                    remove_dir(&cap);
                }
            }
        }
        println!();
    }
    if all || args.has("sweep") {
        if let Some(s) = &slowfs {
            println!("## Highest load the slow disk keeps in full ({secs_} s runs, staging budget {} MiB)\n", budget >> 20);
            print_run_header();
            let mut best = Vec::new();
            for r in &loaded {
                for compress in [false, true] {
                    let mut kept = None;
                    for speed in [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0] {
                        let cap = s.join(format!("sweep-{}-{}", r.name, compress));
                        let res = replay(r, &cap, compress, speed, secs_, budget);
                        print_run(&r.name, "slow", compress, speed, &res);
                        remove_dir(&cap);
                        if res.dropped_records > 0 {
                            break;
                        }
                        kept = Some((speed, res.offered_mb_s));
                    }
                    best.push((r.name.clone(), compress, kept));
                }
            }
            println!();
            println!("| load | compress | highest speed kept in full | offered MB/s |");
            println!("|---|---|---|---|");
            for (name, compress, kept) in best {
                match kept {
                    Some((speed, rate)) => println!(
                        "| {name} | {} | {speed}× | {rate:.1} |",
                        if compress { "on" } else { "off" }
                    ),
                    None => println!(
                        "| {name} | {} | below 0.125× | — |",
                        if compress { "on" } else { "off" }
                    ),
                }
            }
            println!();
        } else {
            println!("(sweep skipped: give slowfs=DIR)\n");
        }
    }
    if all || args.has("convert") {
        println!("## spool2pcap convert into pcap files on the local disk, best of 3\n");
        println!("| load | spool | on disk MB | pcap MB | s | output MB/s |");
        println!("|---|---|---|---|---|---|");
        for r in &loaded {
            for compress in [false, true] {
                let cap = work.join(format!("{}-{}", r.name, if compress { "z" } else { "raw" }));
                if !cap.exists() {
                    continue;
                }
                let (bytes, s) = convert_speed(&cap);
                println!(
                    "| {} | {} | {:.1} | {:.1} | {:.2} | {:.0} |",
                    r.name,
                    if compress {
                        "compressed"
                    } else {
                        "uncompressed"
                    },
                    mb(tree_bytes(&cap.join("spool"))),
                    mb(bytes),
                    s,
                    mb(bytes) / s
                );
            }
        }
        println!();
    }
}
