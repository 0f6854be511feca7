//! `metadata.json`, what ryll-hook says of the session it captures: the
//! schema is spool2pcap's ([`CaptureMetadata`], one definition for the
//! writer and the readers), the values are ryll's (its version, its
//! target as it shows it). The sink writes it when a capture starts; the
//! bug report reads it back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use spool::store::fsutil;

/// File name of the session description, and its schema (one definition,
/// in spool2pcap, which reads it; this crate writes it).
pub use spool2pcap::metadata::{CaptureMetadata, METADATA_FILE};

/// The version of the renderer this crate implements the trait of, which
/// is the ryll release it speaks for (ryll and its renderer share versions).
pub const RYLL_VERSION: &str = "0.3.0";

/// `metadata.json` for a capture of `host:port` (`tls_port` for TLS)
/// starting now, written by this crate for ryll [`RYLL_VERSION`]: every
/// field but `ryll_git_sha` (ryll-hook is not built from ryll's tree).
pub fn ryll_metadata(host: &str, port: u16, tls_port: Option<u16>) -> CaptureMetadata {
    CaptureMetadata {
        ryll_version: Some(RYLL_VERSION.into()),
        ryll_git_sha: None,
        platform_os: Some(std::env::consts::OS.into()),
        platform_arch: Some(std::env::consts::ARCH.into()),
        target: Some(format!("{host}:{}", tls_port.unwrap_or(port))),
        target_host: Some(host.into()),
        target_port: Some(port),
        target_tls_port: tls_port,
        capture_started: Some(utc_timestamp(SystemTime::now())),
        capture_writer: Some(concat!("ryll-hook ", env!("CARGO_PKG_VERSION")).into()),
    }
}

/// [`ryll_metadata`] from what ryll shows as its target
/// (`display_target()`: `host:port`, the TLS port when there is one, or a
/// proxy with the real target redacted). `target` is kept verbatim; host
/// and port are taken from it where it has that form, else the host is the
/// whole text and the port 0.
pub fn metadata_for_display_target(target: &str, tls_port: Option<u16>) -> CaptureMetadata {
    // A redacted proxy target reads "host:port (tunnelled, …)".
    let head = target.split(' ').next().unwrap_or(target);
    let parsed = head.rsplit_once(':').and_then(|(h, p)| {
        let host = h.trim_start_matches('[').trim_end_matches(']');
        Some((host, p.parse::<u16>().ok()?)).filter(|(h, _)| !h.is_empty())
    });
    let (host, port) = parsed.unwrap_or((target, 0));
    let mut m = ryll_metadata(host, port, tls_port);
    m.target = Some(target.to_string());
    if tls_port.is_some_and(|t| t == port) {
        // The shown port is the TLS one; the plain one is not known.
        m.target_port = Some(0);
    }
    m
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), the format of ryll's `chrono_now`.
pub fn utc_timestamp(t: SystemTime) -> String {
    let Ok(d) = t.duration_since(UNIX_EPOCH) else {
        return "unknown".into();
    };
    spool2pcap::time::UtcDateTime::from_unix_secs(d.as_secs()).rfc3339()
}

/// Why [`read_metadata`] found no metadata.
#[derive(Debug, thiserror::Error)]
pub enum ReadMetadataError {
    /// The capture directory has no `metadata.json`.
    #[error("{}: no such file", .0.display())]
    Missing(PathBuf),
    /// It has one, but it could not be read or parsed.
    #[error(transparent)]
    Unreadable(#[from] spool2pcap::metadata::MetadataError),
}

/// Writes `metadata` to `path`: a new file, 0600, no symlink followed.
pub(crate) fn write_metadata(path: &Path, metadata: &CaptureMetadata) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(metadata).map_err(std::io::Error::other)?;
    json.push(b'\n');
    // New file, 0600, O_NOFOLLOW: a symlink planted at the path is refused,
    // never followed.
    let mut f = fsutil::create_new_file(path)?;
    f.write_all(&json)?;
    f.sync_all()
}

/// Reads a capture directory's `metadata.json` (ours or ryll's) the way
/// spool2pcap does ([`spool2pcap::metadata::load`]: no symlink followed, no
/// FIFO waited on, bounded in size, values cleaned), but a missing file is
/// an error too.
pub fn read_metadata(dir: &Path) -> Result<CaptureMetadata, ReadMetadataError> {
    spool2pcap::metadata::load(dir)?
        .ok_or_else(|| ReadMetadataError::Missing(dir.join(METADATA_FILE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_targets_give_host_and_port() {
        let host_port =
            |m: &CaptureMetadata| (m.target_host.clone().unwrap(), m.target_port.unwrap());
        let m = metadata_for_display_target("hv1.example:5900", None);
        assert_eq!(host_port(&m), ("hv1.example".into(), 5900));
        let m = metadata_for_display_target("[::1]:5930", None);
        assert_eq!(host_port(&m), ("::1".into(), 5930));
        assert_eq!(m.target.as_deref(), Some("[::1]:5930"));
        let m = metadata_for_display_target("hv1:5901", Some(5901));
        assert_eq!((m.target_port, m.target_tls_port), (Some(0), Some(5901)));
        let shown = "pve1.example:3128 (tunnelled, target redacted)";
        let m = metadata_for_display_target(shown, Some(61000));
        assert_eq!(host_port(&m), ("pve1.example".into(), 3128));
        assert_eq!(m.target.as_deref(), Some(shown));
        let m = metadata_for_display_target("nonsense", None);
        assert_eq!(host_port(&m), ("nonsense".into(), 0));
    }

    #[test]
    fn utc_timestamp_matches_known_dates() {
        let at = |s: u64| utc_timestamp(UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
