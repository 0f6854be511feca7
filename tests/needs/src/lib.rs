//! What a test needs from the machine, and the harness that says so.
//!
//! Some tests drive tools a fresh machine lacks (tshark, QEMU, the patched
//! ryll, root to mount a tmpfs). A test that cannot run must not pass
//! silently: the harness ([`run`], on [libtest-mimic]) reports it as
//! *ignored*, with the reason and the Debian package that brings the tool,
//! in the summary of `cargo test` — and under `CI=true`, where `.ci/run`
//! installs everything, as a *failure*. This crate is the one definition of
//! those checks; every test binary that needs a tool is `harness = false`
//! and lists its tests with [`test!`](crate::test).
//!
//! ```no_run
//! fn converts() {}
//! fn dissects() {}
//! fn main() -> std::process::ExitCode {
//!     needs::run(vec![needs::test!(converts), needs::test!(dissects, needs::TSHARK)])
//! }
//! ```
//!
//! [libtest-mimic]: https://crates.io/crates/libtest-mimic

use std::path::Path;
use std::process::{Command, ExitCode};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Whether this run is CI (`CI=true`), where every need must be met.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Something a test needs. [`Need::check`] says whether this machine has it.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// A command that answers `--version`, and the Debian package with it.
    Tool {
        command: &'static str,
        package: &'static str,
    },
    /// Mounting a small tmpfs (root), to fill a filesystem up.
    TmpfsMount,
    /// Anything else: `Err` says what is missing and how to get it.
    Custom(fn() -> Result<(), String>),
}

/// tshark, the ground truth of the dissection tests.
pub const TSHARK: Need = Need::Tool {
    command: "tshark",
    package: "tshark",
};
/// tcpdump, the loopback ground truth of the live tests.
pub const TCPDUMP: Need = Need::Tool {
    command: "tcpdump",
    package: "tcpdump",
};
/// capinfos (comes with tshark), for the pcap files' own checks.
pub const CAPINFOS: Need = Need::Tool {
    command: "capinfos",
    package: "tshark",
};
/// groff, to check that spool2pcap's man page renders.
pub const GROFF: Need = Need::Tool {
    command: "groff",
    package: "groff-base",
};
/// QEMU, the real SPICE server.
pub const QEMU: Need = Need::Tool {
    command: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// patch, as scripts/build-ryll.sh applies the ryll patch series.
pub const PATCH: Need = Need::Tool {
    command: "patch",
    package: "patch",
};
/// Root, to mount small tmpfs filesystems.
pub const TMPFS_MOUNT: Need = Need::TmpfsMount;
/// Root, to give a file or directory to another user (`chown`), as a
/// second local user would have made it.
pub const ROOT: Need = Need::Custom(is_root);

fn is_root() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // The owner of this process's /proc entry is its effective user.
    match std::fs::metadata("/proc/self") {
        Ok(md) if md.uid() == 0 => Ok(()),
        _ => Err("needs root: to make files owned by another user".into()),
    }
}

impl Need {
    /// `Ok` when this machine has it, else the reason a test cannot run.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Need::Tool { command, package } => {
                let ok = Command::new(command)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    Ok(())
                } else {
                    Err(format!("needs {command}: apt-get install {package}"))
                }
            }
            Need::TmpfsMount => Tmpfs::mount("64k").map(drop),
            Need::Custom(check) => check(),
        }
    }
}

/// A test: its name, what it needs, and its body (which panics to fail).
pub struct Test {
    name: &'static str,
    needs: Vec<Need>,
    body: fn(),
}

impl Test {
    /// A test called `name` running `body`; see also [`test!`](crate::test).
    pub fn new(name: &'static str, body: fn()) -> Test {
        Test {
            name,
            needs: Vec::new(),
            body,
        }
    }

    /// Adds a need, checked in order just before the test would run.
    pub fn needs(mut self, need: Need) -> Test {
        self.needs.push(need);
        self
    }

    fn trial(self) -> Trial {
        let Test { name, needs, body } = self;
        Trial::ignorable_test(name, move || {
            if let Some(reason) = needs.iter().find_map(|n| n.check().err()) {
                if in_ci() {
                    return Err(Failed::from(format!(
                        "{reason}: required under CI=true (.ci/run installs it)"
                    )));
                }
                return Ok(Completion::ignored_with(reason));
            }
            body();
            Ok(Completion::Completed)
        })
    }
}

/// `test!(function, NEED, …)`: a [`Test`] named after its function.
#[macro_export]
macro_rules! test {
    ($body:ident $(, $need:expr)* $(,)?) => {
        $crate::Test::new(stringify!($body), $body)$(.needs($need))*
    };
}

/// Runs `tests` like `cargo test` would (same options and output); a test
/// whose need is missing is ignored with the reason, or fails under CI.
pub fn run(tests: Vec<Test>) -> ExitCode {
    let args = Arguments::from_args();
    let trials = tests.into_iter().map(Test::trial).collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// A small tmpfs mounted (mode 0700) on a fresh directory; unmounted on
/// drop. Mounting needs root.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`), or says why it cannot.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(Tmpfs { dir })
        } else {
            Err("needs root: it mounts a small tmpfs to fill it up".to_string())
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
