//! Nothing is created by following a symlink.

mod common;

use common::*;
use spool::{Direction, Spool, SpoolError};

#[test]
fn symlink_in_place_of_a_staged_segment_is_refused() {
    let dirs = Dirs::new();
    let victim = dirs.capture_parent.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let spool = spool(
        dirs.config()
            .segment_bytes(64 << 10)
            .ready_ahead(1)
            .channels(&["display"]),
    );
    spool.hold_background(true);
    // Plant symlinks where the next segments of the channel would be created.
    let chan_dir = spool.staging_dir().join("display");
    for i in 1..20 {
        let p = chan_dir.join(format!("{i:08}.seg"));
        let _ = std::os::unix::fs::symlink(&victim, p);
    }
    spool.hold_background(false);
    for i in 0..200u64 {
        spool.append_at("display", Direction::ServerToClient, i, &[7u8; 1000]);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let errors = spool.errors();
    assert!(
        errors.iter().any(|e| e.to_string().contains("File exists")),
        "{errors:?}"
    );
    let _ = spool.close();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(spool.counters("display").unwrap().dropped_records > 0);
}

#[test]
fn symlink_in_the_capture_directory_is_replaced_not_followed() {
    let dirs = Dirs::new();
    let victim = dirs.capture_parent.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let spool = spool(dirs.config().channels(&["main"]));
    let d = dirs.capture().join("spool/main");
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::symlink(&victim, d.join("00000000.seg.tmp")).unwrap();
    std::os::unix::fs::symlink(&victim, d.join("00000000.seg")).unwrap();
    spool.append("main", Direction::ClientToServer, b"data");
    spool.close().unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(d.join("00000000.seg"))
        .unwrap()
        .is_file());
    assert_eq!(read_channel(&dirs.capture(), "main").records.len(), 1);
}

#[test]
fn capture_directory_that_is_a_symlink_is_refused() {
    let dirs = Dirs::new();
    let real = dirs.capture_parent.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, dirs.capture()).unwrap();
    let err = Spool::create(dirs.config()).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    // The error names the directory and keeps the I/O error as its source.
    match &err {
        SpoolError::Io { path, .. } => assert_eq!(path, &dirs.capture()),
        other => panic!("want SpoolError::Io, got {other:?}"),
    }
    assert!(err
        .to_string()
        .contains(&dirs.capture().display().to_string()));
    let source = std::error::Error::source(&err).expect("an io::Error source");
    let io = source.downcast_ref::<std::sync::Arc<std::io::Error>>();
    assert!(io.is_some(), "{source:?}");
}

#[test]
fn a_capture_directory_holds_one_session() {
    let dirs = Dirs::new();
    spool(dirs.config()).close().unwrap();
    let err = Spool::create(dirs.config()).unwrap_err();
    assert!(err.to_string().contains("already holds"), "{err}");
}
