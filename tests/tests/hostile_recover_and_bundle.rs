//! `spool2pcap recover` and the F12 bundle (`ryll_hook::bundle`) on hostile
//! capture directories: every class of issue 13 that applies to them, with
//! CRC-valid records of absurd contents among them. Whatever the capture,
//! they end (every run has a deadline), never panic, act on nothing outside
//! the capture and the named output, and say what they refused.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e::hostile::{self, write_manifest, SESSION_HEX};
use ryll_hook::bundle::{capture_traffic_pcap, write_bug_report, BugReportOptions, BundleError};
use spool::store::format::Direction::{ClientToServer as C2S, ServerToClient as S2C};
use spool::store::staging::StagingDir;
use spool2pcap::capture_builder::{simple_channel, write_segment, Seg};
use testkit::deadline::{call_within, run_within};
use testkit::files::{mkfifo, snapshot};
use testkit::text::{has_control, TERMINAL_ESCAPES as EVIL};

/// Longest anything here may take: each is over in well under a second.
const DEADLINE: Duration = Duration::from_secs(30);

/// `spool2pcap`'s exit status for a failure (its `--help`).
const EXIT_FAILURE: i32 = 3;

/// `spool2pcap recover DIR`, killed and failed if it has not ended by the
/// deadline (how a blocking open shows).
fn recover(dir: &Path) -> Output {
    run_within(
        Command::new(e2e::tools::spool2pcap_bin())
            .arg("recover")
            .arg(dir),
        DEADLINE,
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `recover` failed (`case` names the run) and said `said`.
fn assert_failed_saying(o: &Output, said: &str, case: &str) {
    assert_eq!(o.status.code(), Some(EXIT_FAILURE), "{case}: {}", text(o));
    assert!(text(o).contains(said), "{case}: {}", text(o));
}

/// A capture whose writer died: sealed segments in the capture directory,
/// the live one still staged in a private staging directory that proves
/// it belongs to the capture (as the writer makes it).
struct Crashed {
    cap: tempfile::TempDir,
    _staging_parent: tempfile::TempDir,
    staging: PathBuf,
}

impl Crashed {
    /// `main` holds two records in the capture directory (segment 0) and
    /// `staged` in its staging directory (segment 1, unsealed).
    fn new(staged: impl FnOnce(&mut Seg)) -> Crashed {
        let cap = tempfile::tempdir().unwrap();
        let staging_parent = tempfile::tempdir_in("/dev/shm").unwrap();
        let root = staging_parent.path().join("root");
        let capture = std::fs::canonicalize(cap.path()).unwrap();
        let staging = StagingDir::create(&root, SESSION_HEX, &capture)
            .unwrap()
            .path()
            .to_path_buf();
        let mut s = Seg::new("main", 0, 0);
        s.data(C2S, 10, b"m1");
        s.data(S2C, 20, b"m2");
        s.seal(false);
        write_segment(cap.path(), "main", 0, &s.finish(0));
        let mut s = Seg::new("main", 1, 2);
        staged(&mut s);
        write_staged(&staging, "main", 1, &s.finish(256));
        write_manifest(
            cap.path(),
            serde_json::json!({
                "clean_shutdown": false,
                "closed_unix_ns": null,
                "staging_dir": staging.to_str().unwrap(),
            }),
        );
        Crashed {
            cap,
            _staging_parent: staging_parent,
            staging,
        }
    }

    fn dir(&self) -> &Path {
        self.cap.path()
    }
}

fn write_staged(staging: &Path, channel: &str, index: u64, bytes: &[u8]) -> PathBuf {
    let dir = staging.join(channel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join(spool::store::format::segment_file_name(index));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A closed capture of two channels.
fn closed_capture(extra: serde_json::Value) -> tempfile::TempDir {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(C2S, 10, b"m1"), (S2C, 30, b"m2")]);
    simple_channel(cap.path(), "display", &[(S2C, 20, b"d1")]);
    write_manifest(cap.path(), extra);
    cap
}

/// Data records of `channel` as the reader gives them.
fn records(cap: &Path, channel: &str) -> Vec<Vec<u8>> {
    let c = spool::Capture::open(cap).unwrap();
    let mut r = c.reader(channel).unwrap();
    let mut out = Vec::new();
    while let Some(e) = r.next_event() {
        if let spool::read::event::Event::Data(d) = e {
            out.push(d.payload.to_vec());
        }
    }
    out
}

/// The bundle on `cap` into a new file in a new directory: the report's
/// entries (name, bytes), or why there is none — in which case nothing at
/// all is left in that directory, never a partial report.
fn bundle(cap: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    bundle_named(cap, "report.zip")
}

/// [`bundle`] into a file called `name`.
fn bundle_named(cap: &Path, name: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join(name);
    let (c, o) = (cap.to_path_buf(), out.clone());
    let r = call_within("bundle", DEADLINE, move || {
        write_bug_report(&c, &o, 1 << 20).map_err(|e| e.to_string())
    });
    let left: Vec<PathBuf> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    match r {
        Ok(_) => {
            assert_eq!(left, vec![out.clone()], "only the report is left");
            Ok(zip_entries(&out))
        }
        Err(e) => {
            assert!(left.is_empty(), "{e}: left {left:?}");
            Err(e)
        }
    }
}

/// The entries of a report zip.
fn zip_entries(zip: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut a = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut out = Vec::new();
    for i in 0..a.len() {
        let mut f = a.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.push((f.name().unwrap().to_string(), bytes));
    }
    out
}

/// The entry `name` of a report.
fn entry<'a>(entries: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &entries.iter().find(|(n, _)| n == name).expect(name).1
}

/// Packets of a classic pcap; panics if it does not read to its end.
fn pcap_packets(bytes: &[u8]) -> u64 {
    testkit::pcap::frames(bytes).len() as u64
}

// ---- recover ---------------------------------------------------------

#[test]
fn recover_moves_a_crashed_sessions_staged_records_in() {
    let c = Crashed::new(|s| {
        s.data(C2S, 30, b"staged");
    });
    let o = recover(c.dir());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("recovered 1 segments"), "{}", text(&o));
    assert!(!c.staging.exists());
    assert_eq!(
        records(c.dir(), "main"),
        [b"m1".to_vec(), b"m2".to_vec(), b"staged".to_vec()]
    );
}

/// Class 1: a manifest's `staging_dir` pointing at another private
/// directory of this user — even one laid out like staging — is refused,
/// and nothing in it is moved or deleted.
#[test]
fn recover_touches_no_staging_that_does_not_prove_it_is_the_captures() {
    let cap = closed_capture(serde_json::json!({}));
    let victim_parent = tempfile::tempdir_in("/dev/shm").unwrap();
    let root = victim_parent.path().join("root");
    let other = tempfile::tempdir().unwrap();
    // A real staging directory, but of another capture.
    let victim = StagingDir::create(&root, SESSION_HEX, other.path())
        .unwrap()
        .path()
        .to_path_buf();
    write_staged(&victim, "main", 0, &Seg::new("main", 0, 0).finish(0));
    std::fs::write(victim.join("precious"), b"keep").unwrap();
    let before = snapshot(&victim);
    for staging in [victim.clone(), root.clone(), victim_parent.path().into()] {
        write_manifest(
            cap.path(),
            serde_json::json!({
                "clean_shutdown": false,
                "closed_unix_ns": null,
                "staging_dir": staging.to_str().unwrap(),
            }),
        );
        let o = recover(cap.path());
        assert_failed_saying(&o, "refused", &format!("{staging:?}"));
        assert_eq!(snapshot(&victim), before, "{staging:?}");
    }
}

/// Class 2: staged segments are moved only into the capture: a `spool/`
/// or channel directory that is a symlink to elsewhere is refused, and
/// nothing is written through it.
#[test]
fn recover_writes_nothing_through_a_symlinked_spool_or_channel_directory() {
    for linked in ["spool", "spool/main"] {
        let c = Crashed::new(|s| {
            s.data(C2S, 30, b"staged");
        });
        let elsewhere = tempfile::tempdir().unwrap();
        let link = c.dir().join(linked);
        std::fs::rename(&link, elsewhere.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
        let before = snapshot(elsewhere.path());
        let staged = snapshot(&c.staging);
        let o = recover(c.dir());
        assert_failed_saying(&o, "symlink", linked);
        assert_eq!(snapshot(elsewhere.path()), before, "{linked}");
        // What could not be moved stays staged.
        assert_eq!(snapshot(&c.staging), staged, "{linked}");
    }
}

/// Class 3: a FIFO in place of the manifest, the staging directory's
/// `owner.json` or `lock`, or a staged segment makes recover fail (or skip
/// it), never wait.
#[test]
fn recover_never_waits_on_a_fifo() {
    let c = Crashed::new(|_| {});
    std::fs::remove_file(c.dir().join("manifest.json")).unwrap();
    mkfifo(&c.dir().join("manifest.json"));
    let o = recover(c.dir());
    assert_failed_saying(&o, "manifest.json", "a FIFO manifest");

    for planted in ["owner.json", "lock"] {
        let c = Crashed::new(|s| {
            s.data(C2S, 30, b"staged");
        });
        let _ = std::fs::remove_file(c.staging.join(planted));
        mkfifo(&c.staging.join(planted));
        let o = recover(c.dir());
        assert_failed_saying(&o, planted, planted);
    }

    let c = Crashed::new(|s| {
        s.data(C2S, 30, b"staged");
    });
    mkfifo(&c.staging.join("main/00000002.seg"));
    let o = recover(c.dir());
    assert!(o.status.code().is_some(), "{}", text(&o));
    assert!(text(&o).contains("00000002.seg"), "{}", text(&o));
}

/// Class 4: a staged segment named with the last index there can be, and
/// CRC-valid gap records whose counts add past `u64::MAX`: recover moves
/// them, and the tools read the result with saturated totals.
#[test]
fn recover_handles_indexes_and_counts_at_the_edge_of_u64() {
    let c = Crashed::new(|s| {
        s.gap_counts(40, [u64::MAX, u64::MAX], [u64::MAX, u64::MAX]);
        s.gap_counts(50, [u64::MAX, 1], [u64::MAX, 1]);
    });
    let mut last = Seg::new("main", u64::MAX, 9);
    last.data(S2C, u64::MAX, b"last");
    last.seal(true);
    write_staged(&c.staging, "main", u64::MAX, &last.finish(0));
    let o = recover(c.dir());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("recovered 2 segments"), "{}", text(&o));
    assert!(c
        .dir()
        .join("spool/main/18446744073709551615.seg")
        .is_file());
    let info = Command::new(e2e::tools::spool2pcap_bin())
        .args([OsStr::new("info"), c.dir().as_os_str()])
        .output()
        .unwrap();
    assert!(
        info.status.code().is_some_and(|c| c <= 1),
        "{}",
        text(&info)
    );
    assert!(
        text(&info).contains(&u64::MAX.to_string()),
        "{}",
        text(&info)
    );
}

/// Class 6: a staged segment spelled two ways is moved once, under the
/// writer's spelling; the other is left where it is.
#[test]
fn recover_moves_only_the_canonical_spelling_of_a_segment() {
    let c = Crashed::new(|s| {
        s.data(C2S, 30, b"staged");
    });
    let canonical = c.staging.join("main/00000001.seg");
    std::fs::copy(&canonical, c.staging.join("main/000000001.seg")).unwrap();
    let o = recover(c.dir());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("recovered 1 segments"), "{}", text(&o));
    assert!(!c.dir().join("spool/main/000000001.seg").exists());
    assert_eq!(records(c.dir(), "main").len(), 3);
}

/// Class 8: the manifest's strings reach the terminal cleaned.
#[test]
fn recover_prints_no_control_sequence_from_the_manifest() {
    let c = Crashed::new(|_| {});
    let staging = format!("{}{EVIL}", c.staging.display());
    for (field, value) in [
        ("staging_dir", serde_json::json!(staging)),
        (
            "session_id",
            serde_json::json!(format!("{SESSION_HEX}{EVIL}")),
        ),
    ] {
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(c.dir().join("manifest.json")).unwrap()).unwrap();
        m[field] = value;
        std::fs::write(c.dir().join("manifest.json"), m.to_string()).unwrap();
        let o = recover(c.dir());
        assert!(o.status.code().is_some(), "{field}");
        assert!(!has_control(&text(&o)), "{field}: {:?}", text(&o));
    }
}

/// Class 9: recover replaces a capture file by rename, never writes into
/// it: a segment hard-linked to a file elsewhere leaves that file as it
/// was.
#[test]
fn recover_never_writes_into_a_capture_file_in_place() {
    let c = Crashed::new(|s| {
        s.data(C2S, 30, b"staged");
    });
    // The staged segment has a stale copy in the capture directory, which
    // is also a hard link to a file outside it.
    let outside = c.cap.path().parent().unwrap().join(format!(
        "outside-{}",
        c.cap.path().file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&outside, b"not a segment").unwrap();
    std::fs::hard_link(&outside, c.dir().join("spool/main/00000001.seg")).unwrap();
    let o = recover(c.dir());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read(&outside).unwrap(), b"not a segment");
    std::fs::remove_file(&outside).unwrap();
    assert_eq!(records(c.dir(), "main").len(), 3);
}

/// Class 7 (and 9): recovery notes itself in the manifest; a manifest
/// already near the size limit must not become one the tools refuse.
#[test]
fn recover_leaves_a_manifest_the_tools_still_read() {
    let c = Crashed::new(|s| {
        s.data(C2S, 30, b"staged");
    });
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.dir().join("manifest.json")).unwrap()).unwrap();
    // Compact, just under the 4 MiB limit; pretty-printed it would not be.
    let n = 30_000;
    let each = (spool::store::manifest::MAX_MANIFEST_BYTES as usize - 2_000) / n - 3;
    m["errors"] = vec!["e".repeat(each); n].into();
    let bytes = serde_json::to_vec(&m).unwrap();
    assert!(bytes.len() as u64 <= spool::store::manifest::MAX_MANIFEST_BYTES);
    std::fs::write(c.dir().join("manifest.json"), bytes).unwrap();
    let o = recover(c.dir());
    assert!(o.status.code().is_some(), "{}", text(&o));
    let manifest = spool::store::manifest::Manifest::load(&c.dir().join("manifest.json"));
    assert!(manifest.is_ok(), "{}: {manifest:?}", text(&o));
}

/// Class 11: a session start past 2106 is only a number to recover.
#[test]
fn recover_takes_any_session_start() {
    let c = Crashed::new(|s| {
        s.data(C2S, u64::MAX, b"late");
    });
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.dir().join("manifest.json")).unwrap()).unwrap();
    m["session_start_unix_ns"] = u64::MAX.into();
    std::fs::write(c.dir().join("manifest.json"), m.to_string()).unwrap();
    let o = recover(c.dir());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Class 12: what is not a capture is an error, with the path named.
#[test]
fn recover_of_what_is_not_a_capture_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("missing");
    for dir in [empty.path(), missing.as_path()] {
        let o = recover(dir);
        let dir = dir.display().to_string();
        assert_failed_saying(&o, &dir, &dir);
    }
}

// ---- the bundle ---------------------------------------------------------

/// Class 3: a FIFO in place of the manifest, `metadata.json` or a segment:
/// the bundle is made (or refused) without waiting.
#[test]
fn bundle_never_waits_on_a_fifo() {
    for planted in ["manifest.json", "metadata.json", "spool/main/00000000.seg"] {
        let cap = closed_capture(serde_json::json!({}));
        let _ = std::fs::remove_file(cap.path().join(planted));
        mkfifo(&cap.path().join(planted));
        // Made or refused: `bundle` checks that it ended and left no
        // partial report.
        let _ = bundle(cap.path());
    }
}

/// Class 4: CRC-valid records of absurd contents — counts past `u64::MAX`,
/// timestamps at its edge, an index at its end — give a report whose pcap
/// reads and whose totals saturate.
#[test]
fn bundle_of_absurd_records_saturates_and_reads() {
    let cap = tempfile::tempdir().unwrap();
    let mut s = Seg::new("main", 0, 0);
    s.data(C2S, u64::MAX, b"at the end of time");
    s.gap_counts(1, [u64::MAX, u64::MAX], [u64::MAX, u64::MAX]);
    s.gap_counts(2, [u64::MAX, 1], [u64::MAX, 1]);
    s.data(S2C, 0, b"");
    s.skip_seq(u32::MAX / 2 + 7);
    s.data(S2C, 3, &[0xFF; 300]);
    s.seal(false);
    write_segment(cap.path(), "main", 0, &s.finish(0));
    let mut last = Seg::new("main", u64::MAX, 0);
    last.data(C2S, 5, b"last");
    last.seal(true);
    write_segment(cap.path(), "main", u64::MAX, &last.finish(0));
    write_manifest(cap.path(), serde_json::json!({}));

    let entries = bundle(cap.path()).unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(entry(&entries, "capture-summary.json")).unwrap();
    assert_eq!(summary["main"]["dropped_records"], u64::MAX);
    assert_eq!(summary["main"]["dropped_bytes"], u64::MAX);
    assert!(pcap_packets(entry(&entries, "traffic.pcap")) > 0);
}

/// Class 5: one flipped bit costs the bundle one record, as it costs
/// convert.
#[test]
fn bundle_of_a_damaged_capture_keeps_every_undamaged_record() {
    let cap = e2e::fixtures::damaged_capture("bitflip");
    let opts = BugReportOptions {
        budget_bytes: u64::MAX,
        ..Default::default()
    };
    let (pcap, summary) = call_within("traffic_pcap", DEADLINE, move || {
        capture_traffic_pcap(&cap, Some("display"), &opts).unwrap()
    });
    assert_eq!(pcap_packets(&pcap), summary.packets_written);
    let cap = e2e::fixtures::damaged_capture("bitflip");
    let kept = records(&cap, "display").len() as u64;
    assert!(kept > 64, "the reader resyncs: {kept}");
    assert!(
        summary.packets_written >= kept,
        "{} packets for {kept} records",
        summary.packets_written
    );
}

/// Class 6: a segment spelled two ways is reported once.
#[test]
fn bundle_reads_a_segment_spelled_two_ways_once() {
    let cap = closed_capture(serde_json::json!({}));
    std::fs::copy(
        cap.path().join("spool/main/00000000.seg"),
        cap.path().join("spool/main/000000000.seg"),
    )
    .unwrap();
    let entries = bundle(cap.path()).unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(entry(&entries, "capture-summary.json")).unwrap();
    assert_eq!(summary["main"]["records"], 2);
}

/// Classes 7 and 8: a manifest and metadata of huge, hostile strings give
/// a report whose every entry reads, and whose text carries no control
/// character (the JSON escapes what the metadata holds).
#[test]
fn bundle_of_hostile_strings_reads_and_is_clean() {
    let cap = closed_capture(hostile::hostile_manifest_strings().into());
    let mut metadata = ryll_hook::metadata::ryll_metadata("host", 5900, None);
    metadata.ryll_version = Some(format!("0.3{EVIL}"));
    metadata.target_host = Some(format!("{EVIL}{}", "x".repeat(30_000)));
    metadata.capture_started = Some(EVIL.to_string());
    std::fs::write(
        cap.path().join("metadata.json"),
        serde_json::to_vec(&metadata).unwrap(),
    )
    .unwrap();
    let entries = bundle(cap.path()).unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(entry(&entries, "metadata.json")).unwrap();
    // Kept, cleaned.
    assert_eq!(
        report["ryll_version"],
        "0.3\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}[2J\u{FFFD}31m"
    );
    for (name, bytes) in entries {
        if name.ends_with(".pcap") {
            assert!(pcap_packets(&bytes) > 0);
        } else {
            let text = String::from_utf8(bytes).unwrap();
            assert!(!has_control(&text), "{name}");
            serde_json::from_str::<serde_json::Value>(&text).unwrap();
        }
    }
}

/// Class 9: the report never replaces a file of the capture.
#[test]
fn bundle_never_overwrites_an_input() {
    let cap = closed_capture(serde_json::json!({}));
    let before = snapshot(cap.path());
    for input in ["spool/main/00000000.seg", "manifest.json"] {
        let out = cap.path().join(input);
        let r = write_bug_report(cap.path(), &out, 1 << 20);
        assert!(matches!(r, Err(BundleError::Exists(_))), "{input}: {r:?}");
    }
    assert_eq!(snapshot(cap.path()), before);
}

/// Class 11: a session start after 2106 still makes a report.
#[test]
fn bundle_takes_any_session_start() {
    let cap = tempfile::tempdir().unwrap();
    let mut s = Seg::new("main", 0, 0).with_session_start(u64::MAX);
    s.data(C2S, u64::MAX, b"late");
    s.seal(true);
    write_segment(cap.path(), "main", 0, &s.finish(0));
    write_manifest(
        cap.path(),
        serde_json::json!({"session_start_unix_ns": u64::MAX}),
    );
    let entries = bundle(cap.path()).unwrap();
    assert!(pcap_packets(entry(&entries, "traffic.pcap")) > 0);
}

/// Class 12: what is not a capture (no `spool/`, a symlinked one, no
/// directory at all) is an error and leaves no report behind.
#[test]
fn bundle_of_what_is_not_a_capture_is_an_error_and_leaves_nothing() {
    let no_spool = tempfile::tempdir().unwrap();
    write_manifest(no_spool.path(), serde_json::json!({}));
    let linked = closed_capture(serde_json::json!({}));
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::rename(linked.path().join("spool"), elsewhere.path().join("spool")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("spool"), linked.path().join("spool"))
        .unwrap();
    let missing = no_spool.path().join("missing");
    for dir in [no_spool.path(), linked.path(), missing.as_path()] {
        assert!(bundle(dir).is_err(), "{dir:?}");
    }
}

/// A report name as long as a file system takes (254 and 255 bytes) is
/// written: the temporary file beside it has a short name of its own.
#[test]
fn a_bug_report_may_have_the_longest_name_a_file_system_takes() {
    let cap = closed_capture(serde_json::json!({}));
    for len in [254, 255] {
        let name = format!("{}.zip", "b".repeat(len - 4));
        let entries = bundle_named(cap.path(), &name).unwrap();
        assert!(pcap_packets(entry(&entries, "traffic.pcap")) > 0);
    }
}
