//! spool2pcap's man page, generated from its clap definitions
//! (`spool2pcap man`), renders with groff without a warning: what `man`
//! itself would show. (The completion scripts are checked with `bash -n`
//! in spool2pcap's own CLI tests.)
//!
//! Without groff the test is reported ignored, with the reason; under
//! `CI=true` it fails.

use std::io::Write;
use std::process::{Command, Stdio};

fn man_page_renders_with_groff() {
    let page = Command::new(e2e::tools::spool2pcap_bin())
        .arg("man")
        .output()
        .expect("spool2pcap runs");
    assert!(page.status.success());
    assert!(page.stdout.len() > 1000, "{} bytes", page.stdout.len());
    let mut groff = Command::new("groff")
        .args(["-man", "-ww", "-Tutf8", "-P-cbou"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff runs");
    groff.stdin.take().unwrap().write_all(&page.stdout).unwrap();
    let out = groff.wait_with_output().unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "{warnings}");
    let text = String::from_utf8_lossy(&out.stdout);
    // Rendered: the macros are gone, the words are there.
    assert!(!text.contains(".SH"), "{text}");
    for word in [
        "NAME",
        "SYNOPSIS",
        "spool2pcap-convert",
        "spool2pcap-verify",
    ] {
        assert!(text.contains(word), "{word}: {text}");
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![needs::test!(
        man_page_renders_with_groff,
        needs::GROFF
    )])
}
