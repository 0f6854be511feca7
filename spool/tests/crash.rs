//! A writer process killed with SIGKILL in the middle of appending loses
//! nothing it had acknowledged: after recovery every acknowledged record is
//! there, in order, and nothing is invented.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use common::*;
use spool::{Direction, Spool, SpoolConfig, StagingChoice};
use testkit::child;

const CHILD_ENV: &str = "SPOOL_CRASH_TEST_CHILD";

/// Deterministic record `i`: its index, then a pattern; sizes vary so records
/// straddle segment boundaries.
fn record(i: u64) -> Vec<u8> {
    let len = 8 + ((i * 7919) % 3000) as usize;
    let mut v = payload(i as usize, len);
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// In the child: append records forever, printing each acknowledged index.
fn child(capture: PathBuf, staging: PathBuf) -> ! {
    let spool = Spool::create(
        SpoolConfig::new(capture)
            .staging(StagingChoice::Root(staging))
            .segment_bytes(256 << 10)
            .channels(&["display"]),
    )
    .unwrap();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut i = 0u64;
    loop {
        let dir = if i % 5 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        // A refusal is retried, so acknowledged indexes stay dense.
        append_kept(&spool, "display", dir, i, &record(i));
        writeln!(out, "{i}").unwrap();
        out.flush().unwrap();
        i += 1;
    }
}

#[test]
fn sigkill_mid_append_loses_nothing_acknowledged() {
    if let Some((c, s)) = child::passed_dirs(CHILD_ENV) {
        child(c, s);
    }
    let dirs = Dirs::new();
    let mut writer = child::spawn_writer(
        CHILD_ENV,
        "sigkill_mid_append_loses_nothing_acknowledged",
        &dirs.capture(),
        &dirs.staging_root(),
        Stdio::null(),
    );
    let mut last_ack = None;
    // Let it write a few MiB (many segments), then kill it mid-stream.
    while let Some(Ok(line)) = writer.lines.next() {
        if let Ok(i) = line.trim().parse::<u64>() {
            last_ack = Some(i);
            if i >= 20_000 {
                break;
            }
        }
    }
    writer.kill();
    let last_ack = last_ack.expect("child acknowledged nothing");

    // The manifest says unclean, and staging still holds segments.
    let m = spool::Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert!(!m.clean_shutdown);
    let staging = PathBuf::from(m.staging_dir.clone().unwrap());
    assert!(staging.is_dir());
    // The live segment the child died in was never checksummed (its
    // records are all smaller than `CRC_AT_APPEND_MIN`).
    let live: Vec<SegmentCheck> = std::fs::read_dir(staging.join("display"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        // The preparer may have been creating one: skip headerless files.
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.len() >= 128 && b[..8] == *b"RYLLSPOL"))
        .map(|p| segment_checksums(&p))
        .filter(|c| c.records > 0 && !c.sealed)
        .collect();
    assert!(live.len() <= 1, "{live:?}");
    for c in &live {
        assert!(!c.flagged && c.zero_crcs == c.records, "{c:?}");
    }

    // Reading before recovery already sees the staged records...
    let before = read_channel(&dirs.capture(), "display");
    // ...and recovery moves them in for good.
    let report = spool::store::recover::recover(&dirs.capture()).unwrap();
    assert!(report.segments > 0);
    assert!(!staging.exists());
    let after = read_channel(&dirs.capture(), "display");
    assert_eq!(before.records, after.records);
    // Every segment recovery moved in has its CRCs and says so. All end with
    // their seal but the live one (which may end in a torn tail) and any the
    // preparer had made ready after it (a bare header).
    let checks: Vec<_> = capture_segments(&dirs.capture())
        .iter()
        .map(|p| (p.clone(), segment_checksums(p)))
        .collect();
    let unsealed: Vec<_> = checks
        .iter()
        .filter(|(_, c)| !c.sealed_at_end && c.records > 0)
        .collect();
    assert!(unsealed.len() <= 1, "{checks:?}");
    for (i, (path, c)) in checks.iter().enumerate() {
        assert!(
            c.flagged && c.exact_header_crc,
            "{}: not flagged and re-sealed after recovery: {c:?}",
            path.display()
        );
        if !c.sealed_at_end {
            assert!(
                checks[i + 1..].iter().all(|(_, c)| c.records == 0),
                "{}: {c:?} is not the live segment",
                path.display()
            );
        }
    }

    let got = after.records;
    assert!(
        got.len() as u64 > last_ack,
        "only {} records recovered, {} acknowledged",
        got.len(),
        last_ack + 1
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.data, record(i as u64), "record {i} differs");
        assert_eq!(r.ts, i as u64);
    }
    // Only a torn tail (an unacknowledged record) may be reported.
    assert!(
        after.damage.iter().all(|d| d.is_torn_tail()),
        "{:?}",
        after.damage
    );
    assert!(!after.closed_cleanly);
    let m = spool::Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert!(!m.clean_shutdown);
    assert_eq!(m.staging_dir, None);
}

#[test]
fn recovery_refuses_a_live_session() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config());
    spool.append("main", Direction::ClientToServer, b"x");
    let err = spool::store::recover::recover(&dirs.capture()).unwrap_err();
    assert!(
        matches!(
            err,
            spool::store::recover::RecoverError::StillBeingWritten(_)
        ),
        "{err}"
    );
    spool.close().unwrap();
}
