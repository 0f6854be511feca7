//! The tools around `ryll-hook`, kept out of what ryll links:
//!
//! - `ryll-capture` (binary): a headless SPICE client (the renderer's
//!   `run_headless`) capturing every channel into a spool through
//!   [`ryll_hook::SpoolSink`].
//! - `ryll-replay` (binary): replays a recorded session over loopback
//!   sockets through a capture sink ([`replay`]) and prints what the read
//!   loops spent in it.
//! - [`recorded`]: a recorded SPICE pcap split into what each channel loop
//!   saw (also the input of the `e2e` tests, which re-export it).
//! - [`replay`]: the replay itself, through any `CaptureSink`.
//! - [`baseline`]: ryll's earlier capture designs, for comparison in
//!   replays and benchmarks.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod baseline;
pub mod recorded;
pub mod replay;
