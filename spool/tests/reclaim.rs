//! Staging left in memory by killed sessions (and by movers that died) is
//! reclaimed by the next session on the same staging root, without anyone
//! asking; and a staging directory that does not prove it belongs to a
//! capture is never touched, whatever the capture's manifest claims.

mod common;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use spool::store::recover::RecoverError;
use spool::{Direction, Manifest, Spool, SpoolConfig, StagingChoice};
use testkit::child;
use testkit::files::snapshot;

const CHILD_ENV: &str = "SPOOL_RECLAIM_TEST_CHILD";

/// Records the killed writer acknowledges before it waits to be killed.
const CHILD_RECORDS: u64 = 3000;

fn record(i: u64) -> Vec<u8> {
    let mut v = payload(i as usize, 500);
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn manifest(capture: &Path) -> Manifest {
    Manifest::load(&capture.join("manifest.json")).unwrap()
}

fn assert_records(capture: &Path, channel: &str, n: u64) {
    let got = read_channel(capture, channel);
    assert_eq!(got.records.len() as u64, n, "{channel}: record count");
    for (i, r) in got.records.iter().enumerate() {
        assert!(r.data == record(i as u64), "record {i} differs");
    }
}

/// Waits until `capture`'s manifest no longer names a staging directory
/// and `staging` is gone (removed after the manifest is written).
fn wait_reclaimed(capture: &Path, staging: &Path) -> Manifest {
    let start = Instant::now();
    loop {
        let m = manifest(capture);
        if m.staging_dir.is_none() && !staging.exists() {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} was never reclaimed",
            capture.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In the child: write, say so, and wait to be killed.
fn child(capture: PathBuf, staging: PathBuf) -> ! {
    let spool = Spool::create(
        SpoolConfig::new(capture)
            .staging(StagingChoice::Root(staging))
            .segment_bytes(64 << 10)
            .channels(&["display"]),
    )
    .unwrap();
    for i in 0..CHILD_RECORDS {
        append_kept(&spool, "display", Direction::ServerToClient, i, &record(i));
    }
    let mut out = std::io::stdout().lock();
    // On a line of its own: the harness's "test … " has no newline yet.
    writeln!(out, "\nchild-ready").unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_new_session_reclaims_a_killed_writers_staging() {
    if let Some((c, s)) = child::passed_dirs(CHILD_ENV) {
        child(c, s);
    }
    let dirs = Dirs::new();
    let mut writer = child::spawn_writer(
        CHILD_ENV,
        "a_new_session_reclaims_a_killed_writers_staging",
        &dirs.capture(),
        &dirs.staging_root(),
        Stdio::null(),
    );
    let ready = writer
        .lines
        .any(|l| l.is_ok_and(|l| l.trim() == "child-ready"));
    assert!(ready);
    writer.kill();

    let m = manifest(&dirs.capture());
    assert!(!m.clean_shutdown);
    let staging = PathBuf::from(m.staging_dir.clone().unwrap());
    assert!(staging.is_dir(), "the killed writer left nothing staged");

    // Any new session on the same staging root brings it home.
    let other = dirs.capture_parent.path().join("other");
    let spool =
        Spool::create(SpoolConfig::new(&other).staging(StagingChoice::Root(dirs.staging_root())))
            .unwrap();
    let m = wait_reclaimed(&dirs.capture(), &staging);
    assert!(!m.clean_shutdown && !m.pending_move, "{m:?}");
    assert!(!staging.exists(), "{} is still there", staging.display());
    assert_records(&dirs.capture(), "display", CHILD_RECORDS);
    spool.close().unwrap();
}

#[test]
fn a_new_session_finishes_a_pending_move_whose_mover_died() {
    let dirs = Dirs::new();
    let spool =
        Spool::create(dirs.config().segment_bytes(64 << 10).channels(&["display"])).unwrap();
    spool.hold_background(true);
    spool.without_mover();
    let n = 150;
    for i in 0..n {
        assert!(spool.append_at("display", Direction::ServerToClient, i, &record(i)));
    }
    spool.close_within(Duration::ZERO).unwrap();
    drop(spool);
    let m = manifest(&dirs.capture());
    assert!(m.clean_shutdown && m.pending_move, "{m:?}");
    let staging = PathBuf::from(m.staging_dir.clone().unwrap());

    let other = dirs.capture_parent.path().join("other");
    let spool =
        Spool::create(SpoolConfig::new(&other).staging(StagingChoice::Root(dirs.staging_root())))
            .unwrap();
    let m = wait_reclaimed(&dirs.capture(), &staging);
    assert!(m.clean_shutdown && !m.pending_move, "{m:?}");
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert!(!staging.exists());
    assert_records(&dirs.capture(), "display", n);
    spool.close().unwrap();
}

/// A private directory dressed up as a crashed session's staging: a lock,
/// an `owner.json`, and a segment file.
fn decoy(dir: &Path, owner: &str, segment: &[u8]) {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir.join("display"))
        .unwrap();
    std::fs::write(dir.join("lock"), b"").unwrap();
    std::fs::write(dir.join("owner.json"), owner).unwrap();
    std::fs::write(dir.join("display/00000000.seg"), segment).unwrap();
    std::fs::write(dir.join("display/00000001.seg"), segment).unwrap();
}

/// Points the capture's manifest at `staging`, as a crashed session's would.
fn point_manifest_at(capture: &Path, staging: &Path) {
    let mut m = manifest(capture);
    m.clean_shutdown = false;
    m.staging_dir = Some(staging.to_string_lossy().into_owned());
    std::fs::write(
        capture.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_manifest_pointing_at_foreign_staging_moves_and_deletes_nothing() {
    let dirs = Dirs::new();
    let spool = Spool::create(dirs.config().segment_bytes(64 << 10)).unwrap();
    for i in 0..10 {
        spool.append_at("display", Direction::ServerToClient, i, &record(i));
    }
    spool.close().unwrap();
    let capture = std::fs::canonicalize(dirs.capture()).unwrap();
    let segment = std::fs::read(&capture_segments(&capture)[0]).unwrap();
    let session = manifest(&capture).session_id;
    let md = std::fs::metadata(&capture).unwrap();

    let victims = tempfile::tempdir_in("/dev/shm").unwrap();
    let root = victims.path().join("root");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .unwrap();
    let this = capture.to_string_lossy().into_owned();
    let cases = [
        // Any private directory of this user.
        (
            root.join("precious"),
            r#"{"capture_dir": "/elsewhere", "pid": 1}"#.to_string(),
        ),
        // Named as this session's, but owned by another capture.
        (
            root.join(&session),
            r#"{"capture_dir": "/elsewhere", "pid": 1}"#.to_string(),
        ),
        // Naming this capture, but a directory that is not this one (the
        // path was replaced since).
        (
            victims.path().join("root2").join(&session),
            format!(
                r#"{{"capture_dir": {this:?}, "pid": 1, "capture_dev": {}, "capture_ino": {}}}"#,
                md.dev(),
                md.ino() + 1
            ),
        ),
        // Everything right but the name.
        (
            victims.path().join("root3").join("not-the-session"),
            format!(
                r#"{{"capture_dir": {this:?}, "pid": 1, "capture_dev": {}, "capture_ino": {}}}"#,
                md.dev(),
                md.ino()
            ),
        ),
    ];
    for (victim, owner) in &cases {
        decoy(victim, owner, &segment);
        let before = snapshot(victim);
        let spool_before = snapshot(&capture.join("spool"));
        point_manifest_at(&capture, victim);

        let err = spool::store::recover::recover(&capture).unwrap_err();
        assert!(
            matches!(err, RecoverError::Staging(_)),
            "{}: {err}",
            victim.display()
        );
        // A new session's reclaim on that root refuses too.
        for r in spool::store::recover::recover_abandoned(victim.parent().unwrap()) {
            assert!(matches!(r, Err(RecoverError::Staging(_))), "{r:?}");
        }
        assert_eq!(snapshot(victim), before, "{} was touched", victim.display());
        assert_eq!(snapshot(&capture.join("spool")), spool_before);
        assert_eq!(
            manifest(&capture).staging_dir.as_deref(),
            Some(victim.to_str().unwrap())
        );
    }

    // The genuine article is accepted: the same evidence, right.
    let genuine = victims.path().join("root4").join(&session);
    decoy(
        &genuine,
        &format!(
            r#"{{"capture_dir": {this:?}, "pid": 1, "capture_dev": {}, "capture_ino": {}}}"#,
            md.dev(),
            md.ino()
        ),
        &segment,
    );
    point_manifest_at(&capture, &genuine);
    let report = spool::store::recover::recover(&capture).unwrap();
    assert_eq!(report.segments, 2);
    assert!(!genuine.exists());
}
