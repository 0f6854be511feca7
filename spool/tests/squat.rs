//! One local user cannot block or read another's captures by squatting
//! where the staging directories go: a staging root that another user
//! made (in a shared directory such as `/dev/shm`), or that is a symlink,
//! is left alone, and the session stages in a fresh private directory
//! beside it, with a warning; recovery finds it there all the same.
//!
//! The squats are made inside a private temporary directory on tmpfs,
//! never in `/dev/shm` itself. Giving a directory to another user (uid
//! 65534) needs root: without it the harness (`needs`) reports those tests
//! ignored, and under `CI=true` failed.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use needs::ROOT;
use spool::{BackgroundError, Direction, Spool, SpoolConfig, StagingChoice};

/// The user the squats belong to.
const OTHER_UID: u32 = 65534;

/// `<dirs' tmpfs parent>/staging`, made by another user, mode 0755.
fn squat(dirs: &Dirs) -> PathBuf {
    let root = dirs.staging_root();
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&root, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    root
}

/// The squatted directory is as its owner left it: theirs, 0755, empty.
fn assert_untouched(squat: &Path) {
    let md = std::fs::symlink_metadata(squat).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.uid(), OTHER_UID);
    assert_eq!(md.mode() & 0o7777, 0o755);
    assert_eq!(std::fs::read_dir(squat).unwrap().count(), 0);
}

/// The fallback root a session's staging directory is in, checked to be
/// private to this user and beside `squat`.
fn fallback_of(spool: &Spool, squat: &Path) -> PathBuf {
    let root = spool.staging_dir().parent().unwrap().to_path_buf();
    assert_eq!(root.parent(), squat.parent());
    assert!(
        spool::store::staging::is_fallback_root(&root),
        "{}",
        root.display()
    );
    let md = std::fs::symlink_metadata(&root).unwrap();
    assert_eq!(md.uid(), spool::store::fsutil::current_uid());
    assert_eq!(md.mode() & 0o777, 0o700);
    root
}

fn staging_warning(spool: &Spool) -> String {
    spool
        .errors()
        .iter()
        .find_map(|e| match e {
            BackgroundError::StagingFallback(w) => Some(w.clone()),
            _ => None,
        })
        .expect("a warning that the staging root was not used")
}

fn config(dirs: &Dirs) -> SpoolConfig {
    dirs.config().segment_bytes(64 << 10).channels(&["display"])
}

fn records(spool: &Spool, n: u64) {
    for i in 0..n {
        let data = payload(i as usize, 700);
        append_kept(spool, "display", Direction::ServerToClient, i, &data);
    }
}

fn another_users_staging_root_is_never_used() {
    let dirs = Dirs::new();
    let squat = squat(&dirs);
    let spool = Spool::create(config(&dirs)).unwrap();
    let fallback = fallback_of(&spool, &squat);
    let warning = staging_warning(&spool);
    assert!(warning.contains(&squat.display().to_string()), "{warning}");
    assert!(warning.contains("owned by another user"), "{warning}");
    assert!(
        warning.contains(&fallback.display().to_string()),
        "{warning}"
    );
    records(&spool, 300);
    spool.close().unwrap();
    // Everything was recorded; the warning is in the manifest.
    assert_eq!(read_channel(&dirs.capture(), "display").records.len(), 300);
    let m = spool::Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert!(m.errors.iter().any(|e| e == &warning), "{:?}", m.errors);
    // Nothing is left behind, and the squat is as it was.
    assert!(!fallback.exists(), "{} is left", fallback.display());
    assert_untouched(&squat);
}

fn a_crashed_session_in_a_fallback_root_is_recovered() {
    let dirs = Dirs::new();
    let squat = squat(&dirs);
    let spool = Spool::create(config(&dirs)).unwrap();
    let fallback = fallback_of(&spool, &squat);
    spool.hold_background(true);
    spool.without_mover();
    records(&spool, 150);
    spool.close_within(Duration::ZERO).unwrap();
    drop(spool);
    let m = spool::Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert!(m.pending_move, "{m:?}");
    assert!(Path::new(m.staging_dir.as_deref().unwrap()).starts_with(&fallback));
    // What reclaims the squatted root's sessions looks beside it too.
    let reports = spool::store::recover::recover_abandoned(&squat);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].as_ref().is_ok_and(|r| r.segments > 0),
        "{reports:?}"
    );
    assert_eq!(read_channel(&dirs.capture(), "display").records.len(), 150);
    assert!(!fallback.exists(), "{} is left", fallback.display());
    assert_untouched(&squat);
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(another_users_staging_root_is_never_used, ROOT),
        needs::test!(a_crashed_session_in_a_fallback_root_is_recovered, ROOT),
        needs::test!(a_symlinked_or_file_staging_root_is_never_used),
        needs::test!(simultaneous_starts_leave_one_writer_and_no_staging),
        needs::test!(a_start_that_fails_leaves_nothing),
    ])
}

/// A symlink (to a directory of this user's) or a file where the staging
/// root goes: neither is followed nor touched.
fn a_symlinked_or_file_staging_root_is_never_used() {
    for kind in ["symlink", "file"] {
        let dirs = Dirs::new();
        let root = dirs.staging_root();
        let target = dirs.staging_parent.path().join("target");
        std::fs::create_dir(&target).unwrap();
        match kind {
            "symlink" => std::os::unix::fs::symlink(&target, &root).unwrap(),
            _ => std::fs::write(&root, b"x").unwrap(),
        }
        let spool = Spool::create(config(&dirs)).unwrap();
        let fallback = fallback_of(&spool, &root);
        assert!(staging_warning(&spool).contains(&root.display().to_string()));
        records(&spool, 10);
        spool.close().unwrap();
        assert_eq!(read_channel(&dirs.capture(), "display").records.len(), 10);
        assert!(!fallback.exists());
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{kind}");
    }
}

/// Ten writers started at once on one capture directory: one wins, the
/// others are told the directory is taken, and no staging directory but
/// the winner's is made.
fn simultaneous_starts_leave_one_writer_and_no_staging() {
    for _ in 0..5 {
        let dirs = Dirs::new();
        let barrier = std::sync::Barrier::new(10);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..10)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        Spool::create(
                            SpoolConfig::new(dirs.capture())
                                .staging(StagingChoice::Root(dirs.staging_root())),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        assert_eq!(won.len(), 1);
        for e in lost {
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("in use by another writer") || e.contains("already holds"),
                "{e}"
            );
        }
        let sessions = std::fs::read_dir(dirs.staging_root()).unwrap().count();
        assert_eq!(sessions, 1, "staging directories left by the losers");
        won.into_iter().next().unwrap().unwrap().close().unwrap();
    }
}

/// A start that fails after making the capture directory (here: no
/// staging directory can be made at all, the root's parent being a file)
/// says why, naming the root, and leaves no `cap/spool` behind.
fn a_start_that_fails_leaves_nothing() {
    let dirs = Dirs::new();
    let file = dirs.staging_parent.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let root = file.join("staging");
    let err = Spool::create(dirs.config().staging(StagingChoice::Root(root.clone()))).unwrap_err();
    assert!(
        err.to_string().contains(&root.display().to_string()),
        "{err}"
    );
    assert!(
        !dirs.capture().exists(),
        "{err}: the capture directory is left"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}
