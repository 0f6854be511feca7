//! `metadata.json`: what the capture writer records about a session beside
//! the spool (ryll's version, the platform, the SPICE server, when the
//! capture started), read so that a pcapng file, `info` and a bug report
//! can say where a capture came from.
//!
//! The spool format does not define this file, so its schema is defined
//! here, once: [`CaptureMetadata`] is what `ryll-hook` writes (with every
//! field it knows) and what every reader gets back. The fields are ryll's
//! own (`ryll_version`, `ryll_git_sha`, `platform_os`, `platform_arch`,
//! `target`, `target_tls_port`, `capture_started`) plus what `ryll-hook`
//! adds (`target_host`/`target_port`, so that tools need not parse
//! `target`, and `capture_writer`).
//!
//! A bug report may come from any ryll version, or have been edited, so
//! reading is lenient: every field is optional, a number may be written as
//! a string and the other way round, unknown fields are ignored, and a file
//! that cannot be read or parsed only loses its facts (reported as a
//! problem), never the conversion. The file is read without following a
//! symlink or waiting on a FIFO, and only up to [`MAX_METADATA_BYTES`]. The
//! text ends up in file comments, reports and on a terminal, so control
//! characters are replaced and every value is cut to [`MAX_FIELD_CHARS`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::guard::InputError;

/// File name of the session metadata inside a capture directory.
pub const METADATA_FILE: &str = "metadata.json";

/// Largest metadata file read; anything larger is not ryll's.
pub const MAX_METADATA_BYTES: u64 = 64 << 10;

/// Longest value kept, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// `metadata.json`, the one definition of its fields: the capture writer
/// serializes it, [`load`] and [`parse`] read it back. Every field is
/// optional because a file from another ryll version, or an edited one,
/// may lack any of them; the writer fills every field but
/// [`ryll_git_sha`](Self::ryll_git_sha). Serialized, a field that is not
/// known is `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaptureMetadata {
    /// ryll release the capture speaks for.
    pub ryll_version: Option<String>,
    /// The git commit ryll was built from (ryll's own files only).
    pub ryll_git_sha: Option<String>,
    /// Operating system ryll ran on (`std::env::consts::OS`).
    pub platform_os: Option<String>,
    /// Machine architecture ryll ran on (`std::env::consts::ARCH`).
    pub platform_arch: Option<String>,
    /// The server as ryll shows it (`display_target()`: `host:port`, the
    /// TLS port when there is one, or a proxy with the real target
    /// redacted).
    pub target: Option<String>,
    /// The SPICE server's host name or address.
    pub target_host: Option<String>,
    /// The SPICE server's plain-text port.
    pub target_port: Option<u16>,
    /// The SPICE server's TLS port; `null` without TLS.
    pub target_tls_port: Option<u16>,
    /// UTC start of the capture, `YYYY-MM-DDTHH:MM:SSZ` as ryll writes it.
    pub capture_started: Option<String>,
    /// The program that wrote the spool (`ryll-hook <version>`): the
    /// directory holds a spool, not ryll's pcaps, and this says so to
    /// whoever opens it.
    pub capture_writer: Option<String>,
}

impl CaptureMetadata {
    /// Whether nothing at all is known.
    pub fn is_empty(&self) -> bool {
        *self == CaptureMetadata::default()
    }

    /// The server's host: `target_host`, or else ryll's `target` (which is
    /// all some versions write).
    pub fn host(&self) -> Option<&str> {
        self.target_host.as_deref().or(self.target.as_deref())
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
        match (self.host(), self.target_port) {
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
pub fn load(capture: &Path) -> Result<Option<CaptureMetadata>, MetadataError> {
    let path = capture.join(METADATA_FILE);
    let Some(text) = crate::guard::read_input(&path, MAX_METADATA_BYTES)? else {
        return Ok(None);
    };
    parse(&text)
        .map(Some)
        .map_err(|source| MetadataError::Invalid { path, source })
}

/// Parses the text of a metadata file, leniently (see the module docs). A
/// port that is not a number from 0 to 65535 is not known.
pub fn parse(text: &[u8]) -> Result<CaptureMetadata, ParseError> {
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
    let port_field = |key: &str| -> Option<u16> {
        match obj.get(key)? {
            serde_json::Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    Ok(CaptureMetadata {
        ryll_version: text_field("ryll_version"),
        ryll_git_sha: text_field("ryll_git_sha"),
        platform_os: text_field("platform_os"),
        platform_arch: text_field("platform_arch"),
        target: text_field("target"),
        target_host: text_field("target_host"),
        target_port: port_field("target_port"),
        target_tls_port: port_field("target_tls_port"),
        capture_started: text_field("capture_started"),
        capture_writer: text_field("capture_writer"),
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
    fn what_the_writer_serializes_reads_back_unchanged() {
        let written = CaptureMetadata {
            ryll_version: Some("0.3.0".into()),
            ryll_git_sha: None,
            platform_os: Some("linux".into()),
            platform_arch: Some("x86_64".into()),
            target: Some("spice.example:5901".into()),
            target_host: Some("spice.example".into()),
            target_port: Some(5900),
            target_tls_port: Some(5901),
            capture_started: Some("2025-01-02T03:04:05Z".into()),
            capture_writer: Some("ryll-hook 0.1.0".into()),
        };
        let json = serde_json::to_vec_pretty(&written).unwrap();
        assert_eq!(parse(&json).unwrap(), written);
        let raw: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(raw["ryll_git_sha"].is_null());
        assert_eq!(raw["target_port"], 5900);
    }

    #[test]
    fn out_of_range_ports_are_not_known() {
        let m = parse(br#"{"target_port": 70000, "target_tls_port": "-1"}"#).unwrap();
        assert_eq!((m.target_port, m.target_tls_port), (None, None));
    }

    #[test]
    fn hostile_metadata_is_tamed_or_refused() {
        let m = parse(br#"{"target": "evil\u001b[2Jhost", "target_port": "5901"}"#).unwrap();
        assert_eq!(m.host(), Some("evil\u{FFFD}[2Jhost"));
        assert_eq!(m.target_host, None);
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
