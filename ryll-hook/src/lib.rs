//! What ryll links to capture into the spool: ryll's `CaptureSink` on the
//! spool, its bug reports cut from the capture, and stopping a capturing
//! session. The tools that exercise it (`ryll-capture`, `ryll-replay`) and
//! ryll's earlier capture designs live in the `ryll-tools` crate
//! (`ryll-hook/tools/`), so linking this crate pulls in none of them.
//!
//! - [`sink`]: [`SpoolSink`] (the spool behind the renderer's
//!   `capture_sink::CaptureSink`), [`NoCaptureSink`].
//! - [`metadata`]: `metadata.json`, what the sink says of the session and
//!   the bug report reads back.
//! - [`bundle`]: the F12 bug-report zip, cut from the spool.
//! - [`report`]: the traffic of ryll's own bug reports, cut from the
//!   running capture or ring.
//! - [`ring`]: every session's recorder without `--capture`, a ring in
//!   memory; [`crash`]: the bug report a crashed session's ring becomes.
//! - [`shutdown`]: stopping a capturing session at once, and closing its
//!   spool without waiting for a slow disk.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bundle;
pub mod crash;
pub mod metadata;
pub mod report;
pub mod ring;
pub mod shutdown;
pub mod sink;

pub use metadata::CaptureMetadata;
pub use shakenfist_spice_renderer::CaptureSink;
pub use sink::{NoCaptureSink, SinkError, SpoolSink, ALWAYS_OPEN};
