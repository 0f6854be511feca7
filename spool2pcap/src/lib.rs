//! Converts ryll capture spools into pcap and pcapng files that Wireshark
//! opens.
//!
//! A spool (see the `spool` crate) stores, per SPICE channel, the bytes the
//! client wrote and read, with timestamps, plus *gap* records where the
//! writer had to drop traffic. Wireshark wants packets, so every channel
//! becomes one synthetic TCP connection:
//!
//! * client `10.0.0.1` (MAC `02:00:00:00:00:01`) to server `10.0.0.2`
//!   (MAC `02:00:00:00:00:02`) port 5930: like every client port, one no
//!   Wireshark dissector claims, so Wireshark's SPICE heuristic decodes
//!   the file with no option;
//! * the client port identifies the channel: 10000 + its SPICE channel
//!   type for the known names, a hash of the name for any other
//!   ([`spice::channels`] holds the table of names, types and ports);
//! * the recorded bytes' client sequence numbers start at 1000, server ones
//!   at 2000, and advance by the bytes sent; each segment ACKs the peer's
//!   bytes so far;
//! * in front of the first record, a synthetic TCP handshake and — ryll
//!   records channels only after they linked, and Wireshark's SPICE
//!   dissector decodes nothing without the link phase — a synthetic SPICE
//!   link phase for the channel's SPICE type (any other name is linked as
//!   a `port` channel, type 10), in the sequence numbers just before 1000 /
//!   2000 ([`spice::link`], [`pipeline::framing`]); after the last record
//!   of a cleanly closed channel, a FIN exchange ([`Synthesis`] turns
//!   either off);
//! * a record longer than 65495 bytes is split into several segments;
//! * a gap makes the sequence numbers jump by the bytes lost, so Wireshark
//!   reports "previous segment not captured" right where data is missing.
//!
//! Damaged spool regions are skipped by the reader, reported in the
//! [`ConvertReport`], and conversion goes on with the next valid record.
//!
//! Capture directories are untrusted: [`guard`] states what one may make
//! these tools do and holds the input-side checks, [`output`] the output
//! side (no symlink on an output path, no output that is an input, bounded
//! pcapng options).
//!
//! pcapng output also carries the direction of every packet, comments on
//! synthetic packets and after gaps, an Interface Statistics Block per
//! channel with the writer's drops, and a section comment naming the
//! session and ryll's `metadata.json` ([`output`], [`metadata`]). Open the
//! result with `wireshark FILE` ([`wireshark_command`]).
//!
//! Of SPICE the converter knows channel names, ports and the link phase;
//! the recorded bytes are parsed only when redaction is asked for
//! ([`spice::redact`]: mini-header framing of the inputs and main channels, and the
//! agent stream inside `AGENT_DATA`; the mini-header framing is
//! [`spice::messages`]). [`pipeline::follow`] follows a capture that is still being written;
//! [`pipeline::excerpt`] writes part of one (the newest traffic within a size budget,
//! a time window, some channels) as a pcap to any `Write`, for bug reports.
//!
//! ```no_run
//! use spool2pcap::{convert, ConvertOptions, Destination};
//! let opts = ConvertOptions::new(Destination::Dir("/tmp/pcaps".into()));
//! let report = convert("/tmp/capture".as_ref(), &opts)?;
//! for d in report.damage() {
//!     eprintln!("damaged: {d}");
//! }
//! # Ok::<(), spool2pcap::ConvertError>(())
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "capture-builder")]
pub mod capture_builder;
pub mod guard;
pub mod info;
pub mod metadata;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod spice;
pub mod time;

pub use net::tcp::TcpStreamBuilder;
pub use output::wireshark::wireshark_command;
pub use output::{Format, PacketSink};
pub use pipeline::clock::{PacketClock, TimeMode};
pub use pipeline::convert::{
    convert, convert_with_progress, ChannelReport, ConvertError, ConvertOptions, ConvertReport,
    Destination, Progress,
};
pub use pipeline::excerpt::{write_excerpt, ExcerptError, ExcerptOptions, Selection};
pub use pipeline::framing::{ChannelFramer, Record, Synthesis};
pub use pipeline::report::Cut;
pub use spice::channels::PortMap;
pub use spice::redact::{Redaction, Redactor, UnknownRedaction};
