//! The session's side: [`Spool`](crate::Spool) and its per-channel hot
//! path, the background threads that prepare and retire segments, the
//! clock that stamps records, and the disk limit.

pub(crate) mod background;
pub(crate) mod channel;
pub mod clock;
pub mod limit;
pub(crate) mod segment;
pub(crate) mod writer;
