//! `manifest.json`: the session-level facts that do not belong in any one
//! segment — where staged segments live while the session runs, whether it
//! shut down cleanly, and the final per-channel counters.
//!
//! The writer creates the manifest when the session starts (with
//! `clean_shutdown: false`, so a crash leaves that answer behind) and replaces
//! it atomically at [`crate::Spool::close`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::limit::{DiskLimit, Trimmed};

/// File name of the manifest inside a capture directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Largest manifest a reader will load; a bigger one is damage, not data.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`crate::store::format::FORMAT_VERSION`] of the segments.
    pub format_version: u16,
    /// Hex of the 16-byte session id carried by every segment header.
    pub session_id: String,
    /// Wall-clock session start, nanoseconds since the Unix epoch.
    pub session_start_unix_ns: u64,
    /// Where the writer staged live segments (a memory-backed directory), or
    /// `null` when segments were mapped in the capture directory directly.
    pub staging_dir: Option<String>,
    /// Size of every segment file as allocated.
    pub segment_bytes: u64,
    /// `true` once the writer closed the session: every record it accepted
    /// is in a sealed segment, in the capture directory or — while
    /// [`Manifest::pending_move`] — still staged.
    pub clean_shutdown: bool,
    /// The session closed cleanly but some sealed segments are still in
    /// [`Manifest::staging_dir`]: a mover process (holding the staging lock)
    /// or, if that died, the next session's reclaimer moves them in and
    /// then clears this and `staging_dir`. Readers read them in place.
    #[serde(default)]
    pub pending_move: bool,
    /// Wall-clock time of `close()`, nanoseconds since the Unix epoch.
    pub closed_unix_ns: Option<u64>,
    /// Final counters, by channel name.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelCounters>,
    /// Background errors seen during the session (disk full, I/O errors…).
    #[serde(default)]
    pub errors: Vec<String>,
    /// The bound on the capture directory's size, if one was set.
    #[serde(default)]
    pub limit: Option<DiskLimit>,
    /// What the flight recorder deleted from the start of each channel.
    #[serde(default)]
    pub trimmed: BTreeMap<String, Trimmed>,
    /// A ring kept in memory only ([`crate::SpoolConfig::memory_ring`]):
    /// every segment stays in [`Manifest::staging_dir`], none is ever
    /// moved here, and the oldest are recycled as the ring fills, so
    /// segments missing before the first one present were trimmed, not
    /// lost. A crash leaves the ring staged for a bug report.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory_only: bool,
}

/// What a channel's writer has accepted and dropped: read live from the
/// spool ([`crate::Spool::counters`]) and recorded per channel in the
/// manifest, one shape for both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounters {
    /// Data records accepted.
    pub records: u64,
    /// Payload bytes accepted.
    pub bytes: u64,
    /// Records dropped (no segment ready, record too large, closed…; ryll's
    /// `writer_dropped_count`).
    pub dropped_records: u64,
    /// Payload bytes dropped.
    pub dropped_bytes: u64,
    /// Segments this channel has gone through.
    pub segments: u64,
}

impl Manifest {
    /// Loads and parses a manifest, refusing oversized files.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        use std::io::Read;
        let io = |source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = crate::store::fsutil::open_regular(path).map_err(io)?;
        let mut text = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.to_path_buf(),
                max: MAX_MANIFEST_BYTES,
            });
        }
        serde_json::from_slice(&text).map_err(|source| ManifestError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Why [`Manifest::load`] failed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be opened (missing, not a regular file, a
    /// symlink) or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Larger than any manifest a writer makes.
    #[error("{}: larger than {max} bytes", path.display())]
    TooLarge {
        /// The manifest.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// Not a manifest: its JSON does not parse as one.
    #[error("{}: {source}", path.display())]
    Json {
        /// The manifest.
        path: PathBuf,
        /// Where and why the JSON is wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// Hex-encodes a session id.
pub fn session_id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session id of [`session_id_hex`]'s text, if that is what `hex` is.
pub(crate) fn session_id_from_hex(hex: &str) -> Option<[u8; 16]> {
    let hex = hex.as_bytes();
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut id = [0u8; 16];
    for (b, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_hex_round_trips_and_rejects_other_text() {
        let id: [u8; 16] = std::array::from_fn(|i| (i * 17 + 3) as u8);
        assert_eq!(session_id_from_hex(&session_id_hex(&id)), Some(id));
        assert_eq!(session_id_from_hex(""), None);
        assert_eq!(session_id_from_hex(&"0".repeat(31)), None);
        assert_eq!(session_id_from_hex(&"0".repeat(34)), None);
        assert_eq!(session_id_from_hex(&format!("+f{}", "0".repeat(30))), None);
        assert_eq!(session_id_from_hex(&format!("é{}", "0".repeat(30))), None);
    }
}
