//! The first check of every command's capture directory, and the hint when
//! the user named something next to the capture instead of it: a file in
//! it, its `spool/`, or a folder of captures.

use std::path::Path;

use spool2pcap::guard::{check_capture_dir, clean, MAX_TEXT_CHARS};

/// Entries of a folder looked at for captures inside it: enough for a hint,
/// bounded for a huge directory.
const MAX_LISTED: usize = 4096;

/// Captures named in a hint.
const MAX_NAMED: usize = 5;

/// Checks `dir` as every command does before reading it
/// ([`check_capture_dir`]), with one wording for all of them, and says
/// what to give instead where it can tell.
pub fn check_capture(dir: &Path) -> Result<(), String> {
    let shown = |p: &Path| clean(&p.display().to_string(), MAX_TEXT_CHARS);
    if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        let parent = dir.parent().filter(|p| is_capture(p));
        return Err(format!(
            "{}: is a file, not a capture directory{}",
            shown(dir),
            parent.map_or_else(
                || " (give the directory holding manifest.json and spool/)".to_string(),
                |p| format!(" (its capture directory is {})", shown(p))
            )
        ));
    }
    check_capture_dir(dir)
        .map_err(|e| format!("{}{}", clean(&e.to_string(), MAX_TEXT_CHARS), hint(dir)))
}

/// Whether `dir` looks like a capture directory (what [`check_capture_dir`]
/// would accept: a manifest or a `spool/`).
fn is_capture(dir: &Path) -> bool {
    check_capture_dir(dir).is_ok()
}

/// What to give instead of `dir`, which is no capture directory: its
/// parent if it is a capture's `spool/`, the captures inside it if it is a
/// folder of them; or nothing.
fn hint(dir: &Path) -> String {
    let shown = |p: &Path| clean(&p.display().to_string(), MAX_TEXT_CHARS);
    if dir.file_name().is_some_and(|n| n == "spool") {
        if let Some(parent) = dir.parent().filter(|p| is_capture(p)) {
            return format!(
                "; it is the spool/ of the capture {}: give that directory",
                shown(parent)
            );
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let mut captures: Vec<String> = entries
        .take(MAX_LISTED)
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && is_capture(&e.path()))
        .map(|e| clean(&e.file_name().to_string_lossy(), MAX_TEXT_CHARS))
        .collect();
    if captures.is_empty() {
        return String::new();
    }
    captures.sort();
    let more = captures.len().saturating_sub(MAX_NAMED);
    captures.truncate(MAX_NAMED);
    format!(
        "; it holds captures ({}{}): give one of them (`spool2pcap info {}/*` summarizes them all)",
        captures.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        shown(dir)
    )
}
