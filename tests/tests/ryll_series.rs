//! The ryll patch series (`scripts/ryll-0.3.0/NNNN-*.patch`), as an
//! upstream maintainer would take it:
//!
//! - each patch applies to ryll 0.3.0's published source on top of those
//!   before it, exactly: no fuzz, no offset, nothing rejected — so every
//!   prefix of the series is a tree `scripts/build-ryll.sh --upto NNNN`
//!   builds (building each prefix takes minutes, so it is done by hand; the
//!   README says when it last was);
//! - each is a numbered mail (`git format-patch`): `[PATCH n/N]` matching
//!   its file name, a subject, and a message saying why before the diff.
//!
//! The published source comes from `scripts/build-ryll.sh --stock
//! --source-only`, fetched through cargo like every build of ryll here.
//! Without `patch`, or where cargo cannot fetch ryll, the first test is
//! reported ignored with the reason; under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use needs::Need;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The patches of the series, in the order they apply (their names).
fn series() -> Vec<PathBuf> {
    let dir = repo().join("scripts/ryll-0.3.0");
    let mut patches: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    patches.sort();
    assert!(!patches.is_empty(), "no patches in {}", dir.display());
    patches
}

/// A fresh copy of ryll 0.3.0's published source, unpatched, from
/// build-ryll.sh (once per run of this binary), or why there is none.
fn published_source() -> &'static Result<PathBuf, String> {
    static SOURCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ryll-series");
        let out = Command::new(repo().join("scripts/build-ryll.sh"))
            .arg(&dest)
            .args(["--stock", "--source-only"])
            .output()
            .map_err(|e| format!("scripts/build-ryll.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "needs ryll 0.3.0's published source, which scripts/build-ryll.sh \
                 --source-only could not fetch: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
}

const PUBLISHED_SOURCE: Need = Need::Custom(|| published_source().clone().map(|_| ()));

fn each_patch_applies_exactly_on_top_of_those_before_it() {
    let tree = published_source().as_ref().expect("checked by the harness");
    for patch in series() {
        let name = patch.file_name().expect("a file name").to_string_lossy();
        let out = Command::new("patch")
            .args(["-p1", "--forward", "--batch", "--fuzz=0"])
            .args(["--no-backup-if-mismatch", "--reject-file=-"])
            .arg("-d")
            .arg(tree)
            .arg("-i")
            .arg(&patch)
            .output()
            .expect("run patch");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} does not apply on top of the patches before it:\n{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // GNU patch says "Hunk #2 succeeded at 120 (offset 3 lines)" or
        // "(fuzz 1)" for a hunk that applied, but not where it was made.
        let inexact: Vec<&str> = said
            .lines()
            .filter(|l| !l.starts_with("patching file "))
            .collect();
        assert!(
            inexact.is_empty(),
            "{name} applies, but not exactly where it was made (refresh it):\n{}",
            inexact.join("\n")
        );
    }
}

/// What a patch says before its diff: its `[PATCH n/N]` and subject, and
/// its message.
struct Mail {
    number: usize,
    of: usize,
    subject: String,
    message: String,
}

/// Reads the header `git format-patch` writes, up to the `---` that
/// separates the message from the diffstat and diff.
fn mail(text: &str) -> Result<Mail, String> {
    let (header, rest) = text
        .split_once("\n\n")
        .ok_or("no blank line after the mail header")?;
    if !header.starts_with("From ") {
        return Err("does not start like a mail (`From <commit> …`)".into());
    }
    // A long subject goes on over lines that start with a space.
    let mut lines = header.lines().skip_while(|l| !l.starts_with("Subject: "));
    let mut subject = lines
        .next()
        .ok_or("no Subject:")?
        .trim_start_matches("Subject: ")
        .to_string();
    for more in lines.take_while(|l| l.starts_with(' ')) {
        subject.push_str(more);
    }
    let (tag, subject) = subject
        .strip_prefix("[PATCH ")
        .and_then(|s| s.split_once("] "))
        .ok_or("the subject does not start with [PATCH n/N]")?;
    let (number, of) = tag
        .split_once('/')
        .and_then(|(n, of)| Some((n.parse().ok()?, of.parse().ok()?)))
        .ok_or("the subject does not start with [PATCH n/N]")?;
    let (message, _) = rest
        .split_once("\n---\n")
        .ok_or("no `---` line between the message and the diff")?;
    Ok(Mail {
        number,
        of,
        subject: subject.to_string(),
        message: message.trim().to_string(),
    })
}

fn each_patch_is_a_numbered_mail_saying_why() {
    let patches = series();
    for (i, patch) in patches.iter().enumerate() {
        let name = patch.file_name().expect("a file name").to_string_lossy();
        let text = std::fs::read_to_string(patch).expect("read the patch");
        let mail = mail(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            name.get(..5),
            Some(format!("{:04}-", i + 1).as_str()),
            "{name}: the series is numbered from 0001 without gaps"
        );
        assert_eq!(
            (mail.number, mail.of),
            (i + 1, patches.len()),
            "{name}: [PATCH n/N] does not match its place in the series"
        );
        assert!(!mail.subject.trim().is_empty(), "{name}: an empty subject");
        // Why, and what: a paragraph at least, not a one-liner.
        assert!(
            mail.message.lines().count() >= 3,
            "{name}: the message does not say why:\n{}",
            mail.message
        );
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(
            each_patch_applies_exactly_on_top_of_those_before_it,
            needs::PATCH,
            PUBLISHED_SOURCE
        ),
        needs::test!(each_patch_is_a_numbered_mail_saying_why),
    ])
}
