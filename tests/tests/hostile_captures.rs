//! The real capture with a hostile manifest: whatever its strings, every
//! pcapng spool2pcap writes opens in tshark and capinfos, and what they show
//! of the capture carries no terminal control sequence. And captures built
//! to cost time or memory ([`e2e::hostile`]): every reading command, and
//! the F12 bundle, finishes within a deadline and within the memory bound
//! the security model states (spool2pcap/README.md), without a signal.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::hostile::{self, measure, Cost};
use e2e::tools::{spool2pcap_bin, tshark};
use testkit::text::{has_control, TERMINAL_ESCAPES as EVIL};

/// The shipped capture, its manifest rewritten by a stranger: a session id
/// of 70,000 characters with escape sequences, thousands of trimmed
/// entries for channels that do not exist, long writer errors.
fn hostile_capture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    e2e::fixtures::copy_tree(&e2e::fixtures::shipped_capture(), dir.path()).unwrap();
    let path = dir.path().join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let fields = m.as_object_mut().unwrap();
    fields.extend(hostile::hostile_manifest_strings());
    fields.insert("staging_dir".into(), format!("/nowhere{EVIL}").into());
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    dir
}

fn every_pcapng_of_a_hostile_manifest_opens_in_tshark() {
    let cap = hostile_capture();
    let out = tempfile::tempdir().unwrap();
    let runs: [&[&str]; 3] = [
        &["-w", "all.pcapng"],
        &["-o", "dir"],
        &["--follow", "-w", "live.pcapng"],
    ];
    for args in runs {
        let o = Command::new(spool2pcap_bin())
            .arg("convert")
            .arg(cap.path())
            .args(args)
            .args(["--format", "pcapng"])
            .current_dir(out.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code().is_some_and(|c| c <= 1), "{args:?}: {err}");
        assert!(!has_control(&err), "{args:?}: {err:?}");
    }
    let files = [
        "all.pcapng",
        "live.pcapng",
        "dir/main.pcapng",
        "dir/display.pcapng",
        "dir/cursor.pcapng",
        "dir/inputs.pcapng",
    ];
    for name in files {
        let file = out.path().join(name);
        let f = file.to_string_lossy();
        let frames = tshark(&["-r", &f, "-T", "fields", "-e", "frame.number"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(frames.lines().count() > 10, "{name}: {frames}");
        let o = Command::new("capinfos").arg(&*f).output().unwrap();
        let info = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "capinfos {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(info.contains("ryll capture of session"), "{name}: {info}");
        assert!(!has_control(&info), "{name}: {info:?}");
    }
}

fn info_of_a_hostile_manifest_prints_no_control_sequence() {
    let cap = hostile_capture();
    for json in [false, true] {
        let mut cmd = Command::new(spool2pcap_bin());
        cmd.arg("info").arg(cap.path());
        if json {
            cmd.arg("--json");
        }
        let o = cmd.output().unwrap();
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.contains("boom"), "{text}");
        assert!(!has_control(&text), "{text:?}");
        // Escaped in JSON text, the strings themselves are clean too.
        if json {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(!has_control(v["session_id"].as_str().unwrap()));
            for e in v["writer_errors"].as_array().unwrap() {
                assert!(!has_control(e.as_str().unwrap()), "{e}");
            }
        }
    }
}

/// The peak memory bound of the security model (spool2pcap/README.md).
const PEAK_RSS_BOUND: u64 = 256 << 20;

/// Far beyond what the inputs below take when reading is linear (well
/// under a second each in a release build), far below what they took
/// when it was not (minutes in a debug build).
const DEADLINE: Duration = Duration::from_secs(60);

/// The commands a capture is read by, as run on `cap`: `info`, `verify`,
/// `convert -w`, `convert --follow -w`, and the bug report (this test
/// binary re-run as `--bundle-child`, so that its memory is its own).
fn readers(cap: &Path, out: &Path) -> Vec<(&'static str, Command)> {
    let tool = |args: &[&str]| {
        let mut c = Command::new(spool2pcap_bin());
        c.args(args).arg(cap).current_dir(out);
        c
    };
    let mut bundle = Command::new(std::env::current_exe().unwrap());
    bundle
        .arg("--bundle-child")
        .arg(cap)
        .arg(out.join("report.zip"));
    vec![
        ("info", tool(&["info"])),
        ("verify", tool(&["verify"])),
        ("convert", tool(&["convert", "-w", "all.pcap"])),
        ("follow", tool(&["convert", "--follow", "-w", "live.pcap"])),
        ("bundle", bundle),
    ]
}

/// Runs every reader on the capture `make` builds; each must end by
/// itself within [`DEADLINE`] and [`PEAK_RSS_BOUND`] with an exit code in
/// `codes` (the bundle: 0, or 1 for a capture it cannot report on).
/// Returns what each cost.
fn bounded(make: impl FnOnce(&Path), codes: &[i32]) -> Vec<(&'static str, Cost)> {
    let dir = tempfile::tempdir().unwrap();
    bounded_on(&dir.path().join("cap"), make, codes)
}

/// [`bounded`] with the capture made at `cap` (and left there), the
/// outputs beside it.
fn bounded_on(cap: &Path, make: impl FnOnce(&Path), codes: &[i32]) -> Vec<(&'static str, Cost)> {
    make(cap);
    let out = cap.parent().unwrap();
    let mut costs = Vec::new();
    for (name, cmd) in readers(cap, out) {
        let c = measure(&cmd, DEADLINE);
        assert!(!c.timed_out, "{name}: over {DEADLINE:?}");
        let codes = if name == "bundle" { &[0, 1][..] } else { codes };
        assert!(
            c.code.is_some_and(|code| codes.contains(&code)),
            "{name}: {c:?}, want an exit code in {codes:?}"
        );
        assert!(c.peak_rss <= PEAK_RSS_BOUND, "{name}: {c:?}");
        costs.push((name, c));
    }
    costs
}

fn a_resync_flood_costs_time_linear_in_its_size() {
    // Before: 25 s in a release build at 4 MiB, quadratic.
    bounded(|d| hostile::resync_flood_capture(d, 4 << 20), &[1]);
    // The same in one block of a few hundred bytes on disk.
    bounded(|d| hostile::compressed_flood_capture(d, 8 << 20), &[1]);
}

fn inflating_blocks_are_damage_and_cost_little() {
    // 1.2 MB of blocks that each inflate to 8 MiB of zeroes: before,
    // tens of seconds and no damage reported.
    bounded(|d| hostile::inflating_capture(d, 1_200_000), &[1]);
}

fn followers_scale_with_channels_and_missing_segments() {
    bounded(|d| hostile::many_channels_capture(d, 3_000), &[0]);
    bounded(|d| hostile::every_other_missing_capture(d, 3_000), &[1]);
}

fn memory_is_bounded_on_sparse_segments_and_gap_floods() {
    // Three segments of 1 GiB each, a few KB on disk: before, 3 GB.
    bounded(|d| hostile::sparse_capture(d, 3, 1 << 30), &[0, 1]);
    // Millions of gap records from a few hundred KB: before, the follower
    // collected them all in one batch (the bench has 3 GiB of them).
    bounded(|d| hostile::gap_flood_capture(d, 1, 256 << 20), &[0, 1]);
}

/// Channels that each sit in a compressed block of the largest size at
/// once (24 here, 8 MiB decoded each, a few KB on disk): before, a merge
/// held every block and a zstd window beside it, 16 MiB a channel (1.6 GB
/// for 100), and `--follow` kept each channel's batch room (2.4 GB). Now
/// the merge drains a channel past its budget, says so, and loses nothing.
fn channels_in_large_blocks_at_once_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap");
    bounded_on(&cap, |d| hostile::block_channels_capture(d, 24), &[0]);
    let out = Command::new(spool2pcap_bin())
        .args(["convert", "-w"])
        .arg(dir.path().join("again.pcap"))
        .arg(&cap)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("written partly out of time order"),
        "{stderr}"
    );
}

/// Five million empty data records from a few hundred KB on disk: the
/// F12 bundle indexes the newest of them only
/// ([`spool2pcap::pipeline::excerpt::MAX_INDEXED_RECORDS`], at most 64 MiB)
/// and stays within half the bound the readers share, where it once held
/// 24 bytes for each record (230 MB here; 2 GB from a 155 KB capture).
/// Only the bundle runs: `convert` of them is 370 MB of pcap, linear and
/// bounded as the gap flood shows.
fn the_bundle_of_millions_of_tiny_records_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap");
    hostile::data_flood_capture(&cap, 1, 128 << 20);
    let (name, cmd) = readers(&cap, dir.path()).pop().unwrap();
    assert_eq!(name, "bundle");
    let c = measure(&cmd, DEADLINE);
    assert!(!c.timed_out, "bundle: over {DEADLINE:?}");
    assert_eq!(c.code, Some(0), "bundle: {c:?}");
    assert!(c.peak_rss <= PEAK_RSS_BOUND / 2, "bundle: {c:?}");
}

/// What reading a capture whose channels hold only small records may take,
/// however many bytes they hold: a window per channel (1 MiB at most), one
/// record copied per channel when merging, the first damaged ranges kept in
/// detail, output buffers (spool2pcap/README.md, *Security model*); and
/// for `--follow`, its batch of at most 64 MiB on top.
const SMALL_RECORDS_RSS_BOUND: u64 = 64 << 20;

fn memory_does_not_grow_with_segment_bytes_or_damage() {
    // Three channels of 32 MiB of real records, merged: a reader that held
    // each channel's segment whole took about 100 MiB.
    let costs = bounded(|d| hostile::dense_channels_capture(d, 3, 32 << 20), &[0]);
    // A damaged range every 48 bytes, 5,000 of them: a reader that kept
    // every one took memory in proportion.
    let flood = bounded(|d| hostile::damage_flood_capture(d, 256 << 10), &[1]);
    for (name, c) in costs.iter().chain(&flood) {
        let bound = match *name {
            "bundle" => continue,
            "follow" => SMALL_RECORDS_RSS_BOUND + (64 << 20),
            _ => SMALL_RECORDS_RSS_BOUND,
        };
        assert!(c.peak_rss <= bound, "{name}: {c:?}");
    }
}

/// Past the first ranges kept in detail, damage is still counted:
/// `info` and `verify` give the same exact totals, and a conversion
/// prints a few lines and how many more, not a line per range.
fn damage_past_the_detailed_list_is_counted_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap");
    hostile::damage_flood_capture(&cap, 256 << 10);
    let json = |cmd: &str| -> serde_json::Value {
        let o = Command::new(spool2pcap_bin())
            .args([cmd, "--json"])
            .arg(&cap)
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{cmd} --json: {e}"))
    };
    let info = json("info");
    let main = &info["channels"][0];
    let regions = main["damage_count"].as_u64().unwrap();
    let listed = main["damage"].as_array().unwrap().len() as u64;
    assert!(regions > 4000, "{regions} regions counted");
    assert_eq!(listed, spool::read::event::MAX_DAMAGE_KEPT as u64);
    let verdict = json("verify");
    assert_eq!(
        verdict["damaged_regions"].as_u64(),
        Some(regions),
        "{verdict}"
    );

    let o = Command::new(spool2pcap_bin())
        .args(["convert", "-w", "-"])
        .arg(&cap)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines = stderr.lines().filter(|l| l.contains("damage:")).count();
    assert!(lines <= 21, "{lines} damage lines");
    let more = format!("{} more regions", regions - 20);
    assert!(stderr.contains(&more), "no {more:?} in {stderr}");
    assert!(
        stderr.contains(&format!("{regions} damaged regions skipped")),
        "{stderr}"
    );
}

fn a_too_large_segment_is_refused_by_convert_and_follow_alike() {
    bounded(|d| hostile::too_large_capture(d, 1 << 40), &[1]);
}

/// A segment cut short while `convert` reads it: the output is a pipe
/// left unread until the segment has been truncated, so `convert` is
/// blocked in the middle of the segment when it happens.
fn a_segment_truncated_while_read_kills_no_reader() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap");
    let mut s = spool2pcap::capture_builder::Seg::new("main", 0, 0);
    let payload = vec![0x5au8; 1000];
    for i in 0..20_000u64 {
        s.data(spool::Direction::ServerToClient, i, &payload);
    }
    s.seal(true);
    let seg = spool2pcap::capture_builder::write_segment(&cap, "main", 0, &s.finish(0));
    hostile::write_manifest(&cap, serde_json::json!({}));
    let mut child = Command::new(spool2pcap_bin())
        .args(["convert", "-w", "-"])
        .arg(&cap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    // The first bytes: the segment is open and being read.
    let mut first = [0u8; 4096];
    out.read_exact(&mut first).unwrap();
    hostile::set_file_len(&seg, 4096);
    std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "convert of a segment cut short: {status:?}"
    );
}

/// The `--bundle-child` mode of this binary: the F12 bug report of
/// `args[2]` written to `args[3]`.
fn bundle_child(args: &[String]) -> std::process::ExitCode {
    let (cap, out) = (PathBuf::from(&args[2]), PathBuf::from(&args[3]));
    let budget = ryll_hook::bundle::DEFAULT_BUDGET_BYTES;
    match ryll_hook::bundle::write_bug_report(&cap, &out, budget) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::from(1),
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bundle-child") {
        return bundle_child(&args);
    }
    needs::run(vec![
        needs::test!(a_resync_flood_costs_time_linear_in_its_size),
        needs::test!(inflating_blocks_are_damage_and_cost_little),
        needs::test!(followers_scale_with_channels_and_missing_segments),
        needs::test!(memory_is_bounded_on_sparse_segments_and_gap_floods),
        needs::test!(the_bundle_of_millions_of_tiny_records_is_bounded),
        needs::test!(channels_in_large_blocks_at_once_are_bounded),
        needs::test!(memory_does_not_grow_with_segment_bytes_or_damage),
        needs::test!(a_too_large_segment_is_refused_by_convert_and_follow_alike),
        needs::test!(damage_past_the_detailed_list_is_counted_not_listed),
        needs::test!(a_segment_truncated_while_read_kills_no_reader),
        needs::test!(
            every_pcapng_of_a_hostile_manifest_opens_in_tshark,
            needs::TSHARK,
            needs::CAPINFOS
        ),
        needs::test!(info_of_a_hostile_manifest_prints_no_control_sequence),
    ])
}
