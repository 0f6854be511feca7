//! From a capture to packets: a source (a closed capture, or a live one
//! followed, [`follow`]) read per channel, redacted, framed as one TCP
//! connection per channel ([`framing`]), merged in time order ([`merge`])
//! and handed to a [`crate::output::PacketSink`]. [`convert`] turns a whole
//! capture into files; [`excerpt`] writes part of one to any `Write`.

pub mod clock;
pub mod convert;
pub mod error;
pub mod excerpt;
pub mod follow;
pub mod framing;
pub mod merge;
pub mod report;
pub mod section;
