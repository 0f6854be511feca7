//! The patched ryll itself (`scripts/build-ryll.sh DIR --headless`) against
//! a real SPICE server, with tcpdump on loopback as the ground truth:
//!
//! - under load (the busy guest scrolling its console), every channel's
//!   capture is the wire's bytes, or an exact prefix of them missing only
//!   what the client never read;
//! - a report asked for mid-session (SIGUSR1, F12 without a window) has a
//!   `traffic.pcap` that tshark decodes like the same stretch of the wire;
//! - one SIGINT under load: every connection closes (FIN or RST) within
//!   1 s, the process exits within 5 s, the manifest is clean;
//! - SIGTERM, and a SIGINT in the first milliseconds, leave clean captures;
//! - a SIGKILLed session's staging is reclaimed by the next start;
//! - without `--capture`, the session records into its memory ring only
//!   (nothing on disk but the reports), a SIGUSR1 report decodes like the
//!   wire under load, exit removes the ring, and a SIGKILLed session's ring
//!   becomes a bug report at the next start.
//!
//! The binary is `$RYLL_BIN`, else `target/ryll-headless/bin/ryll` in the
//! workspace (where `.ci/run` builds it). Where the binary, tshark, tcpdump, QEMU or
//! the guest is missing the tests are reported ignored, with the reason;
//! under `CI=true` they fail.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::live::{
    self, free_port, start_loopback_capture, start_quiet_qemu, start_spice_guest, Guard,
};
use e2e::recorded::Session;
use e2e::{ground_truth, tools};
use needs::Need;
use spool::Direction;

/// The patched headless ryll: `$RYLL_BIN`, else where `.ci/run` builds it.
fn ryll_bin() -> PathBuf {
    std::env::var_os("RYLL_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ryll-headless/bin/ryll"),
        PathBuf::from,
    )
}

/// The patched ryll, built.
const PATCHED_RYLL: Need = Need::Custom(|| {
    let bin = ryll_bin();
    if bin.exists() {
        return Ok(());
    }
    Err(format!(
        "needs the patched ryll at {}: scripts/build-ryll.sh target/ryll-headless --headless \
         (or set RYLL_BIN)",
        bin.display()
    ))
});

/// A staging root of this test's own (a tmpfs directory), so that what one
/// test leaves staged is not reclaimed by another test's ryll.
fn private_runtime_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ryll-test-runtime-")
        .tempdir_in("/dev/shm")
        .expect("a directory on /dev/shm")
}

/// What the tests against QEMU's quiet SPICE server share: the binary, a
/// work directory, a private staging root, and the server.
struct QuietSession {
    bin: PathBuf,
    dir: tempfile::TempDir,
    runtime: tempfile::TempDir,
    port: u16,
    _qemu: Guard,
}

impl QuietSession {
    fn start() -> QuietSession {
        let bin = ryll_bin();
        let port = free_port();
        let qemu = start_quiet_qemu(port);
        live::wait_for_port(port, Duration::from_secs(30));
        QuietSession {
            bin,
            dir: tempfile::tempdir().unwrap(),
            runtime: private_runtime_dir(),
            port,
            _qemu: qemu,
        }
    }
}

/// A running ryll, its log lines forwarded to a channel.
struct Ryll {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Ryll {
    /// `ryll --capture capture`, its staging under `runtime`.
    fn start(bin: &Path, port: u16, capture: &Path, runtime: &Path) -> Ryll {
        Ryll::spawn(
            bin,
            port,
            &["--capture".as_ref(), capture.as_ref()],
            runtime,
        )
    }

    /// ryll without `--capture`: its traffic ring under `runtime`, its
    /// reports into `reports`.
    fn without_capture(bin: &Path, port: u16, reports: &Path, runtime: &Path) -> Ryll {
        let args = ["--bug-report-dir".as_ref(), reports.as_ref()];
        Ryll::spawn(bin, port, &args, runtime)
    }

    fn spawn(bin: &Path, port: u16, args: &[&std::ffi::OsStr], runtime: &Path) -> Ryll {
        let mut child = Command::new(bin)
            .args(["--headless", "--direct", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("XDG_RUNTIME_DIR", runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ryll");
        let (tx, log) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("ryll| {line}");
                    let _ = tx.send(line);
                }
            });
        }
        Ryll { child, log }
    }

    /// Waits for a log line containing `what`; returns it.
    fn wait_for_log(&self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!("ryll never logged {what:?}"),
            }
        }
    }

    /// SIGINT, then how long the process took to exit, and its status.
    fn interrupt(self, limit: Duration) -> (Duration, std::process::ExitStatus) {
        self.stop_with(libc::SIGINT, limit)
    }

    /// Sends `sig`, then how long the process took to exit, and its status.
    /// Killed, and a panic, if it is still running well past `limit`.
    fn stop_with(mut self, sig: i32, limit: Duration) -> (Duration, std::process::ExitStatus) {
        let sent = Instant::now();
        live::signal(&self.child, sig);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for ryll") {
                return (sent.elapsed(), status);
            }
            if sent.elapsed() > limit + Duration::from_secs(25) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("ryll still running {:?} after signal {sig}", sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Ryll {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Time (Unix seconds) at which each connection (by client port) began
/// to close: its first FIN or RST, from either side, in the ground truth.
/// Which side goes first varies: a socket closed with unread data in its
/// receive buffer sends RST rather than FIN (RFC 1122 4.2.2.13), and the
/// SPICE server closes the other channels itself once main has closed.
fn first_closes(truth: &Path, server_port: u16) -> BTreeMap<u16, f64> {
    let out = tools::tshark(&[
        "-r",
        &truth.to_string_lossy(),
        "-Y",
        "tcp.flags.fin == 1 || tcp.flags.reset == 1",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "frame.time_epoch",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let mut closes = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [src, dst, t] = f[..] else { continue };
        let (Ok(src), Ok(dst), Ok(t)) = (src.parse::<u16>(), dst.parse::<u16>(), t.parse::<f64>())
        else {
            continue;
        };
        let client = if dst == server_port { src } else { dst };
        closes.entry(client).or_insert(t);
    }
    closes
}

/// The report zip's `traffic.pcap`, written to `out`.
fn extract_traffic_pcap(zip_path: &Path, out: &Path) {
    let file = std::fs::File::open(zip_path).expect("opening the report");
    let mut zip = zip::ZipArchive::new(file).expect("reading the report zip");
    let mut entry = zip
        .by_name("traffic.pcap")
        .expect("the report has a traffic.pcap");
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).expect("reading traffic.pcap");
    std::fs::write(out, bytes).expect("writing traffic.pcap");
}

/// Every channel of the report decodes as a contiguous stretch of the
/// same channel on the wire, message for message; returns the number of
/// messages decoded per channel.
fn assert_report_decodes_like_the_wire(
    report_pcap: &Path,
    truth: &Path,
    port: u16,
    session: &Session,
    dirs: &[Direction],
) -> BTreeMap<String, usize> {
    let report = tools::spice_messages_by_direction(report_pcap, tools::SERVER_PORT);
    let wire = tools::spice_messages_by_direction(truth, port);
    let mut counts = BTreeMap::new();
    for conn in &session.connections {
        let Some(report_port) = spool2pcap::spice::channels::known_port(&conn.name) else {
            continue;
        };
        for &dir in dirs {
            let got = report
                .get(&(report_port, dir))
                .map_or(&[][..], Vec::as_slice);
            let want = wire
                .get(&(conn.client_port, dir))
                .map_or(&[][..], Vec::as_slice);
            let found = got.is_empty() || want.windows(got.len()).any(|stretch| stretch == got);
            assert!(
                found,
                "{} {dir:?}: the report's {} messages are not a stretch of the wire's {}",
                conn.name,
                got.len(),
                want.len()
            );
            *counts.entry(conn.name.clone()).or_insert(0) += got.len();
        }
    }
    counts
}

/// What the tests against the busy guest share: the binary, a work
/// directory, a private staging root, the guest scrolling its console
/// (tcpdump on loopback keeps up with it, so the ground truth decodes
/// whole), and tcpdump recording it into `truth`.
struct BusySession {
    bin: PathBuf,
    dir: tempfile::TempDir,
    runtime: tempfile::TempDir,
    port: u16,
    guest: Guard,
    truth: PathBuf,
    capture: Guard,
}

impl BusySession {
    fn start() -> BusySession {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let guest = start_spice_guest(port, "scroll");
        let truth = dir.path().join("truth.pcap");
        let capture = start_loopback_capture(port, &truth);
        BusySession {
            bin: ryll_bin(),
            dir,
            runtime: private_runtime_dir(),
            port,
            guest,
            truth,
            capture,
        }
    }

    /// Stops the ground truth, then the guest.
    fn stop(&mut self) {
        self.capture.stop(Duration::from_secs(10));
        self.guest.stop(Duration::from_secs(5));
    }
}

fn patched_ryll_under_load_keeps_the_wire_reports_and_stops_at_once() {
    let mut busy = BusySession::start();
    let (port, truth) = (busy.port, busy.truth.clone());
    let dir = busy.dir.path().to_path_buf();
    let capture = dir.join("capture");
    let ryll = Ryll::start(&busy.bin, port, &capture, busy.runtime.path());
    // Let the guest boot and scroll for a while: by the wire, not the
    // clock, since a loaded machine boots it late.
    wait_for_file_size(&truth, 16 << 20, Duration::from_secs(90));
    live::signal(&ryll.child, libc::SIGUSR1);
    let report = reported_path(&ryll.wait_for_log("bugreport: wrote", Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(3));

    let sigint_at = unix_now();
    let (took, status) = ryll.interrupt(Duration::from_secs(5));
    eprintln!("ryll exited {took:?} after SIGINT: {status:?}");
    std::thread::sleep(Duration::from_millis(500));
    busy.stop();
    assert!(status.success(), "ryll after SIGINT: {status:?}");
    assert!(took <= Duration::from_secs(5), "ryll took {took:?} to exit");

    let session = ground_truth::load_ground_truth(&truth, port);
    let display = session.channel("display").unwrap();
    let display_bytes = display.stream(Direction::ServerToClient).len();
    assert!(
        display_bytes > 1 << 20,
        "the display channel carried only {display_bytes} bytes: not a busy session"
    );

    // The server saw every connection closed within 1 s of the SIGINT.
    let closes = first_closes(&truth, port);
    for conn in &session.connections {
        let at = closes
            .get(&conn.client_port)
            .unwrap_or_else(|| panic!("{}: never closed", conn.name));
        let after = at - sigint_at;
        eprintln!("{}: closed {after:.3} s after SIGINT", conn.name);
        assert!(
            after <= 1.0,
            "{}: closed {after:.3} s after SIGINT",
            conn.name
        );
    }

    // Every channel is the wire's bytes, but for two tails of a session
    // stopped mid-stream: what the server sent after the client's last
    // read, and a last client message handed to the sink whose write was
    // dropped (one SPICE message at most: 64 KiB).
    for line in ground_truth::check_stopped_capture(&capture, &session, usize::MAX, 64 << 10) {
        eprintln!("{line}");
    }
    let cap = spool::Capture::open(&capture).unwrap();
    let manifest = cap.manifest().unwrap();
    assert!(manifest.clean_shutdown, "{manifest:?}");
    for (name, c) in &manifest.channels {
        assert_eq!(c.dropped_records, 0, "{name}: drops at scroll load");
    }

    // The report, asked for mid-session, decodes like the wire.
    let report_pcap = dir.join("report.pcap");
    extract_traffic_pcap(&report, &report_pcap);
    let both = [Direction::ServerToClient, Direction::ClientToServer];
    let counts = assert_report_decodes_like_the_wire(&report_pcap, &truth, port, &session, &both);
    eprintln!("report messages per channel: {counts:?}");
    assert!(
        counts.get("display").copied().unwrap_or(0) > 100,
        "the report decodes too few display messages: {counts:?}"
    );
}

fn a_killed_ryll_leaves_staging_that_the_next_start_reclaims() {
    let QuietSession {
        bin,
        dir,
        runtime,
        port,
        _qemu,
    } = QuietSession::start();

    let killed = dir.path().join("killed");
    let mut first = Ryll::start(&bin, port, &killed, runtime.path());
    std::thread::sleep(Duration::from_secs(4));
    live::signal(&first.child, libc::SIGKILL);
    let _ = first.child.wait();
    let manifest = spool::store::manifest::Manifest::load(&killed.join("manifest.json")).unwrap();
    assert!(!manifest.clean_shutdown);
    let staging = PathBuf::from(manifest.staging_dir.expect("a staging directory"));
    assert!(staging.is_dir(), "{} is gone already", staging.display());

    let next = dir.path().join("next");
    let second = Ryll::start(&bin, port, &next, runtime.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while staging.exists() {
        assert!(
            Instant::now() < deadline,
            "{} was not reclaimed",
            staging.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, status) = second.interrupt(Duration::from_secs(5));
    assert!(status.success());

    let cap = spool::Capture::open(&killed).unwrap();
    let manifest = cap.manifest().unwrap();
    assert!(manifest.staging_dir.is_none(), "{manifest:?}");
    let mut records = 0;
    for ch in cap.channels() {
        let mut r = cap.reader(&ch.name).unwrap();
        while let Some(ev) = r.next_event() {
            if let spool::read::event::Event::Data(_) = ev {
                records += 1;
            }
        }
    }
    assert!(records > 0, "nothing of the killed session was kept");
}

fn sigterm_and_a_sigint_in_the_first_milliseconds_leave_clean_captures() {
    let QuietSession {
        bin,
        dir,
        runtime,
        port,
        _qemu,
    } = QuietSession::start();

    // SIGTERM in a running session; SIGINT as soon as the capture exists,
    // while the session is still being set up. (Not a fixed delay: on a
    // loaded machine 20 ms can end before ryll's handler is installed, and
    // a signal then kills it before there is anything to close.)
    for (name, sig, after) in [
        ("sigterm", libc::SIGTERM, Some(Duration::from_secs(4))),
        ("early-sigint", libc::SIGINT, None),
    ] {
        let capture = dir.path().join(name);
        let ryll = Ryll::start(&bin, port, &capture, runtime.path());
        match after {
            Some(after) => std::thread::sleep(after),
            None => wait_for_path(&capture.join("manifest.json"), Duration::from_secs(10)),
        }
        let (took, status) = ryll.stop_with(sig, Duration::from_secs(5));
        assert!(
            took <= Duration::from_secs(5),
            "{name}: exited {took:?} after the signal"
        );
        assert!(status.success(), "{name}: {status:?}");
        let manifest = spool::store::manifest::Manifest::load(&capture.join("manifest.json"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(manifest.clean_shutdown, "{name}: {manifest:?}");
        assert!(manifest.staging_dir.is_none(), "{name}: {manifest:?}");
    }
}

/// Every channel's bytes each way in the report (past its synthetic link
/// phase) are one contiguous stretch of the same channel's on the wire.
fn assert_report_bytes_are_wire_stretches(report_pcap: &Path, session: &Session) {
    let report = e2e::recorded::load(report_pcap, tools::SERVER_PORT)
        .expect("the report loads as a session");
    for conn in &report.connections {
        let wire = session
            .channel(&conn.name)
            .unwrap_or_else(|| panic!("{}: not on the wire", conn.name));
        for dir in [Direction::ServerToClient, Direction::ClientToServer] {
            let from_server = dir == Direction::ServerToClient;
            let got = conn.stream(dir);
            let want = wire.stream(dir);
            let (got, want) = (
                ground_truth::post_link(&got, from_server),
                ground_truth::post_link(&want, from_server),
            );
            assert!(
                is_stretch(got, want),
                "{} {dir:?}: the report's {} bytes are not a stretch of the wire's {}",
                conn.name,
                got.len(),
                want.len()
            );
        }
    }
}

/// Whether `part` occurs in `whole` as one contiguous run.
fn is_stretch(part: &[u8], whole: &[u8]) -> bool {
    let Some(head) = part.get(..part.len().min(64)) else {
        return true;
    };
    if head.is_empty() {
        return true;
    }
    whole
        .windows(head.len())
        .enumerate()
        .filter(|(_, w)| *w == head)
        .any(|(at, _)| whole.get(at..at + part.len()) == Some(part))
}

/// The report a `bugreport: wrote PATH` log line names.
fn reported_path(line: &str) -> PathBuf {
    PathBuf::from(line.rsplit("wrote ").next().unwrap_or_default().trim())
}

/// Polls `done` every `every` until it holds or `timeout` passes; the
/// caller's next step shows which.
fn wait_until(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(every);
    }
}

/// Waits, polling every millisecond, until `path` exists, or `timeout`
/// passes.
fn wait_for_path(path: &Path, timeout: Duration) {
    wait_until(timeout, Duration::from_millis(1), || path.exists());
}

/// Waits until the file at `path` holds `bytes`, or `timeout` passes.
fn wait_for_file_size(path: &Path, bytes: u64, timeout: Duration) {
    wait_until(timeout, Duration::from_millis(200), || {
        std::fs::metadata(path).map_or(0, |m| m.len()) >= bytes
    });
}

/// Regular files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&e.path())),
            Ok(_) => out.push(e.path()),
            Err(_) => {}
        }
    }
    out
}

fn without_capture_the_memory_ring_reports_like_the_wire_and_leaves_nothing() {
    let mut busy = BusySession::start();
    let (port, truth) = (busy.port, busy.truth.clone());
    let dir = busy.dir.path().to_path_buf();
    let reports = dir.join("reports");
    let ryll = Ryll::without_capture(&busy.bin, port, &reports, busy.runtime.path());
    ryll.wait_for_log("traffic ring: recording in memory", Duration::from_secs(10));
    // Until the guest has sent more than the ring holds (it boots first).
    wait_for_file_size(&truth, 48 << 20, Duration::from_secs(90));
    live::signal(&ryll.child, libc::SIGUSR1);
    let report = reported_path(&ryll.wait_for_log("bugreport: wrote", Duration::from_secs(30)));
    // While it runs, the ring is on tmpfs only: the reports are the only
    // files written anywhere else.
    assert_eq!(files_under(&reports), vec![report.clone()]);
    let (took, status) = ryll.interrupt(Duration::from_secs(5));
    busy.stop();
    assert!(
        status.success() && took <= Duration::from_secs(5),
        "{status:?} {took:?}"
    );
    let left = files_under(busy.runtime.path());
    assert!(left.is_empty(), "exit left {left:?}");

    let report_pcap = dir.join("report.pcap");
    extract_traffic_pcap(&report, &report_pcap);
    let session = ground_truth::load_ground_truth(&truth, port);
    let size = std::fs::metadata(&report_pcap).unwrap().len();
    assert!(
        size <= 24_000_000,
        "{size} bytes: over ryll's report budget"
    );
    // Every byte each way is a stretch of the wire; the server's messages
    // also decode as the wire's do. Not the client's: a ring's report
    // starts after the client's first display messages, which tshark 4.0
    // loses its way in on the wire (then decoding none of the thousands of
    // ACKs after them), so the report decodes more of them than the wire.
    assert_report_bytes_are_wire_stretches(&report_pcap, &session);
    let server = [Direction::ServerToClient];
    let counts = assert_report_decodes_like_the_wire(&report_pcap, &truth, port, &session, &server);
    eprintln!("report: {size} bytes, server messages per channel: {counts:?}");
    assert!(
        counts.get("display").copied().unwrap_or(0) > 100,
        "the report decodes too few display messages: {counts:?}"
    );
    // A busy session fills the ring: the report holds tens of MB of it.
    assert!(size > 10_000_000, "a {size}-byte report of a busy session");
}

fn a_killed_session_without_capture_becomes_a_bug_report_at_the_next_start() {
    let QuietSession {
        bin,
        dir,
        runtime,
        port,
        _qemu,
    } = QuietSession::start();
    let reports = dir.path().join("reports");
    let mut first = Ryll::without_capture(&bin, port, &reports, runtime.path());
    first.wait_for_log("traffic ring: recording in memory", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    live::signal(&first.child, libc::SIGKILL);
    let _ = first.child.wait();
    let ring_root = runtime.path().join("ryll-ring");
    assert_eq!(files_under(&reports), Vec::<PathBuf>::new());
    assert!(
        !files_under(&ring_root).is_empty(),
        "the killed session's ring is gone"
    );

    let second = Ryll::without_capture(&bin, port, &reports, runtime.path());
    let line = second.wait_for_log("bug report written to", Duration::from_secs(30));
    let zip = PathBuf::from(line.rsplit("written to ").next().unwrap().trim());
    second.wait_for_log("traffic ring: recording in memory", Duration::from_secs(10));
    let (_, status) = second.interrupt(Duration::from_secs(5));
    assert!(status.success());
    assert_eq!(files_under(&reports), vec![zip.clone()]);
    assert!(
        files_under(runtime.path()).is_empty(),
        "{:?}",
        files_under(runtime.path())
    );

    let pcap = dir.path().join("crash.pcap");
    extract_traffic_pcap(&zip, &pcap);
    let messages = tools::spice_messages(&pcap, tools::SERVER_PORT);
    let decoded: usize = messages.values().map(Vec::len).sum();
    assert!(messages.len() >= 4, "channels decoded: {messages:?}");
    assert!(decoded > 20, "only {decoded} messages decode");
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(
            patched_ryll_under_load_keeps_the_wire_reports_and_stops_at_once,
            live::LOOPBACK_CAPTURE,
            live::SPICE_GUEST,
            PATCHED_RYLL
        ),
        needs::test!(
            a_killed_ryll_leaves_staging_that_the_next_start_reclaims,
            needs::QEMU,
            PATCHED_RYLL
        ),
        needs::test!(
            sigterm_and_a_sigint_in_the_first_milliseconds_leave_clean_captures,
            needs::QEMU,
            PATCHED_RYLL
        ),
        needs::test!(
            without_capture_the_memory_ring_reports_like_the_wire_and_leaves_nothing,
            live::LOOPBACK_CAPTURE,
            live::SPICE_GUEST,
            PATCHED_RYLL
        ),
        needs::test!(
            a_killed_session_without_capture_becomes_a_bug_report_at_the_next_start,
            needs::QEMU,
            needs::TSHARK,
            PATCHED_RYLL
        ),
    ])
}
