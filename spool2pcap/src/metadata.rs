//! `metadata.json`: what ryll writes about a capture session beside the
//! spool (its version, the platform, the SPICE server, when the capture
//! started), read so that a pcapng file can say where it came from.
//!
//! The spool format does not define this file; ryll writes it by hand
//! (`ryll_version`, `ryll_git_sha`, `platform_os`, `platform_arch`,
//! `target_host`, `target_port`, `target_tls_port`, `capture_started`). A
//! bug report may come from any ryll version, or have been edited, so every
//! field is optional, unknown fields are ignored, and a file that cannot be
//! read or parsed only loses its facts (reported as a problem), never the
//! conversion. The text ends up in file comments and on a terminal, so
//! control characters are replaced and every value is cut to
//! [`MAX_FIELD_CHARS`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::guard::InputError;

/// File name of the session metadata inside a capture directory.
pub const METADATA_FILE: &str = "metadata.json";

/// Largest metadata file read; anything larger is not ryll's.
pub const MAX_METADATA_BYTES: u64 = 64 << 10;

/// Longest value kept, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// The facts of `metadata.json` this converter uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionMetadata {
    /// ryll's version.
    pub ryll_version: Option<String>,
    /// The git commit ryll was built from.
    pub ryll_git_sha: Option<String>,
    /// Operating system ryll ran on.
    pub platform_os: Option<String>,
    /// Machine architecture ryll ran on.
    pub platform_arch: Option<String>,
    /// The SPICE server's host (`target_host`, or `target` in some versions).
    pub target_host: Option<String>,
    /// The SPICE server's port.
    pub target_port: Option<u64>,
    /// The SPICE server's TLS port.
    pub target_tls_port: Option<u64>,
    /// When the capture started, as ryll wrote it.
    pub capture_started: Option<String>,
}

impl SessionMetadata {
    /// Whether nothing at all is known.
    pub fn is_empty(&self) -> bool {
        *self == SessionMetadata::default()
    }

    /// `ryll 0.3.1 (abc123) on linux/x86_64, server host:5900, capture
    /// started 2025-…`: whatever is known, in words.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.ryll_version {
            let mut s = format!("ryll {v}");
            if let Some(g) = &self.ryll_git_sha {
                s.push_str(&format!(" ({g})"));
            }
            parts.push(s);
        }
        match (&self.platform_os, &self.platform_arch) {
            (Some(os), Some(arch)) => parts.push(format!("on {os}/{arch}")),
            (Some(x), None) | (None, Some(x)) => parts.push(format!("on {x}")),
            (None, None) => {}
        }
        match (&self.target_host, self.target_port) {
            (Some(h), Some(p)) => parts.push(format!("server {h}:{p}")),
            (Some(h), None) => parts.push(format!("server {h}")),
            (None, Some(p)) => parts.push(format!("server port {p}")),
            (None, None) => {}
        }
        if let Some(p) = self.target_tls_port {
            parts.push(format!("TLS port {p}"));
        }
        if let Some(t) = &self.capture_started {
            parts.push(format!("capture started {t}"));
        }
        parts.join(", ")
    }
}

/// Why an existing `metadata.json` was ignored. The conversion goes on
/// without its facts; the message (which ends in "ignored") becomes a
/// problem of the report.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The file could not be opened or read (a symlink, a FIFO, too large…).
    #[error("{0}: ignored")]
    Unreadable(#[from] InputError),
    /// The file is not a metadata file.
    #[error("{}: {source}: ignored", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with its text.
        source: ParseError,
    },
}

/// Why the text of a metadata file could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
}

/// Reads `<capture>/metadata.json` (through [`crate::guard::read_input`]:
/// no symlink followed, no FIFO waited on). `Ok(None)` if there is none;
/// `Err` says why an existing one was ignored.
pub fn load(capture: &Path) -> Result<Option<SessionMetadata>, MetadataError> {
    let path = capture.join(METADATA_FILE);
    let Some(text) = crate::guard::read_input(&path, MAX_METADATA_BYTES)? else {
        return Ok(None);
    };
    parse(&text)
        .map(Some)
        .map_err(|source| MetadataError::Invalid { path, source })
}

/// Parses the text of a metadata file.
pub fn parse(text: &[u8]) -> Result<SessionMetadata, ParseError> {
    let value: serde_json::Value = serde_json::from_slice(text)?;
    let obj = value.as_object().ok_or(ParseError::NotAnObject)?;
    let text_field = |key: &str| -> Option<String> {
        match obj.get(key)? {
            serde_json::Value::String(s) => Some(clean(s)),
            serde_json::Value::Number(n) => Some(clean(&n.to_string())),
            _ => None,
        }
        .filter(|s| !s.is_empty())
    };
    let port_field = |key: &str| -> Option<u64> {
        match obj.get(key)? {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    Ok(SessionMetadata {
        ryll_version: text_field("ryll_version"),
        ryll_git_sha: text_field("ryll_git_sha"),
        platform_os: text_field("platform_os"),
        platform_arch: text_field("platform_arch"),
        target_host: text_field("target_host").or_else(|| text_field("target")),
        target_port: port_field("target_port"),
        target_tls_port: port_field("target_tls_port"),
        capture_started: text_field("capture_started"),
    })
}

/// A value fit for a file comment and a terminal ([`crate::guard::clean`]).
fn clean(s: &str) -> String {
    crate::guard::clean(s, MAX_FIELD_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ryll_metadata_parses_and_reads_well() {
        let m = parse(
            br#"{
  "ryll_version": "0.3.1",
  "ryll_git_sha": "abc1234",
  "platform_os": "linux",
  "platform_arch": "x86_64",
  "target_host": "spice.example",
  "target_port": 5900,
  "target_tls_port": null,
  "capture_started": "2025-01-02T03:04:05Z",
  "something_new": [1, 2]
}"#,
        )
        .unwrap();
        assert_eq!(m.ryll_version.as_deref(), Some("0.3.1"));
        assert_eq!(m.target_port, Some(5900));
        assert_eq!(m.target_tls_port, None);
        assert_eq!(
            m.describe(),
            "ryll 0.3.1 (abc1234), on linux/x86_64, server spice.example:5900, \
             capture started 2025-01-02T03:04:05Z"
        );
    }

    #[test]
    fn hostile_metadata_is_tamed_or_refused() {
        let m = parse(br#"{"target": "evil\u001b[2Jhost", "target_port": "5901"}"#).unwrap();
        assert_eq!(m.target_host.as_deref(), Some("evil\u{FFFD}[2Jhost"));
        assert_eq!(m.target_port, Some(5901));
        let long = format!(r#"{{"ryll_version": "{}"}}"#, "x".repeat(10_000));
        let m = parse(long.as_bytes()).unwrap();
        assert_eq!(m.ryll_version.unwrap().chars().count(), MAX_FIELD_CHARS);
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(b"{").is_err());
        assert!(parse(b"{}").unwrap().is_empty());
    }

    #[test]
    fn load_ignores_missing_refuses_links_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Ok(None)));
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, br#"{"ryll_version": "1"}"#).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(METADATA_FILE)).unwrap();
        assert!(load(dir.path()).is_err());
        std::fs::remove_file(dir.path().join(METADATA_FILE)).unwrap();
        std::fs::write(
            dir.path().join(METADATA_FILE),
            vec![b' '; MAX_METADATA_BYTES as usize + 1],
        )
        .unwrap();
        assert!(load(dir.path()).unwrap_err().to_string().contains("larger"));
        std::fs::write(dir.path().join(METADATA_FILE), br#"{"ryll_version": "1"}"#).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().unwrap().ryll_version.as_deref(),
            Some("1")
        );
    }
}
