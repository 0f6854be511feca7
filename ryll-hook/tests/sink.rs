//! The spool sink through the renderer's real `CaptureSink` trait: what it
//! writes at creation, what it reports when the spool cannot keep up, and
//! that the counters agree with what a reader finds on disk.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ryll_hook::metadata::{read_metadata, ryll_metadata, METADATA_FILE};
use ryll_hook::{CaptureSink, NoCaptureSink, SpoolSink, ALWAYS_OPEN};
use spool::read::event::Event;
use spool::{Capture, SpoolConfig, StagingChoice};

fn config(root: &tempfile::TempDir) -> SpoolConfig {
    SpoolConfig::new(root.path().join("capture"))
        .staging(StagingChoice::Root(root.path().join("staging")))
}

#[test]
fn create_writes_private_metadata_and_registers_the_channels_every_session_opens() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("capture");
    let sink = SpoolSink::with_config(
        config(&root),
        ryll_metadata("spice.example", 5900, Some(5901)),
    )
    .unwrap();
    let meta = read_metadata(&dir).unwrap();
    assert_eq!(&meta, sink.metadata());
    assert_eq!(meta.ryll_version.as_deref(), Some("0.3.0"));
    assert_eq!(meta.platform_os.as_deref(), Some(std::env::consts::OS));
    assert_eq!(meta.platform_arch.as_deref(), Some(std::env::consts::ARCH));
    assert_eq!(meta.target.as_deref(), Some("spice.example:5901"));
    assert_eq!(meta.target_host.as_deref(), Some("spice.example"));
    assert_eq!(meta.target_port, Some(5900));
    assert_eq!(meta.target_tls_port, Some(5901));
    assert_eq!(
        meta.capture_started.map(|s| s.len()),
        Some("2024-01-01T00:00:00Z".len())
    );
    let mode = std::fs::metadata(dir.join(METADATA_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // ryll's field names, as JSON.
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(METADATA_FILE)).unwrap()).unwrap();
    for key in [
        "ryll_version",
        "platform_os",
        "platform_arch",
        "target",
        "target_host",
        "target_port",
        "target_tls_port",
        "capture_started",
    ] {
        assert!(raw.get(key).is_some(), "metadata.json lacks {key}: {raw}");
    }
    // The channels every session opens exist before their first packet;
    // the others hold no memory until theirs.
    for name in ALWAYS_OPEN {
        assert_eq!(sink.counters(name), Some(Default::default()), "{name}");
    }
    for name in ["webdav", "playback", "usbredir"] {
        assert_eq!(sink.counters(name), None, "{name}");
    }
    // A channel registered on its first record keeps that record, and
    // one ryll does not know yet is captured too, not dropped by name.
    assert!(sink.packet_received("newchannel", b"x"));
    assert!(sink.packet_sent("webdav", b"PROPFIND"));
    assert!(sink.packet_received("playback", b"opus"));
    sink.close().unwrap();
    sink.close().unwrap();
    let cap = Capture::open(&dir).unwrap();
    for name in ["newchannel", "webdav", "playback"] {
        let mut r = cap.reader(name).unwrap();
        let mut n = 0;
        while let Some(ev) = r.next_event() {
            assert!(matches!(ev, Event::Data(_)), "{name}: {ev:?}");
            n += 1;
        }
        assert_eq!(n, 1, "{name}");
    }
}

#[test]
fn metadata_symlink_is_refused_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("capture");
    std::fs::create_dir(&dir).unwrap();
    let victim = root.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(METADATA_FILE)).unwrap();
    let err = SpoolSink::with_config(config(&root), ryll_metadata("h", 1, None))
        .expect_err("a symlinked metadata.json must be refused");
    assert!(err.to_string().contains(METADATA_FILE), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn no_capture_sink_never_reports_a_drop() {
    let sink: Arc<dyn CaptureSink> = Arc::new(NoCaptureSink);
    let big = vec![7u8; 256 << 10];
    for i in 0..10_000usize {
        let data = &big[..i % big.len()];
        assert!(sink.packet_received("display", data));
        assert!(sink.packet_sent("inputs", data));
        assert!(sink.frame(0, data, 1, 1));
    }
}

/// Without a video sink, `frame` reports "not dropped"; with one, the
/// inner sink's answer is passed through.
#[test]
fn frames_go_to_the_video_sink() {
    struct Video(AtomicU64);
    impl CaptureSink for Video {
        fn packet_sent(&self, _: &str, _: &[u8]) -> bool {
            true
        }
        fn packet_received(&self, _: &str, _: &[u8]) -> bool {
            true
        }
        fn frame(&self, _: u32, _: &[u8], _: u32, _: u32) -> bool {
            self.0.fetch_add(1, Ordering::Relaxed).is_multiple_of(2)
        }
    }
    let root = tempfile::tempdir().unwrap();
    let sink = SpoolSink::with_config(config(&root), ryll_metadata("h", 1, None)).unwrap();
    assert!(sink.frame(0, &[0; 16], 2, 2));
    let video = Arc::new(Video(AtomicU64::new(0)));
    let sink = {
        let root2 = tempfile::tempdir().unwrap();
        let s = SpoolSink::with_config(config(&root2), ryll_metadata("h", 1, None))
            .unwrap()
            .with_video(video.clone());
        assert!(s.frame(0, &[0; 16], 2, 2));
        assert!(!s.frame(0, &[0; 16], 2, 2));
        s
    };
    assert_eq!(video.0.load(Ordering::Relaxed), 2);
    drop(sink);
}

fn wait_ready(sink: &SpoolSink, channel: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.spool().ready_segments(channel) == 0 {
        assert!(Instant::now() < deadline, "preparer never caught up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A spool whose background threads are stalled runs out of segments: the
/// sink says `false` for exactly the packets that were dropped, and its
/// counters (what ryll puts in `writer_dropped_count`) equal what a reader
/// finds in the capture directory, data and gaps alike.
#[test]
fn sink_that_cannot_keep_up_reports_false_and_counts_match_the_spool() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("capture");
    let sink = SpoolSink::with_config(
        config(&root).segment_bytes(64 << 10).ready_ahead(1),
        ryll_metadata("h", 5900, None),
    )
    .unwrap();
    wait_ready(&sink, "display");
    sink.spool().hold_background(true);
    let chunk = vec![0x5au8; 3000];
    let (mut ok, mut dropped, mut ok_bytes, mut dropped_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut false_seen_at = None;
    for i in 0..200usize {
        let len = 1000 + (i * 37) % 2000;
        let accepted = if i % 3 == 0 {
            sink.packet_sent("display", &chunk[..len])
        } else {
            sink.packet_received("display", &chunk[..len])
        };
        if accepted {
            ok += 1;
            ok_bytes += len as u64;
        } else {
            false_seen_at.get_or_insert(i);
            dropped += 1;
            dropped_bytes += len as u64;
        }
    }
    assert!(false_seen_at.is_some(), "never reported a drop");
    assert!(ok > 0);
    let c = sink.counters("display").unwrap();
    assert_eq!(
        (c.records, c.bytes, c.dropped_records, c.dropped_bytes),
        (ok, ok_bytes, dropped, dropped_bytes)
    );
    sink.spool().hold_background(false);
    sink.close().unwrap();
    // Closing writes the pending gap (perhaps into a new segment) but
    // counts no new records or drops.
    let after = sink.counters("display").unwrap();
    assert_eq!(
        (
            after.records,
            after.bytes,
            after.dropped_records,
            after.dropped_bytes
        ),
        (c.records, c.bytes, c.dropped_records, c.dropped_bytes)
    );

    let cap = Capture::open(&dir).unwrap();
    let mut r = cap.reader("display").unwrap();
    let (mut records, mut bytes, mut gap_records, mut gap_bytes) = (0u64, 0u64, 0u64, 0u64);
    while let Some(ev) = r.next_event() {
        match ev {
            Event::Data(d) => {
                records += 1;
                bytes += d.payload.len() as u64;
            }
            Event::Gap(g) => {
                gap_records += g.records();
                gap_bytes += g.bytes();
            }
            Event::Damage(d) => panic!("damage: {d}"),
        }
    }
    assert_eq!(
        (records, bytes, gap_records, gap_bytes),
        (c.records, c.bytes, c.dropped_records, c.dropped_bytes)
    );
}
