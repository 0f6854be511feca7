//! The conversion speed check: spool2pcap's conversion of a ≥ 1 GiB SPICE-like
//! capture against `cp` of the same bytes on the same filesystem, `cat` of
//! them (read-only reference), and ryll 0.3.0's way of writing packets
//! (unbuffered, one `write(2)` per pcap field).
//!
//! ```text
//! cargo bench -p e2e --bench convert -- [quick] [cold] [mib=N] [rounds=N] [mix=small]
//! ```
//!
//! * The capture (default 1024 MiB of spool, `quick`: 128 MiB) is made
//!   once with the real spool writer and cached under
//!   `target/tmp/bench-capture/`; see `e2e::bench::generate_capture` for the
//!   traffic mix.
//! * Every method runs `rounds` times (default 3, `quick` 1), interleaved
//!   (round 1 of every method, then round 2…), each after a `sync`; the
//!   table shows the best and the median. The page cache is warm (the
//!   capture is read once before the first round) unless `cold`, which
//!   drops it (`echo 3 > /proc/sys/vm/drop_caches`) before every run.
//! * Segments are read, as `spool2pcap` does by default; with
//!   `BENCH_MMAP=1` in the environment they are mapped (`--mmap`).
//! * Outputs go to the capture's filesystem, or to `/dev/null` (the
//!   library's stdout destination with file descriptor 1 pointed there).
//!   Times are until the last `write(2)` returned; the `+ sync` column adds
//!   the `sync` after it (the data reaching the disk).
//! * ryll's way is measured on a subset if the whole capture would take
//!   over 45 s, and extrapolated (labelled).
//!
//! Without `--bench` (`cargo test --benches`) it converts a 4 MiB capture
//! once per method, as a smoke test.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::bench::*;
use ryll_tools::baseline::PcapChannelWriter;
use spool::read::event::Event;
use spool2pcap::{convert, ConvertOptions, Destination, Format};

const TARGET_GBPS: f64 = 1.0;
const TARGET_CP_FRACTION: f64 = 0.5;
const TARGET_VS_UNBUFFERED: f64 = 20.0;
/// Longest the unbuffered writer may take on the whole capture before it
/// is measured on a subset instead.
const UNBUFFERED_MAX_SECS: f64 = 45.0;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Method {
    Cat,
    Cp,
    ConvertDir,
    ConvertNull,
    PcapngNull,
    PcapngFile,
    Unbuffered,
}

impl Method {
    const ALL: [Method; 7] = [
        Method::Cat,
        Method::Cp,
        Method::ConvertDir,
        Method::ConvertNull,
        Method::PcapngNull,
        Method::PcapngFile,
        Method::Unbuffered,
    ];

    fn name(self) -> &'static str {
        match self {
            Method::Cat => "`cat` spool > /dev/null (read only)",
            Method::Cp => "`cp -r` capture dir",
            Method::ConvertDir => "spool2pcap pcap, per channel (`-o DIR`)",
            Method::ConvertNull => "spool2pcap pcap, merged (`-w - > /dev/null`)",
            Method::PcapngNull => "spool2pcap pcapng, merged (`-w - > /dev/null`)",
            Method::PcapngFile => "spool2pcap pcapng, merged (`-w FILE`)",
            Method::Unbuffered => "ryll 0.3.0 way: unbuffered per packet, per channel",
        }
    }

    fn to_disk(self) -> bool {
        matches!(
            self,
            Method::Cp | Method::ConvertDir | Method::PcapngFile | Method::Unbuffered
        )
    }
}

/// One run of one method.
struct Sample {
    /// Until the work returned.
    op: Duration,
    /// Plus the `sync` after it.
    synced: Duration,
    /// Spool input bytes it covered (the whole spool, or ryll's subset).
    input: u64,
    /// Bytes it wrote.
    output: u64,
}

struct Ctx {
    capture: PathBuf,
    work: PathBuf,
    spool_bytes: u64,
    /// Fraction of every channel ryll's way converts (1 = all).
    unbuffered_fraction: f64,
}

/// Runs `f` with file descriptor 1 on `/dev/null`.
fn with_stdout_to_null<T>(f: impl FnOnce() -> T) -> T {
    use std::io::Write;
    std::io::stdout().flush().ok();
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    // SAFETY: plain descriptor juggling on descriptors we own; fd 1 is
    // restored before returning.
    let saved = unsafe { libc::dup(1) };
    assert!(saved >= 0, "dup(1)");
    unsafe { libc::dup2(null.as_raw_fd(), 1) };
    let out = f();
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    out
}

fn convert_to(ctx: &Ctx, dest: Destination, format: Format) -> u64 {
    let mut opts = ConvertOptions::new(dest.clone());
    opts.format = format;
    opts.force = true;
    opts.mmap = std::env::var_os("BENCH_MMAP").is_some();
    let report = match dest {
        Destination::Stdout => with_stdout_to_null(|| convert(&ctx.capture, &opts)),
        _ => convert(&ctx.capture, &opts),
    }
    .unwrap_or_else(|e| panic!("convert: {e}"));
    assert!(!report.has_damage(), "the test capture reads as damaged");
    assert!(report.frames() > 0);
    match dest {
        Destination::Dir(d) => tree_bytes(&d),
        Destination::File(f) => std::fs::metadata(f).map_or(0, |m| m.len()),
        Destination::Stdout => 0,
    }
}

/// ryll 0.3.0's writer: per channel, a [`PcapChannelWriter`] (ryll's
/// frames, a fresh `Vec` per frame, an unbuffered `File`), fed every data
/// record of the spool in order — the first `fraction` of each channel's
/// spool bytes. Returns the spool bytes covered.
fn unbuffered(ctx: &Ctx, out: &Path, fraction: f64) -> u64 {
    std::fs::create_dir_all(out).expect("output directory");
    let cap = spool::Capture::open(&ctx.capture).expect("open capture");
    let mut covered = 0u64;
    for (i, ch) in cap.channels().iter().enumerate() {
        let total: u64 = ch
            .segments
            .iter()
            .filter_map(|s| std::fs::metadata(&s.path).ok())
            .map(|m| m.len())
            .sum();
        let limit = (total as f64 * fraction) as u64;
        let Some(mut r) = cap.reader(&ch.name) else {
            continue;
        };
        let path = out.join(format!("{}.pcap", ch.name));
        let mut w = PcapChannelWriter::create(&path, 10001 + i as u16).expect("pcap");
        let mut done = 0u64;
        while done < limit || fraction >= 1.0 {
            match r.next_event() {
                Some(Event::Data(d)) => {
                    let ok = w.write(d.direction, d.payload, Duration::from_nanos(d.ts_ns));
                    assert!(ok, "ryll's writer refused a frame");
                    done += 24 + (d.payload.len() as u64).div_ceil(8) * 8;
                }
                Some(_) => {}
                None => break,
            }
        }
        covered += if fraction >= 1.0 { total } else { done };
    }
    covered
}

fn run(ctx: &Ctx, m: Method, cold: bool) -> Sample {
    let out = ctx.work.join("out");
    remove_dir(&out);
    sync();
    if cold && !drop_caches() {
        eprintln!("warning: could not drop the page cache");
    }
    let t = Instant::now();
    let (input, output) = match m {
        Method::Cat => {
            let files = tree_files(&ctx.capture.join("spool"));
            let st = Command::new("cat")
                .args(&files)
                .stdout(Stdio::null())
                .status()
                .expect("cat");
            assert!(st.success());
            (ctx.spool_bytes, 0)
        }
        Method::Cp => {
            let st = Command::new("cp")
                .arg("-r")
                .arg(&ctx.capture)
                .arg(&out)
                .status()
                .expect("cp");
            assert!(st.success());
            (ctx.spool_bytes, 0)
        }
        Method::ConvertDir => (
            ctx.spool_bytes,
            convert_to(ctx, Destination::Dir(out.clone()), Format::Pcap),
        ),
        Method::ConvertNull => (
            ctx.spool_bytes,
            convert_to(ctx, Destination::Stdout, Format::Pcap),
        ),
        Method::PcapngNull => (
            ctx.spool_bytes,
            convert_to(ctx, Destination::Stdout, Format::Pcapng),
        ),
        Method::PcapngFile => {
            std::fs::create_dir_all(&out).expect("output directory");
            (
                ctx.spool_bytes,
                convert_to(
                    ctx,
                    Destination::File(out.join("all.pcapng")),
                    Format::Pcapng,
                ),
            )
        }
        Method::Unbuffered => (unbuffered(ctx, &out, ctx.unbuffered_fraction), 0),
    };
    let op = t.elapsed();
    sync();
    let synced = t.elapsed();
    let output = if m == Method::Cp || m == Method::Unbuffered {
        tree_bytes(&out)
    } else {
        output
    };
    remove_dir(&out);
    Sample {
        op,
        synced,
        input,
        output,
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**MISSED**"
    }
}

fn smoke() {
    let tmp = tempfile::tempdir_in(bench_dir("convert-bench")).expect("temporary directory");
    let capture = tmp.path().join("capture");
    let stats = generate_capture(&capture, 4);
    assert_eq!(stats.dropped, 0);
    let ctx = Ctx {
        spool_bytes: spool_bytes(&capture),
        capture,
        work: tmp.path().to_path_buf(),
        unbuffered_fraction: 1.0,
    };
    for m in Method::ALL {
        let s = run(&ctx, m, false);
        assert!(s.input > 0, "{m:?}");
    }
    println!(
        "convert bench: smoke run passed (run `cargo bench -p e2e --bench convert` to measure)"
    );
}

fn main() {
    let args = Args::parse();
    if !args.benching {
        smoke();
        return;
    }
    let mib: u64 = args.number("mib", 1024, 128);
    let rounds: usize = args.number("rounds", 3, 1);
    let cold = args.has("cold");

    // `mix=small`: only small records, where per-packet costs dominate.
    let small = args.value("mix") == Some("small");
    let (capture, stats, cached) = cached_capture_mix(mib, small);
    let work = bench_dir("convert-bench");
    let spool_bytes = spool_bytes(&capture);
    let mut ctx = Ctx {
        capture,
        work,
        spool_bytes,
        unbuffered_fraction: 1.0,
    };

    // Warm the page cache (and check the capture reads).
    if !cold {
        run(&ctx, Method::Cat, false);
    }
    // How fast is ryll's way? A probe on 64 MiB decides whether the whole
    // capture is affordable.
    let probe_fraction = ((64u64 << 20) as f64 / spool_bytes as f64).min(1.0);
    ctx.unbuffered_fraction = probe_fraction;
    let probe = run(&ctx, Method::Unbuffered, false);
    let probe_rate = probe.input as f64 / probe.op.as_secs_f64();
    let full_secs = spool_bytes as f64 / probe_rate;
    ctx.unbuffered_fraction = if full_secs > UNBUFFERED_MAX_SECS {
        (15.0 / full_secs).min(1.0)
    } else {
        1.0
    };

    print_facts(
        &format!(
            "convert bench: {} round(s) per method, interleaved, {} page cache",
            rounds,
            if cold {
                "COLD (dropped before each run)"
            } else {
                "warm"
            }
        ),
        &[
            ("capture (input) dir", &ctx.capture),
            ("output dir (same filesystem)", &ctx.work),
        ],
        &[
            ("capture", describe(&stats, spool_bytes, cached)),
            (
                "cp",
                Command::new("cp")
                    .arg("--version")
                    .output()
                    .ok()
                    .and_then(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .next()
                            .map(str::to_string)
                    })
                    .unwrap_or_default(),
            ),
        ],
    );

    let mut samples: Vec<(Method, Vec<Sample>)> =
        Method::ALL.iter().map(|&m| (m, Vec::new())).collect();
    for round in 0..rounds {
        // Rotate the order, so no method always follows the same one.
        for k in 0..Method::ALL.len() {
            let i = (k + round) % Method::ALL.len();
            let m = Method::ALL[i];
            let s = run(&ctx, m, cold);
            eprintln!(
                "round {}: {:?} {:.3} s ({:.0} MB/s)",
                round + 1,
                m,
                s.op.as_secs_f64(),
                mbps(s.input, s.op)
            );
            samples[i].1.push(s);
        }
    }

    println!(
        "| method | output | spool input | runs | best s | median s | best MB/s | median MB/s | median s + sync | MB/s + sync |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut median_mbps = std::collections::HashMap::new();
    for (m, ss) in &samples {
        let input = ss[0].input;
        let op: Vec<f64> = ss.iter().map(|s| s.op.as_secs_f64()).collect();
        let synced: Vec<f64> = ss.iter().map(|s| s.synced.as_secs_f64()).collect();
        let rate = |t: f64| input as f64 / t / 1e6;
        let mut name = m.name().to_string();
        if *m == Method::Unbuffered && ctx.unbuffered_fraction < 1.0 {
            name += &format!(
                " — **subset {:.0} %, whole capture extrapolated to {:.0} s**",
                ctx.unbuffered_fraction * 100.0,
                spool_bytes as f64 / rate(median(&op)) / 1e6
            );
        }
        let output = match m {
            Method::Cat | Method::ConvertNull | Method::PcapngNull => "/dev/null".to_string(),
            _ => format!("{:.0} MB", ss[0].output as f64 / 1e6),
        };
        let sync_cols = if m.to_disk() {
            format!("{:.2} | {:.0}", median(&synced), rate(median(&synced)))
        } else {
            "– | –".into()
        };
        println!(
            "| {name} | {output} | {:.0} MB | {} | {:.3} | {:.3} | {:.0} | {:.0} | {sync_cols} |",
            input as f64 / 1e6,
            ss.len(),
            min(&op),
            median(&op),
            rate(min(&op)),
            rate(median(&op)),
        );
        median_mbps.insert(*m, (rate(median(&op)), rate(min(&op))));
    }
    let get = |m: Method| median_mbps[&m];
    let (conv, conv_best) = get(Method::ConvertDir);
    let (null, null_best) = get(Method::ConvertNull);
    let (cp, cp_best) = get(Method::Cp);
    let (unb, unb_best) = get(Method::Unbuffered);
    println!();
    println!("| target | measured: median (best) | verdict |");
    println!("|---|---|---|");
    println!(
        "| convert ≥ {TARGET_GBPS} GB/s of spool input, `-o DIR` on disk | {:.2} ({:.2}) GB/s | {} |",
        conv / 1e3,
        conv_best / 1e3,
        verdict(conv / 1e3 >= TARGET_GBPS)
    );
    println!(
        "| convert ≥ {TARGET_GBPS} GB/s of spool input, merged to /dev/null | {:.2} ({:.2}) GB/s | {} |",
        null / 1e3,
        null_best / 1e3,
        verdict(null / 1e3 >= TARGET_GBPS)
    );
    println!(
        "| convert `-o DIR` ≥ {:.0} % of `cp -r` (same filesystem, same run) | {:.0} % ({:.0} %) | {} |",
        TARGET_CP_FRACTION * 100.0,
        conv / cp * 100.0,
        conv_best / cp_best * 100.0,
        verdict(conv / cp >= TARGET_CP_FRACTION)
    );
    println!(
        "| convert `-o DIR` ≥ {TARGET_VS_UNBUFFERED:.0}× ryll 0.3.0's unbuffered writes{} | {:.1}× ({:.1}×) | {} |",
        if ctx.unbuffered_fraction < 1.0 { " (extrapolated from a subset)" } else { "" },
        conv / unb,
        conv_best / unb_best,
        verdict(conv / unb >= TARGET_VS_UNBUFFERED)
    );
    println!(
        "\nMB/s = spool input bytes (segment files) / wall time of the run; {} page cache; \
         load average at end {}.",
        if cold { "cold" } else { "warm" },
        loadavg()
    );
}
