//! From a capture to packets: a source (a closed capture, or a live one
//! followed, [`follow`]) read per channel, redacted, framed as one TCP
//! connection per channel ([`framing`]), merged in time order ([`merge`])
//! and handed to a [`crate::output::PacketSink`]. [`convert`] turns a whole
//! capture into files; [`excerpt`] writes part of one to any `Write`.
//!
//! Every one of them, and `info`, starts from the same opening (module
//! `opened`): the capture with its channels selected, their ports, the
//! session and its clock, ryll's metadata and the report begun.
//!
//! Shared by `convert` and `convert --follow`: the packet [`clock`], what a
//! pcapng file says about the capture ([`section`]: section header,
//! interface descriptions and statistics), what the conversion did
//! ([`report`]: one report type and its text, excerpts' too) and why it
//! failed ([`error`]). Dependencies point one way: `convert` and `follow` use
//! the others, `excerpt` uses `convert`, and nothing below imports them back.

pub mod clock;
pub mod convert;
pub mod error;
pub mod excerpt;
pub mod follow;
pub mod framing;
pub mod merge;
pub(crate) mod opened;
pub mod report;
pub mod section;
