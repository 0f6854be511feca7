//! Which segments the reader maps rather than reads: only those of a capture
//! closed cleanly, in the capture directory, owned by this user and writable
//! by nobody else, of the manifest's session. Everything else — a live
//! session, staged segments, a crashed capture — is read with `read(2)`, so
//! that no file cut short under a mapping can kill the reader.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use spool::read::capture::Capture;
use spool::read::event::{DamageKind, Event};
use spool::read::reader::ReadStats;
use spool::{Direction, Manifest, Spool, StagingChoice};

const RECORDS: usize = 600;

fn record(i: usize) -> Vec<u8> {
    payload(i, 100 + (i * 37) % 700)
}

/// Appends record `i`, waiting for a segment if none is ready.
fn append(spool: &Spool, i: usize) {
    append_kept(
        spool,
        "display",
        Direction::ServerToClient,
        i as u64,
        &record(i),
    );
}

/// Reads the channel through [`Capture`]: the payloads, and the counters.
/// Damage is allowed only in a live capture (a segment being set up).
fn read_any(capture: &Path) -> (Vec<Vec<u8>>, ReadStats) {
    let mut cap = Capture::open(capture).unwrap();
    cap.set_mapping(true);
    let mut r = cap.reader("display").unwrap();
    let mut got = Vec::new();
    while let Some(ev) = r.next_event() {
        if let Event::Data(d) = ev {
            got.push(d.payload.to_vec());
        }
    }
    (got, r.stats().clone())
}

/// [`read_any`] of a closed capture: no damage.
fn read(capture: &Path) -> (Vec<Vec<u8>>, ReadStats) {
    let mut cap = Capture::open(capture).unwrap();
    cap.set_mapping(true);
    let mut r = cap.reader("display").unwrap();
    let mut got = Vec::new();
    while let Some(ev) = r.next_event() {
        match ev {
            Event::Data(d) => got.push(d.payload.to_vec()),
            Event::Gap(_) => {}
            Event::Damage(d) => panic!("{d}"),
        }
    }
    (got, r.stats().clone())
}

fn sent(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(record).collect()
}

/// A closed capture of several small segments.
fn closed_capture() -> Dirs {
    let dirs = Dirs::new();
    let spool = small_segments(&dirs, &["display"]);
    for i in 0..RECORDS {
        append(&spool, i);
    }
    spool.close().unwrap();
    dirs
}

fn segment_files(capture: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(capture.join("spool/display"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn edit_manifest(capture: &Path, f: impl FnOnce(&mut Manifest)) {
    let path = capture.join("manifest.json");
    let mut m = Manifest::load(&path).unwrap();
    f(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn a_closed_capture_is_read_through_mappings() {
    let dirs = closed_capture();
    let (got, stats) = read(&dirs.capture());
    assert!(got == sent(RECORDS));
    assert!(stats.segments >= 3, "{stats:?}");
    assert_eq!(stats.mapped_segments, stats.segments, "{stats:?}");
    assert!(stats.closed_cleanly);
}

#[test]
fn mapping_can_be_turned_off() {
    let dirs = closed_capture();
    let mut cap = Capture::open(&dirs.capture()).unwrap();
    cap.set_mapping(false);
    let mut r = cap.reader("display").unwrap();
    let mut got = Vec::new();
    while let Some(ev) = r.next_event() {
        if let Event::Data(d) = ev {
            got.push(d.payload.to_vec());
        }
    }
    assert!(got == sent(RECORDS));
    assert!(r.stats().segments >= 3);
    assert_eq!(r.stats().mapped_segments, 0, "{:?}", r.stats());
}

#[test]
fn a_capture_not_closed_cleanly_is_read() {
    // What a crashed session leaves: the manifest never said clean.
    let dirs = closed_capture();
    edit_manifest(&dirs.capture(), |m| m.clean_shutdown = false);
    let (got, stats) = read(&dirs.capture());
    assert!(got == sent(RECORDS));
    assert!(stats.segments >= 3);
    assert_eq!(stats.mapped_segments, 0, "{stats:?}");
}

#[test]
fn segments_of_another_session_are_read() {
    // As if the directory had been replaced by a new session since its
    // manifest was read: the segments' session id is not the manifest's.
    let dirs = closed_capture();
    edit_manifest(&dirs.capture(), |m| m.session_id = "00".repeat(16));
    let (got, stats) = read(&dirs.capture());
    assert!(got == sent(RECORDS));
    assert_eq!(stats.mapped_segments, 0, "{stats:?}");
    // Nor is a session id that is not one.
    edit_manifest(&dirs.capture(), |m| m.session_id = "not hex".into());
    assert_eq!(read(&dirs.capture()).1.mapped_segments, 0);
}

#[test]
fn files_others_could_cut_short_are_read() {
    let dirs = closed_capture();
    let files = segment_files(&dirs.capture());
    let (_, before) = read(&dirs.capture());
    assert_eq!(before.mapped_segments, files.len() as u64);
    // Writable by the group: someone else could truncate it.
    std::fs::set_permissions(&files[1], std::fs::Permissions::from_mode(0o620)).unwrap();
    let (got, stats) = read(&dirs.capture());
    assert!(got == sent(RECORDS));
    assert_eq!(stats.mapped_segments, files.len() as u64 - 1, "{stats:?}");
    std::fs::set_permissions(&files[1], std::fs::Permissions::from_mode(0o600)).unwrap();
    // Owned by another user (only root can give a file away).
    if spool::store::fsutil::current_uid() == 0 {
        std::os::unix::fs::chown(&files[0], Some(65534), None).unwrap();
        let (got, stats) = read(&dirs.capture());
        assert!(got == sent(RECORDS));
        assert_eq!(stats.mapped_segments, files.len() as u64 - 1, "{stats:?}");
    }
}

#[test]
fn an_empty_segment_is_damage_not_a_mapping() {
    let dirs = closed_capture();
    let files = segment_files(&dirs.capture());
    let last = files.last().unwrap();
    let name = last.file_name().unwrap().to_str().unwrap();
    let index: u64 = name.trim_end_matches(".seg").parse().unwrap();
    let empty = last.with_file_name(format!("{:08}.seg", index + 1));
    std::fs::write(&empty, b"").unwrap();
    let mut cap = Capture::open(&dirs.capture()).unwrap();
    cap.set_mapping(true);
    let mut r = cap.reader("display").unwrap();
    let mut damage = Vec::new();
    while let Some(ev) = r.next_event() {
        if let Event::Damage(d) = ev {
            damage.push(d);
        }
    }
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::TruncatedHeader);
    assert_eq!(damage[0].file, empty);
    assert_eq!(r.stats().mapped_segments, files.len() as u64);
    assert_eq!(r.stats().segments, files.len() as u64 + 1);
}

/// Waits until the capture directory holds at least `n` segment files.
fn wait_for_segments(capture: &Path, n: usize) {
    let t = Instant::now();
    while std::fs::read_dir(capture.join("spool/display")).map_or(0, |d| d.count()) < n {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "segments never moved in"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_live_staged_capture_is_read() {
    let dirs = Dirs::new();
    let spool = small_segments(&dirs, &["display"]);
    for i in 0..RECORDS {
        append(&spool, i);
    }
    // Some segments already moved into the capture directory, the live one
    // still staged: none of them is mapped while the session runs.
    wait_for_segments(&dirs.capture(), 2);
    let (got, stats) = read_any(&dirs.capture());
    assert!(!got.is_empty() && got[..] == sent(got.len())[..]);
    assert!(stats.segments >= 3, "{stats:?}");
    assert!(stats.staged_records > 0, "{stats:?}");
    assert_eq!(stats.mapped_segments, 0, "{stats:?}");
    spool.close().unwrap();
    let (got, stats) = read(&dirs.capture());
    assert!(got == sent(RECORDS));
    assert_eq!(stats.mapped_segments, stats.segments);
}

#[test]
fn a_live_direct_mode_capture_is_read() {
    // Direct mode: segments are mapped and written in the capture directory
    // itself, and cut to size there once sealed. While the writer runs,
    // the reader must not map them.
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .staging(StagingChoice::CaptureDir)
            .segment_bytes(64 << 10)
            .ready_ahead(4)
            .channels(&["display"]),
    );
    for i in 0..RECORDS {
        append(&spool, i);
    }
    let (got, stats) = read_any(&dirs.capture());
    assert!(!got.is_empty() && got[..] == sent(got.len())[..]);
    assert!(stats.segments >= 3, "{stats:?}");
    assert_eq!(stats.staged_records, 0, "direct mode stages nothing");
    assert_eq!(stats.mapped_segments, 0, "{stats:?}");
    spool.close().unwrap();
    let (got, stats) = read(&dirs.capture());
    assert!(got == sent(RECORDS));
    assert_eq!(stats.mapped_segments, stats.segments);
}
