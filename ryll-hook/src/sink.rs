//! ryll's [`CaptureSink`] on the spool: what `ryll --capture DIR` links.
//!
//! The renderer's channel loops call [`CaptureSink::packet_received`] for
//! every socket read and [`CaptureSink::packet_sent`] for every write, after
//! the SPICE link phase, and count a `false` into their snapshot's
//! `writer_dropped_count`. [`SpoolSink`] turns each call into one
//! [`Spool::append`]: a copy into a memory-mapped segment, never a wait on a
//! disk, a queue or another channel. [`NoCaptureSink`] is the "capture off"
//! sink for comparison and for hosts that want a sink object either way.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shakenfist_spice_renderer::CaptureSink;
use spool::{fsutil, ChannelCounters, Direction, Spool, SpoolConfig, SpoolError};

/// Every channel ryll 0.3 knows, pre-registered when the spool starts so
/// that no channel's first record waits for its segment to be prepared.
/// Unlike ryll's own `CaptureSession`, which silently drops channels other
/// than main/display/cursor/inputs/usbredir, every channel is captured:
/// a name not in this list is registered on its first record.
pub const RYLL_CHANNELS: &[&str] = &[
    "main",
    "display",
    "inputs",
    "cursor",
    "playback",
    "record",
    "usbredir",
    "webdav",
    "port",
    "smartcard",
];

/// Environment variable that turns compression at rest off for
/// [`SpoolSink::for_ryll`] (`0`, `off`, `no` or `false`): ryll's command
/// line has no option for it, and a user whose CPU is scarcer than disk
/// (or who compares builds) needs a switch that needs no rebuild.
pub const COMPRESS_ENV: &str = "RYLL_CAPTURE_COMPRESS";

/// Whether [`COMPRESS_ENV`]'s value (unset: `None`) leaves compression on.
/// Anything but an explicit "off" keeps the default, which is on.
fn compress_wanted(value: Option<&std::ffi::OsStr>) -> bool {
    let Some(v) = value.and_then(|v| v.to_str()) else {
        return true;
    };
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "0" | "off" | "no" | "false"
    )
}

/// File name of the session description, as ryll writes it (one
/// definition, in spool2pcap, which reads it).
pub use spool2pcap::metadata::METADATA_FILE;

/// The version of the renderer this crate implements the trait of, which
/// is the ryll release it speaks for (ryll and its renderer share versions).
pub const RYLL_VERSION: &str = "0.3.0";

/// `metadata.json`: ryll's fields (`ryll_version`, `platform_os`,
/// `platform_arch`, `target`, `target_tls_port`, `capture_started`), plus
/// the target split into `target_host`/`target_port` so tools need not
/// parse `target`, and who wrote the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureMetadata {
    /// ryll release the capture speaks for.
    pub ryll_version: String,
    /// `std::env::consts::OS`.
    pub platform_os: String,
    /// `std::env::consts::ARCH`.
    pub platform_arch: String,
    /// `host:port` as ryll's `display_target()` shows it (the TLS port
    /// when there is one).
    pub target: String,
    /// Server host name or address.
    pub target_host: String,
    /// Plain-text SPICE port.
    pub target_port: u16,
    /// TLS port, `null` without TLS.
    pub target_tls_port: Option<u16>,
    /// UTC start of the capture, `YYYY-MM-DDTHH:MM:SSZ` as ryll writes it.
    pub capture_started: String,
    /// The capture writer (`ryll-hook <version>`): the directory holds a
    /// spool, not ryll's pcaps, and this says so to whoever opens it.
    pub capture_writer: String,
}

impl CaptureMetadata {
    /// Metadata for a capture of `host:port` starting now.
    pub fn new(host: &str, port: u16, tls_port: Option<u16>) -> CaptureMetadata {
        CaptureMetadata {
            ryll_version: RYLL_VERSION.into(),
            platform_os: std::env::consts::OS.into(),
            platform_arch: std::env::consts::ARCH.into(),
            target: format!("{host}:{}", tls_port.unwrap_or(port)),
            target_host: host.into(),
            target_port: port,
            target_tls_port: tls_port,
            capture_started: utc_timestamp(SystemTime::now()),
            capture_writer: concat!("ryll-hook ", env!("CARGO_PKG_VERSION")).into(),
        }
    }

    /// Metadata from what ryll shows as its target (`display_target()`:
    /// `host:port`, the TLS port when there is one, or a proxy with the
    /// real target redacted). `target` is kept verbatim; host and port are
    /// taken from it where it has that form, else the host is the whole
    /// text and the port 0.
    pub fn for_display_target(target: &str, tls_port: Option<u16>) -> CaptureMetadata {
        // A redacted proxy target reads "host:port (tunnelled, …)".
        let head = target.split(' ').next().unwrap_or(target);
        let parsed = head.rsplit_once(':').and_then(|(h, p)| {
            let host = h.trim_start_matches('[').trim_end_matches(']');
            Some((host, p.parse::<u16>().ok()?)).filter(|(h, _)| !h.is_empty())
        });
        let (host, port) = parsed.unwrap_or((target, 0));
        let mut m = CaptureMetadata::new(host, port, tls_port);
        m.target = target.to_string();
        if tls_port.is_some_and(|t| t == port) {
            // The shown port is the TLS one; the plain one is not known.
            m.target_port = 0;
        }
        m
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), the format of ryll's `chrono_now`.
pub fn utc_timestamp(t: SystemTime) -> String {
    let Ok(d) = t.duration_since(UNIX_EPOCH) else {
        return "unknown".into();
    };
    spool2pcap::time::UtcDateTime::from_unix_secs(d.as_secs()).rfc3339()
}

/// Why a [`SpoolSink`] could not start.
#[derive(Debug)]
pub enum SinkError {
    /// The spool refused the directory or configuration.
    Spool(SpoolError),
    /// `metadata.json` could not be written.
    Metadata(PathBuf, std::io::Error),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Spool(e) => write!(f, "{e}"),
            SinkError::Metadata(p, e) => write!(f, "writing {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for SinkError {}

impl From<SpoolError> for SinkError {
    fn from(e: SpoolError) -> Self {
        SinkError::Spool(e)
    }
}

/// ryll's capture sink, writing a spool.
///
/// Share it as `Arc<dyn CaptureSink>` with the renderer and keep an
/// `Arc<SpoolSink>` for counters and [`SpoolSink::close`].
pub struct SpoolSink {
    spool: Spool,
    metadata: CaptureMetadata,
    video: Option<Arc<dyn CaptureSink>>,
}

impl fmt::Debug for SpoolSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolSink")
            .field("spool", &self.spool)
            .field("video", &self.video.is_some())
            .finish()
    }
}

impl SpoolSink {
    /// Starts capturing into `dir` (created `0700` if missing; refused if
    /// it already holds a session) for a session with `host:port`, with
    /// the spool's defaults, and writes `metadata.json`.
    pub fn create(
        dir: impl Into<PathBuf>,
        target_host: &str,
        target_port: u16,
        tls_port: Option<u16>,
    ) -> Result<SpoolSink, SinkError> {
        SpoolSink::with_config(
            SpoolConfig::new(dir),
            CaptureMetadata::new(target_host, target_port, tls_port),
        )
    }

    /// [`SpoolSink::create`] with a spool configuration of your own (its
    /// channel list is extended with [`RYLL_CHANNELS`]) and metadata.
    pub fn with_config(
        mut config: SpoolConfig,
        metadata: CaptureMetadata,
    ) -> Result<SpoolSink, SinkError> {
        for name in RYLL_CHANNELS {
            if !config.channels.iter().any(|c| c == name) {
                config.channels.push((*name).to_string());
            }
        }
        let spool = Spool::create(config)?;
        let path = spool.capture_dir().join(METADATA_FILE);
        if let Err(e) = write_metadata(&path, &metadata) {
            // The spool is already running; leave a clean (empty) session
            // rather than staged segments, and report the real problem.
            let _ = spool.close();
            return Err(SinkError::Metadata(path, e));
        }
        Ok(SpoolSink {
            spool,
            metadata,
            video: None,
        })
    }

    /// What `ryll --capture DIR` starts: a capture of every channel into
    /// `dir` with the spool's defaults, described by ryll's
    /// `display_target()` text, and registered as the source of the
    /// process's bug-report traffic ([`crate::report`]). Abandoned staging
    /// of earlier, killed sessions is reclaimed in the background.
    /// Sealed segments are compressed on their way to disk unless
    /// [`COMPRESS_ENV`] says `0`.
    pub fn for_ryll(
        dir: impl Into<PathBuf>,
        display_target: &str,
        tls_port: Option<u16>,
    ) -> Result<SpoolSink, SinkError> {
        let mut config = SpoolConfig::new(dir);
        config.compress = compress_wanted(std::env::var_os(COMPRESS_ENV).as_deref());
        let sink = SpoolSink::with_config(
            config,
            CaptureMetadata::for_display_target(display_target, tls_port),
        )?;
        crate::report::set_active_capture(sink.capture_dir());
        Ok(sink)
    }

    /// Forwards [`CaptureSink::frame`] to `video` (ryll's encoder): video
    /// stays ryll's job, the spool holds protocol traffic only.
    pub fn with_video(mut self, video: Arc<dyn CaptureSink>) -> SpoolSink {
        self.video = Some(video);
        self
    }

    /// The spool underneath, for readers of its state (and the F12 bundle).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// What `metadata.json` says.
    pub fn metadata(&self) -> &CaptureMetadata {
        &self.metadata
    }

    /// The capture directory (as given, not canonicalised).
    pub fn capture_dir(&self) -> &Path {
        self.spool.capture_dir()
    }

    /// One channel's counters for its snapshot: `dropped_records` is
    /// ryll's `writer_dropped_count`. `None` before the channel exists
    /// (never for a name in [`RYLL_CHANNELS`]). Lock-free; any thread, any
    /// time, also after `close`.
    pub fn counters(&self, channel: &str) -> Option<ChannelCounters> {
        self.spool.counters(channel)
    }

    /// Every channel's counters, pre-registered ones first.
    pub fn all_counters(&self) -> Vec<(String, ChannelCounters)> {
        self.spool.all_counters()
    }

    /// Stops capturing and waits until everything accepted is in the
    /// capture directory (segments sealed and moved, manifest final).
    /// Later packets are dropped. Idempotent: later calls return the first
    /// call's result. Dropping the sink does the same, ignoring errors.
    pub fn close(&self) -> Result<(), SpoolError> {
        self.spool.close()
    }
}

impl CaptureSink for SpoolSink {
    #[inline]
    fn packet_sent(&self, channel: &str, data: &[u8]) -> bool {
        self.spool.append(channel, Direction::ClientToServer, data)
    }

    #[inline]
    fn packet_received(&self, channel: &str, data: &[u8]) -> bool {
        self.spool.append(channel, Direction::ServerToClient, data)
    }

    /// Forwards to the video sink given with [`SpoolSink::with_video`].
    ///
    /// Without one this returns `true`. ryll counts `false` as a frame its
    /// encoder *dropped* — a sign the capture is not keeping up. With no
    /// encoder, no video was asked for and none was lost, so reporting
    /// drops would make every displayed frame look like a failure to keep
    /// up and bury real drops in the same counter.
    fn frame(&self, surface_id: u32, pixels: &[u8], width: u32, height: u32) -> bool {
        match &self.video {
            Some(v) => v.frame(surface_id, pixels, width, height),
            None => true,
        }
    }
}

// `Spool`'s own `Drop` seals and moves everything (best effort), so the
// sink needs none of its own: dropping it closes the capture.

fn write_metadata(path: &Path, metadata: &CaptureMetadata) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(metadata).map_err(std::io::Error::other)?;
    json.push(b'\n');
    // New file, 0600, O_NOFOLLOW: a symlink planted at the path is refused,
    // never followed.
    let mut f = fsutil::create_new_file(path)?;
    f.write_all(&json)?;
    f.sync_all()
}

/// Reads a capture directory's `metadata.json` (ours or ryll's, as long as
/// it has our fields). Refuses a symlink, a FIFO (never waits for a
/// writer) and a file larger than any ryll writes.
pub fn read_metadata(dir: &Path) -> Result<CaptureMetadata, String> {
    let path = dir.join(METADATA_FILE);
    let text = spool2pcap::guard::read_input(&path, spool2pcap::metadata::MAX_METADATA_BYTES)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: no such file", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The "capture off" sink: accepts everything, records and counts nothing.
/// A stand-in wherever a sink object is wanted but nothing should be kept,
/// and the baseline `ryll-replay --sink none` (in `ryll-tools`) measures
/// against.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCaptureSink;

impl CaptureSink for NoCaptureSink {
    fn packet_sent(&self, _channel: &str, _data: &[u8]) -> bool {
        true
    }

    fn packet_received(&self, _channel: &str, _data: &[u8]) -> bool {
        true
    }

    fn frame(&self, _surface_id: u32, _pixels: &[u8], _width: u32, _height: u32) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_off_turns_compression_off() {
        use std::ffi::OsStr;
        assert!(compress_wanted(None));
        for on in ["1", "on", "yes", "", "zstd"] {
            assert!(compress_wanted(Some(OsStr::new(on))), "{on:?}");
        }
        for off in ["0", "off", "No", " false "] {
            assert!(!compress_wanted(Some(OsStr::new(off))), "{off:?}");
        }
    }

    #[test]
    fn display_targets_give_host_and_port() {
        let m = CaptureMetadata::for_display_target("hv1.example:5900", None);
        assert_eq!(
            (m.target_host.as_str(), m.target_port),
            ("hv1.example", 5900)
        );
        let m = CaptureMetadata::for_display_target("[::1]:5930", None);
        assert_eq!((m.target_host.as_str(), m.target_port), ("::1", 5930));
        assert_eq!(m.target, "[::1]:5930");
        let m = CaptureMetadata::for_display_target("hv1:5901", Some(5901));
        assert_eq!((m.target_port, m.target_tls_port), (0, Some(5901)));
        let shown = "pve1.example:3128 (tunnelled, target redacted)";
        let m = CaptureMetadata::for_display_target(shown, Some(61000));
        assert_eq!(
            (m.target_host.as_str(), m.target_port),
            ("pve1.example", 3128)
        );
        assert_eq!(m.target, shown);
        let m = CaptureMetadata::for_display_target("nonsense", None);
        assert_eq!((m.target_host.as_str(), m.target_port), ("nonsense", 0));
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
