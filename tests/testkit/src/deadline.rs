//! Work a test gives a deadline: a command that could block on what a
//! hostile capture holds (a FIFO, a lock), or a library call that could.
//! Past the deadline the test fails naming what blocked, instead of
//! hanging the whole run.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `cmd` (standard input empty, output captured) and returns what it
/// printed and how it ended; kills it and panics if it has not exited
/// within `limit`. Its output is read as it comes, so a command that
/// prints much never blocks on a full pipe.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}: it blocked");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("reading the child's stdout"),
        stderr: stderr.join().expect("reading the child's stderr"),
    }
}

/// Runs `f` on another thread and returns what it returns; panics if it
/// has not returned within `limit`, saying `what` blocked (the thread is
/// left behind, blocked, until the test process ends).
pub fn call_within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what}: still running after {limit:?}: it blocked"),
    }
}
