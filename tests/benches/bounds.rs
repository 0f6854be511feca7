//! What hostile captures cost to read: wall time and peak memory of `info`,
//! `verify`, `convert -w`, `convert --follow -w` and the F12 bundle
//! (`ryll_hook::bundle::write_bug_report`, in a child process) on each
//! generator of [`e2e::hostile`], at the sizes the security model states
//! its bounds for (README.md, *Security model*).
//!
//! ```text
//! cargo bench -p e2e --bench bounds -- [quick] [case=NAME] [cmd=NAME] [timeout=SECS] [keep=DIR]
//!     [channels=N] [segments=N]
//! SPOOL2PCAP=/path/to/other/spool2pcap cargo bench -p e2e --bench bounds
//! ```
//!
//! `SPOOL2PCAP` measures another build (the one before a change, say); the
//! bundle is always this build's. Each command runs once, killed after
//! `timeout` seconds (default 120). Peak RSS is the kernel's `ru_maxrss`,
//! what `/usr/bin/time -v` prints. Without `--bench` (`cargo test
//! --benches`) it runs the smallest case once, as a smoke test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::bench::Args;
use e2e::hostile::{self, measure, Cost};

const MB: usize = 1_000_000;

struct Case {
    name: String,
    make: Box<dyn Fn(&Path)>,
}

fn case(name: &str, make: impl Fn(&Path) + 'static) -> Case {
    Case {
        name: name.to_string(),
        make: Box::new(make),
    }
}

fn cases(args: &Args, quick: bool) -> Vec<Case> {
    let sizes: &[usize] = if quick {
        &[MB]
    } else {
        &[MB, 10 * MB, 100 * MB]
    };
    let mut v = Vec::new();
    for &n in sizes {
        v.push(case(&format!("resync-flood-{}MB", n / MB), move |d| {
            hostile::resync_flood_capture(d, n)
        }));
        v.push(case(&format!("inflating-blocks-{}MB", n / MB), move |d| {
            hostile::inflating_capture(d, n)
        }));
    }
    v.push(case("plain-256MB", |d| hostile::plain_capture(d, 256 * MB)));
    v.push(case("compressed-flood-8MiB", |d| {
        hostile::compressed_flood_capture(d, 8 << 20)
    }));
    v.push(case("gap-flood-3x1GiB", |d| {
        hostile::gap_flood_capture(d, 3, 1 << 30)
    }));
    v.push(case("sparse-3x1GiB", |d| {
        hostile::sparse_capture(d, 3, 1 << 30)
    }));
    v.push(case("dense-8x64MiB", |d| {
        hostile::dense_channels_capture(d, 8, 64 << 20)
    }));
    v.push(case("damage-flood-4MiB", |d| {
        hostile::damage_flood_capture(d, 4 << 20)
    }));
    v.push(case("too-large-1TB", |d| {
        hostile::too_large_capture(d, 1 << 40)
    }));
    let channels: usize = args.number("channels", 10_000, 2_000);
    let segments: u64 = args.number("segments", 100_000, 4_000);
    v.push(case(&format!("channels-{channels}"), move |d| {
        hostile::many_channels_capture(d, channels)
    }));
    let blocks: usize = args.number("block-channels", 1_000, 100);
    v.push(case(&format!("block-channels-{blocks}"), move |d| {
        hostile::block_channels_capture(d, blocks)
    }));
    v.push(case(&format!("every-other-missing-{segments}"), move |d| {
        hostile::every_other_missing_capture(d, segments)
    }));
    v
}

const COMMANDS: [&str; 6] = [
    "info",
    "verify",
    "convert",
    "convert-mmap",
    "follow",
    "bundle",
];

fn command(which: &str, bin: &Path, cap: &Path, out: &Path) -> Command {
    let mut c;
    match which {
        "bundle" => {
            c = Command::new(std::env::current_exe().unwrap());
            c.arg("--bundle-child").arg(cap).arg(out.join("report.zip"));
        }
        "convert" | "convert-mmap" | "follow" => {
            c = Command::new(bin);
            // To standard output, discarded: no disk spent on the pcap.
            c.arg("convert").arg(cap).args(["-w", "-"]);
            match which {
                "follow" => c.arg("--follow"),
                "convert-mmap" => c.arg("--mmap"),
                _ => &mut c,
            };
        }
        _ => {
            c = Command::new(bin);
            c.arg(which).arg(cap);
        }
    }
    c
}

fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    e2e::bench::tree_files(dir)
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn row(case: &str, disk: u64, cmd: &str, c: &Cost) {
    let end = match (c.timed_out, c.code) {
        (true, _) => "timeout".to_string(),
        (false, Some(code)) => format!("exit {code}"),
        (false, None) => "signal".to_string(),
    };
    println!(
        "| {case} | {:.1} | {cmd} | {:.2} | {:.1} | {end} |",
        disk as f64 / 1e6,
        c.wall.as_secs_f64(),
        c.peak_rss as f64 / (1 << 20) as f64,
    );
}

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("--bundle-child") {
        let (cap, out) = (PathBuf::from(&raw[2]), PathBuf::from(&raw[3]));
        let r = ryll_hook::bundle::write_bug_report(
            &cap,
            &out,
            ryll_hook::bundle::DEFAULT_BUDGET_BYTES,
        );
        std::process::exit(i32::from(r.is_err()));
    }
    let args = Args::parse();
    let quick = args.quick || !args.benching;
    let timeout = Duration::from_secs(args.number("timeout", 120, 120));
    let bin = std::env::var_os("SPOOL2PCAP")
        .map(PathBuf::from)
        .unwrap_or_else(e2e::tools::spool2pcap_bin);
    println!("spool2pcap: {}", bin.display());
    println!("| case | disk MB | command | wall s | peak RSS MiB | end |");
    println!("|---|---|---|---|---|---|");
    for c in cases(&args, quick) {
        if args.value("case").is_some_and(|n| !c.name.contains(n)) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let cap = match args.value("keep") {
            // Built where asked, and left there, for a look by hand.
            Some(keep) => Path::new(keep).join(&c.name),
            None => dir.path().join("cap"),
        };
        (c.make)(&cap);
        let disk = disk_bytes(&cap);
        for cmd in COMMANDS {
            if args.value("cmd").is_some_and(|n| n != cmd) {
                continue;
            }
            let out = tempfile::tempdir().unwrap();
            let cost = measure(&command(cmd, &bin, &cap, out.path()), timeout);
            row(&c.name, disk, cmd, &cost);
        }
        if !args.benching {
            break;
        }
    }
}
