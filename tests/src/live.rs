//! Live peers for the end-to-end tests: real SPICE servers (QEMU, and the
//! busy guest of `tests/guest/spice-guest`), tshark on loopback as the
//! ground truth, and child processes that never outlive a test.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use needs::Need;

/// Kills (SIGTERM, then SIGKILL) and reaps a child when dropped, so
/// servers and tshark never outlive the test, whatever fails.
pub struct Guard {
    child: Option<Child>,
    name: &'static str,
}

impl Guard {
    /// Guards `child`, called `name` in messages.
    pub fn new(child: Child, name: &'static str) -> Guard {
        Guard {
            child: Some(child),
            name,
        }
    }

    /// The child's pid, while it has not been stopped.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// SIGTERM (tshark then finishes its file), wait up to `grace`, then
    /// SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Sends `sig` to `child` (not yet reaped).
pub fn signal(child: &Child, sig: i32) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Ports [`free_port`] chooses from: below Linux's ephemeral range
/// (32768–60999), so no connection elsewhere on the machine takes one as
/// its client port. A port the kernel handed out (`bind(0)`) is an
/// ephemeral one: between the test letting it go and the server binding
/// it, or while the test's `tcp port N` capture runs, another process's
/// connection could use the same number, and its bytes would end up in the
/// ground truth.
const TEST_PORTS: std::ops::Range<u16> = 20000..32000;

/// A loopback port nobody listens on right now, from [`TEST_PORTS`].
pub fn free_port() -> u16 {
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let start = (seed % u32::from(span)) as u16;
    (0..span)
        .map(|i| TEST_PORTS.start + (start + i) % span)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free loopback port below the ephemeral range")
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the SPICE server never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Recording loopback traffic with tcpdump, the tests' ground truth:
/// tcpdump, and the right to capture (root, or CAP_NET_RAW).
pub const LOOPBACK_CAPTURE: Need = Need::Custom(loopback_capture_allowed);

fn loopback_capture_allowed() -> Result<(), String> {
    needs::TCPDUMP.check()?;
    let ok = Command::new("tcpdump")
        .args(["-i", "lo", "-c", "1", "-w", "/dev/null", "--immediate-mode"])
        .args(["tcp", "port", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            // Nothing goes to port 1: a tcpdump still running after a
            // moment was allowed to open lo.
            std::thread::sleep(Duration::from_millis(500));
            let running = c.try_wait()?.is_none();
            let _ = c.kill();
            let _ = c.wait();
            Ok(running)
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err("needs the right to capture on lo: root, or CAP_NET_RAW".into())
    }
}

/// Starts tcpdump on loopback for `port`, writing a pcap to `out`, and
/// returns once it is capturing: tcpdump says "listening on" only after
/// the capture is active, and writes every packet as it comes (`-U`).
/// (tshark will not do: it prints "Capturing on" when it has started
/// dumpcap, which on a loaded machine opened the interface seconds later,
/// after ryll had connected, so the ground truth lacked the link phases.)
pub fn start_loopback_capture(port: u16, out: &Path) -> Guard {
    let mut child = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "--immediate-mode", "-s", "0"])
        // A kernel buffer of 256 MiB (in KiB) rather than the default 2
        // MiB: a busy guest floods loopback, and a packet dropped on a
        // loaded machine breaks the ground truth's reassembly.
        .args(["-B", "262144", "-w"])
        .arg(out)
        .args(["tcp", "port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tcpdump");
    let stderr = child.stderr.take().expect("tcpdump stderr");
    let guard = Guard::new(child, "tcpdump");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("tcpdump never started capturing");
    guard
}

/// QEMU's SPICE server on `port` with no guest (the SeaBIOS/iPXE
/// screens): a quiet session.
pub fn start_quiet_qemu(port: u16) -> Guard {
    let qemu = Command::new("qemu-system-x86_64")
        .args([
            "-display",
            "none",
            "-vga",
            "qxl",
            "-m",
            "128",
            "-nodefaults",
        ])
        .args(["-machine", "pc", "-accel", "tcg"])
        .arg("-spice")
        .arg(format!("port={port},addr=127.0.0.1,disable-ticketing=on"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting QEMU");
    Guard::new(qemu, "qemu")
}

/// `tests/guest/spice-guest`: a real SPICE server whose guest keeps the
/// screen busy.
pub fn spice_guest_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/spice-guest")
}

/// The busy guest: QEMU, a kernel in /boot and a static busybox (what the
/// script needs besides itself).
pub const SPICE_GUEST: Need = Need::Custom(spice_guest_present);

fn spice_guest_present() -> Result<(), String> {
    needs::QEMU.check()?;
    let kernel = std::fs::read_dir("/boot").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
    });
    if !kernel {
        return Err("needs a kernel in /boot: apt-get install linux-image-amd64".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Err("needs a static busybox: apt-get install busybox-static".into());
    }
    Need::Tool {
        command: "cpio",
        package: "cpio",
    }
    .check()
}

/// Starts the busy guest on `port` with `load` (`scroll`, `random`,
/// `mixed`, `idle`) and waits until it listens.
pub fn start_spice_guest(port: u16, load: &str) -> Guard {
    let child = Command::new("bash")
        .arg(spice_guest_script())
        .arg(port.to_string())
        .arg(load)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting spice-guest");
    let guard = Guard::new(child, "spice-guest");
    wait_for_port(port, Duration::from_secs(60));
    guard
}
