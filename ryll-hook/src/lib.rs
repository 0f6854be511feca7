//! ryll's `CaptureSink` on the capture spool (issue 4), and the tools that
//! prove it: `ryll-replay` replays a recorded session through a sink over
//! real sockets, `ryll-capture` is a headless SPICE client capturing into a
//! spool.
//!
//! - [`sink`]: [`SpoolSink`] (the spool behind the renderer's
//!   `capture_sink::CaptureSink`), [`NoCaptureSink`], `metadata.json`.
//! - [`baseline`]: ryll's earlier capture designs, for comparison.
//! - [`recorded`]: a recorded SPICE pcap split into what each channel loop
//!   saw (shared with the `e2e` tests, which re-export it).
//! - [`shutdown`]: stopping a capturing session at once, and closing its
//!   spool without waiting for a slow disk.
//! - [`report`]: the traffic of ryll's own bug reports, cut from the
//!   running capture.

pub mod baseline;
pub mod bundle;
pub mod recorded;
pub mod replay;
pub mod report;
pub mod shutdown;
pub mod sink;

pub use shakenfist_spice_renderer::CaptureSink;
pub use sink::{CaptureMetadata, NoCaptureSink, SinkError, SpoolSink, RYLL_CHANNELS};
