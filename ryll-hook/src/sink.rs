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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shakenfist_spice_renderer::CaptureSink;
use spool::{ChannelCounters, Direction, Spool, SpoolConfig, SpoolError};

use crate::metadata::{
    metadata_for_display_target, ryll_metadata, write_metadata, CaptureMetadata, METADATA_FILE,
};

/// Channels every SPICE session opens, registered when the spool starts so
/// that their first records never wait for a segment to be made. Any other
/// channel (audio, USB, smartcard, webdav…) is registered on its first
/// record, which waits the few milliseconds its first segment takes: a
/// registered channel holds two segments of memory from the start (8 MiB
/// for a capture), which would cost every session 48 MiB for the six
/// channels most sessions never open.
pub const ALWAYS_OPEN: [&str; 4] = ["main", "display", "inputs", "cursor"];

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

/// Why a [`SpoolSink`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The spool refused the directory or configuration.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// `metadata.json` could not be written.
    #[error("writing {}: {source}", path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
            ryll_metadata(target_host, target_port, tls_port),
        )
    }

    /// [`SpoolSink::create`] with a spool configuration of your own (its
    /// channel list is extended with [`ALWAYS_OPEN`]) and metadata.
    pub fn with_config(
        mut config: SpoolConfig,
        metadata: CaptureMetadata,
    ) -> Result<SpoolSink, SinkError> {
        for name in ALWAYS_OPEN {
            if !config.channels.iter().any(|c| c == name) {
                config.channels.push((*name).to_string());
            }
        }
        SpoolSink::start(config, metadata)
    }

    /// [`SpoolSink::with_config`] with the configuration's channel list as
    /// it is (a memory ring registers [`ALWAYS_OPEN`] itself).
    pub fn with_exact_config(
        config: SpoolConfig,
        metadata: CaptureMetadata,
    ) -> Result<SpoolSink, SinkError> {
        SpoolSink::start(config, metadata)
    }

    fn start(config: SpoolConfig, metadata: CaptureMetadata) -> Result<SpoolSink, SinkError> {
        let spool = Spool::create(config)?;
        let path = spool.capture_dir().join(METADATA_FILE);
        if let Err(e) = write_metadata(&path, &metadata) {
            // The spool is already running; leave a clean (empty) session
            // rather than staged segments, and report the real problem.
            let _ = spool.close();
            return Err(SinkError::Metadata { path, source: e });
        }
        Ok(SpoolSink {
            spool,
            metadata,
            video: None,
        })
    }

    /// What `ryll --capture DIR` starts: a capture of every channel into
    /// `dir` with the spool's defaults, described by ryll's
    /// `display_target()` text. (ryll then makes it the source of its bug
    /// reports' traffic, [`crate::report::set_active_capture`].) Abandoned
    /// staging of earlier, killed sessions is reclaimed in the background.
    /// Sealed segments are compressed on their way to disk unless
    /// [`COMPRESS_ENV`] says `0`.
    pub fn for_ryll(
        dir: impl Into<PathBuf>,
        display_target: &str,
        tls_port: Option<u16>,
    ) -> Result<SpoolSink, SinkError> {
        let mut config = SpoolConfig::new(dir);
        config.compress = compress_wanted(std::env::var_os(COMPRESS_ENV).as_deref());
        SpoolSink::with_config(
            config,
            metadata_for_display_target(display_target, tls_port),
        )
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
    /// (never for a name in [`ALWAYS_OPEN`]). Lock-free; any thread, any
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
}
