//! A staged segment moved out and its file reused for another segment
//! between a reader's `open` and its `read` (`crate::write::spare`): the
//! reader and the follower must notice, and read the capture directory's
//! copy instead of whatever the reused file holds by then.
//!
//! The race is too narrow to meet reliably by chance, so a hook in
//! a `FileWindow`'s read, armed by the test on its own thread, runs the
//! writer's side of it at exactly that point.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::read::capture::Capture;
use crate::read::event::Event;
use crate::read::follow::Follower;
use crate::store::staging::SPARE_DIR;
use crate::{Direction, Spool, SpoolConfig, StagingChoice};

/// The writer's side of the race, and how many reads to let pass first.
type Hook = (usize, Box<dyn FnOnce()>);

thread_local! {
    /// Run once by a later read of a `FileWindow` on this thread: after
    /// as many reads as the number says.
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Called by a `FileWindow` before each read of its file.
pub(super) fn between_open_and_read() {
    let hook = HOOK.with(|h| {
        let mut h = h.borrow_mut();
        match h.as_mut() {
            Some((0, _)) => h.take().map(|(_, hook)| hook),
            Some((skip, _)) => {
                *skip -= 1;
                None
            }
            None => None,
        }
    });
    if let Some(hook) = hook {
        hook();
    }
}

const RECORD: usize = 1000;

fn record(i: u64) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; RECORD];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// A session whose first segment is sealed but still staged (the
/// background threads held), the second one live, and `n` records in all.
fn session_with_a_sealed_staged_segment(root: &Path, n: u64) -> (Spool, PathBuf, PathBuf) {
    staged_session(root, n, 64 << 10, false)
}

/// [`session_with_a_sealed_staged_segment`] with segments of
/// `segment_bytes`, compressed when moved if `compress`.
fn staged_session(
    root: &Path,
    n: u64,
    segment_bytes: usize,
    compress: bool,
) -> (Spool, PathBuf, PathBuf) {
    let capture = root.join("cap");
    let spool = Spool::create(
        SpoolConfig::new(&capture)
            .staging(StagingChoice::Root(root.join("staging")))
            .segment_bytes(segment_bytes)
            .compress(compress)
            .channels(&["display"]),
    )
    .unwrap();
    // Registering the channel prepared two segments: enough for one rotation.
    spool.hold_background(true);
    for i in 0..n {
        assert!(spool.append_at("display", Direction::ServerToClient, i, &record(i)));
    }
    let staging = spool.shared.staging_dir.clone().unwrap();
    let staged0 = staging.join("display").join("00000000.seg");
    assert!(staged0.exists() && !capture.join("spool/display/00000000.seg").exists());
    (spool, staged0, staging)
}

/// Arms the hook: let the retirer move segment 0 and keep its file as a
/// spare, then overwrite that file as a reuse would — unless the preparer
/// has reused it for real already.
fn arm_reuse(spool: &Spool, staged0: PathBuf, staging: PathBuf) {
    arm_reuse_after(0, spool, staged0, staging);
}

/// [`arm_reuse`] at the read after `skip` reads.
fn arm_reuse_after(skip: usize, spool: &Spool, staged0: PathBuf, staging: PathBuf) {
    let shared = std::sync::Arc::clone(&spool.shared);
    HOOK.with(|h| {
        *h.borrow_mut() = Some((
            skip,
            Box::new(move || {
                shared
                    .held
                    .store(false, std::sync::atomic::Ordering::Release);
                let deadline = Instant::now() + Duration::from_secs(30);
                let spare = staging.join(SPARE_DIR).join("spare-0");
                let reused = || shared.spares.reused() > 0;
                while staged0.exists() || !(spare.exists() || reused()) {
                    assert!(Instant::now() < deadline, "segment 0 never became a spare");
                    std::thread::sleep(Duration::from_millis(1));
                }
                // What the preparer's reuse does to it, in effect: new bytes.
                // Never creating a file: if the preparer took the spare
                // meanwhile, it has rewritten it itself.
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&spare) {
                    std::io::Write::write_all(&mut f, &[0xEE; 64 << 10]).unwrap();
                }
                assert!(
                    spare.exists() || reused(),
                    "segment 0 was deleted, not kept"
                );
            }),
        ));
    });
}

/// Checks that `events` are records 0.. in order, whole, with no damage.
fn check(events: &[(u64, Vec<u8>)], n: u64) {
    assert_eq!(events.len() as u64, n, "records read");
    for (i, (ts, payload)) in events.iter().enumerate() {
        assert_eq!(*ts, i as u64);
        assert!(
            *payload == record(i as u64),
            "record {i} is not the one written"
        );
    }
}

/// Every record `reader` reads, as (timestamp, payload); panics naming
/// `case` on a gap or damage.
fn read_whole(reader: &mut crate::read::reader::ChannelReader, case: &str) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    while let Some(ev) = reader.next_event() {
        match ev {
            Event::Data(d) => got.push((d.ts_ns, d.payload.to_vec())),
            Event::Gap(g) => panic!("{case}: gap {g:?}"),
            Event::Damage(d) => panic!("{case}: damage: {d}"),
        }
    }
    got
}

#[test]
fn a_reader_racing_reuse_reads_the_moved_copy() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100;
    let (spool, staged0, staging) = session_with_a_sealed_staged_segment(dir.path(), n);
    let cap = Capture::open(&dir.path().join("cap")).unwrap();
    assert_eq!(cap.problems(), &[] as &[String]);
    let mut reader = cap.reader("display").unwrap();
    arm_reuse(&spool, staged0, staging);
    let got = read_whole(&mut reader, "move before the first read");
    check(&got, n);
    spool.close().unwrap();
}

/// The move may fall between any two reads of a staged segment: the
/// header's, the committed records', their second read after the fence,
/// the header checksum's second look, the records'. Each is tried.
#[test]
fn a_reader_racing_reuse_at_any_read_reads_the_moved_copy() {
    for skip in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let n = 100;
        let (spool, staged0, staging) = session_with_a_sealed_staged_segment(dir.path(), n);
        let cap = Capture::open(&dir.path().join("cap")).unwrap();
        let mut reader = cap.reader("display").unwrap();
        arm_reuse_after(skip, &spool, staged0, staging);
        let got = read_whole(&mut reader, &format!("move after {skip} reads"));
        HOOK.with(|h| h.borrow_mut().take());
        check(&got, n);
        spool.close().unwrap();
    }
}

/// A staged segment larger than a window, moved and reused after its
/// first window was read (its header, then the committed records, then
/// their second read after the fence): the reader reads on from the
/// moved copy, plain or compressed, from the record it had got to.
#[test]
fn a_reader_racing_reuse_mid_segment_reads_on_from_the_moved_copy() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        // Segment 0 holds about 4 MiB; the window reads 1 MiB at a time.
        let n = 4500;
        let (spool, staged0, staging) = staged_session(dir.path(), n, 4 << 20, compress);
        let cap = Capture::open(&dir.path().join("cap")).unwrap();
        let mut reader = cap.reader("display").unwrap();
        let reads_before_the_move = 6;
        arm_reuse_after(reads_before_the_move, &spool, staged0, staging);
        let got = read_whole(&mut reader, &format!("compress {compress}"));
        assert!(
            HOOK.with(|h| h.borrow().is_none()),
            "the segment moved before its last window was read"
        );
        check(&got, n);
        spool.close().unwrap();
    }
}

#[test]
fn a_follower_racing_reuse_reads_the_moved_copy() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100;
    let (spool, staged0, staging) = session_with_a_sealed_staged_segment(dir.path(), n);
    let mut follower = Follower::open(&dir.path().join("cap")).unwrap();
    arm_reuse(&spool, staged0, staging);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (got.len() as u64) < n && Instant::now() < deadline {
        follower.poll(&mut |_, ev| match ev {
            Event::Data(d) => got.push((d.ts_ns, d.payload.to_vec())),
            Event::Gap(g) => panic!("gap {g:?}"),
            Event::Damage(d) => panic!("damage: {d}"),
        });
    }
    check(&got, n);
    spool.close().unwrap();
}
