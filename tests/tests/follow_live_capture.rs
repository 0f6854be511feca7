//! `spool2pcap convert --follow`: a writer in one process (this test binary
//! re-executed), `spool2pcap convert --follow -w FILE --format pcapng` in
//! another. Everything written comes out, each channel in order, the
//! follower exits by itself after the writer closes, and the time from each
//! append to its packet being in the file is measured (printed; the test
//! only bounds it loosely, machines vary).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spool::{Direction, Spool, SpoolConfig, StagingChoice};
use testkit::child;

const CHILD_ENV: &str = "FOLLOW_LIVE_CAPTURE_CHILD";
const CHANNELS: [&str; 3] = ["main", "display", "inputs"];
const RECORDS: u64 = 120;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Record `i`: its channel, direction and bytes (index first, so each
/// packet says which record it is).
fn record(i: u64) -> (&'static str, Direction, Vec<u8>) {
    let channel = CHANNELS[(i % 3) as usize];
    let dir = if i.is_multiple_of(4) {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    };
    let len = 16 + (i * 131 % 3000) as usize;
    let mut v: Vec<u8> = (0..len).map(|k| (k as u64 * 7 + i) as u8).collect();
    v[..8].copy_from_slice(&i.to_le_bytes());
    (channel, dir, v)
}

/// The writer: appends a record every 15 ms, printing `i wall_ns` once
/// each is acknowledged, then closes.
fn child(capture: PathBuf, staging: PathBuf) -> ! {
    let spool = Spool::create(
        SpoolConfig::new(capture)
            .staging(StagingChoice::Root(staging))
            .segment_bytes(64 << 10)
            .channels(&CHANNELS),
    )
    .unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..RECORDS {
        let (channel, dir, bytes) = record(i);
        assert!(spool.append(channel, dir, &bytes), "record {i} dropped");
        writeln!(out, "{i} {}", now_ns()).unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_millis(15));
    }
    std::thread::sleep(Duration::from_millis(100));
    spool.close().unwrap();
    writeln!(out, "closed").unwrap();
    std::process::exit(0);
}

/// Data packets of the output: (file offset just past the packet's block,
/// client port, direction, TCP payload), for payloads that are records.
fn packets(bytes: &[u8]) -> Vec<(usize, u16, Direction, Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let word = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    while at + 12 <= bytes.len() {
        let (ty, len) = (word(at), word(at + 4) as usize);
        assert!(len >= 12 && at + len <= bytes.len(), "bad block at {at}");
        if ty == 6 {
            let ts = (u64::from(word(at + 12)) << 32) | u64::from(word(at + 16));
            let cap = word(at + 20) as usize;
            let frame = testkit::pcap::Frame {
                data: bytes[at + 28..at + 28 + cap].to_vec(),
                // Kept raw (`ts` above), in the interface's resolution.
                ts: std::time::Duration::ZERO,
                iface: word(at + 8),
                comment: None,
                epb_flags: None,
            };
            let t = testkit::tcp::Segment::parse(&frame);
            let server_port = spool2pcap::spice::channels::SERVER_PORT;
            let dir = if t.from_server(server_port) {
                Direction::ServerToClient
            } else {
                Direction::ClientToServer
            };
            out.push((at + len, t.client_port(server_port), dir, t.payload, ts));
        }
        at += len;
    }
    out
}

fn follow_streams_a_live_capture_and_exits_after_close() {
    if let Some((c, s)) = child::passed_dirs(CHILD_ENV) {
        child(c, s);
    }
    let dir = tempfile::tempdir().unwrap();
    let staging = tempfile::tempdir_in("/dev/shm").unwrap();
    let capture = dir.path().join("capture");
    let output = dir.path().join("live.pcapng");
    let bin = e2e::tools::spool2pcap_bin();

    let mut writer = child::spawn_writer(
        CHILD_ENV,
        "follow_streams_a_live_capture_and_exits_after_close",
        &capture,
        staging.path(),
        Stdio::inherit(),
    );
    let lines = &mut writer.lines;
    loop {
        match lines.next() {
            Some(Ok(l)) if l.trim().ends_with("ready") => break,
            Some(Ok(_)) => continue,
            other => panic!("writer did not start: {other:?}"),
        }
    }
    let mut follower = Command::new(&bin)
        .args(["convert", "--follow", "--format", "pcapng", "-w"])
        .arg(&output)
        .arg(&capture)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Watch the output grow: (wall ns, size) whenever the size changes.
    let growth = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (growth, stop, output) = (growth.clone(), stop.clone(), output.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let size = std::fs::metadata(&output).map_or(0, |m| m.len());
                if size != last {
                    growth.lock().unwrap().push((now_ns(), size));
                    last = size;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let mut appended = vec![0u64; RECORDS as usize];
    for l in lines.map_while(Result::ok) {
        let mut f = l.split_whitespace();
        if let (Some(i), Some(t)) = (f.next(), f.next()) {
            if let (Ok(i), Ok(t)) = (i.parse::<usize>(), t.parse::<u64>()) {
                appended[i] = t;
            }
        }
    }
    assert!(writer.process.wait().unwrap().success());
    let closed_at = Instant::now();
    // The follower ends by itself once the manifest says the session closed.
    let status = loop {
        if let Some(s) = follower.try_wait().unwrap() {
            break s;
        }
        if closed_at.elapsed() > Duration::from_secs(10) {
            let _ = follower.kill();
            panic!("the follower did not exit after the session closed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let exit_delay = closed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");

    // Everything came out, each channel and direction in order.
    let bytes = std::fs::read(&output).unwrap();
    let pk = packets(&bytes);
    let port = |c: &str| spool2pcap::spice::channels::known_port(c).unwrap();
    for c in CHANNELS {
        for d in [Direction::ClientToServer, Direction::ServerToClient] {
            let want: Vec<u8> = (0..RECORDS)
                .map(record)
                .filter(|(ch, dir, _)| *ch == c && *dir == d)
                .flat_map(|(_, _, b)| b)
                .collect();
            let got: Vec<u8> = pk
                .iter()
                .filter(|p| p.1 == port(c) && p.2 == d)
                .flat_map(|p| p.3.iter().copied())
                .collect();
            // In front: the synthetic link phase; the recorded bytes follow.
            assert!(
                got.ends_with(&want) && !want.is_empty(),
                "{c} {d:?}: {} bytes out, {} written",
                got.len(),
                want.len()
            );
        }
    }
    assert!(stderr.contains("records"), "{stderr}");
    // Interfaces described as channels appeared, mid-file: tshark reads it.
    let names = e2e::tools::tshark(&[
        "-r",
        &output.to_string_lossy(),
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    for c in CHANNELS {
        assert!(names.lines().any(|l| l == c), "no packets on interface {c}");
    }

    // Latency: append -> the file holds the packet.
    let growth = growth.lock().unwrap();
    let mut latencies = Vec::new();
    let mut inversions = 0;
    let mut last_ts = 0;
    for p in &pk {
        if p.3.len() < 16 {
            continue;
        }
        let i = u64::from_le_bytes(p.3[..8].try_into().unwrap());
        if i >= RECORDS || record(i).2 != p.3 {
            continue;
        }
        if p.4 < last_ts {
            inversions += 1;
        }
        last_ts = p.4;
        let visible = growth
            .iter()
            .find(|(_, size)| *size >= p.0 as u64)
            .map(|(t, _)| *t)
            .expect("packet never seen in the file");
        latencies.push(visible.saturating_sub(appended[i as usize]));
    }
    assert_eq!(latencies.len() as u64, RECORDS);
    latencies.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    eprintln!(
        "follow latency append->file: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} records; \
         exit {:.0} ms after close; {} cross-channel timestamp inversions",
        ms(p50),
        ms(p99),
        ms(max),
        latencies.len(),
        exit_delay.as_secs_f64() * 1e3,
        inversions
    );
    assert!(max < 2_000_000_000, "a record took {:.0} ms", ms(max));
}

fn main() -> std::process::ExitCode {
    needs::run(vec![needs::test!(
        follow_streams_a_live_capture_and_exits_after_close,
        needs::TSHARK
    )])
}
