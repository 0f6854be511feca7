//! What ryll links stays lean: `cargo tree -p ryll-hook -e normal` holds
//! no command-line, terminal-progress or signal-handler crate (`clap`,
//! `indicatif`, `ctrlc`). Those belong to the tools (`ryll-tools`, and
//! spool2pcap's `cli` feature, which ryll-hook turns off), never to the
//! library a SPICE client embeds. (tokio is there through the renderer
//! ryll-hook implements a trait of, which ryll links anyway.)

use std::process::Command;

/// Crates ryll-hook must not pull in.
const FORBIDDEN: &[&str] = &["clap", "indicatif", "ctrlc"];

#[test]
fn ryll_hook_links_no_cli_progress_or_signal_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--manifest-path", manifest])
        .args(["-p", "ryll-hook", "-e", "normal", "--prefix", "depth"])
        .arg("--no-dedupe")
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    // Each line is "<depth><name> v<version> …"; the path to a line is the
    // last line seen at each smaller depth.
    let mut path: Vec<String> = Vec::new();
    let mut offending = Vec::new();
    for line in tree.lines() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        let name = line[digits..].split(' ').next().unwrap_or_default();
        path.truncate(depth);
        path.push(name.to_string());
        if FORBIDDEN.contains(&name) {
            offending.push(path.join(" -> "));
        }
    }
    assert!(
        path.first().is_some_and(|root| root == "ryll-hook"),
        "unexpected cargo tree output:\n{tree}"
    );
    assert!(
        offending.is_empty(),
        "ryll-hook links crates it must not:\n{}",
        offending.join("\n")
    );
}
