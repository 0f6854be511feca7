//! A test that needs a process it can kill (a writer killed mid-append,
//! a writer another process follows) runs it as a child: the same test
//! binary, re-run with only that test selected. The child sees an
//! environment variable the parent set and plays its part instead of the
//! test; the parent reads what it prints, line by line.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// This test binary, set to run test `test` alone, its output uncaptured
/// so the child's lines reach the parent (libtest and libtest-mimic take
/// the same arguments).
pub fn this_test(test: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("the test binary's path"));
    c.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    c.stdout(Stdio::piped());
    c
}

/// Starts test `test` of this binary as a writer child, passing it a
/// capture directory and a staging root in the variables `{env}_CAPTURE`
/// and `{env}_STAGING` (read back by [`passed_dirs`]); its standard error
/// goes to `stderr`.
pub fn spawn_writer(
    env: &str,
    test: &str,
    capture: &Path,
    staging: &Path,
    stderr: Stdio,
) -> Running {
    let mut c = this_test(test);
    c.env(format!("{env}_CAPTURE"), capture);
    c.env(format!("{env}_STAGING"), staging);
    Running::spawn(c.stderr(stderr))
}

/// In the child: the capture directory and staging root [`spawn_writer`]
/// passed; `None` in the parent.
pub fn passed_dirs(env: &str) -> Option<(PathBuf, PathBuf)> {
    let capture = std::env::var_os(format!("{env}_CAPTURE"))?;
    let staging = std::env::var_os(format!("{env}_STAGING"))?;
    Some((capture.into(), staging.into()))
}

/// A running child and its standard output as lines.
pub struct Running {
    pub process: Child,
    pub lines: Lines<BufReader<ChildStdout>>,
}

impl Running {
    /// Starts `c` (from [`this_test`], or any command whose standard
    /// output is piped).
    pub fn spawn(c: &mut Command) -> Running {
        let mut process = c.spawn().expect("spawning the child");
        let out = process.stdout.take().expect("the child's stdout piped");
        Running {
            process,
            lines: BufReader::new(out).lines(),
        }
    }

    /// Kills the child with SIGKILL, as a crash would, and reaps it.
    pub fn kill(mut self) {
        self.process.kill().expect("SIGKILL to the child");
        self.process.wait().expect("reaping the child");
    }
}
