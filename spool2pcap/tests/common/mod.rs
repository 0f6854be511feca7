//! Helpers shared by spool2pcap's integration tests: the binary run with a
//! deadline and what it said, and the shipped fixture. What the tests of
//! other crates need too (reading a pcap back, deadlines, FIFOs) is in
//! `tests/testkit`; hand-built captures are
//! `spool2pcap::capture_builder`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Longest a run of the binary may take: every one in these tests is over
/// in well under a second, and one that blocks (on a FIFO, say) fails
/// the test instead of hanging it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs the `spool2pcap` binary with `args` (standard input empty); panics
/// if it has not exited by [`DEADLINE`], killing it first.
pub fn run(args: &[&std::ffi::OsStr]) -> Output {
    testkit::deadline::run_within(
        Command::new(env!("CARGO_BIN_EXE_spool2pcap")).args(args),
        DEADLINE,
    )
}

/// The arguments of [`run`], each anything `OsStr::new` takes.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*][..] };
}

/// The exit code; panics if a signal ended the run.
pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Fails, showing what it said, unless `o` said `what` on stderr.
pub fn assert_stderr_has(o: &Output, what: &str) {
    let said = stderr(o);
    assert!(said.contains(what), "{what:?} not in: {said}");
}

/// The capture shipped in `fixtures/`: a real four-channel session.
pub fn shipped_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/qemu-seabios-4ch")
}
