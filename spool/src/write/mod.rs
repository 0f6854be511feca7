//! The session's side: [`Spool`](crate::Spool) and its per-channel hot
//! path, the background threads that prepare and retire segments, the
//! clock that stamps records, and the disk limit.
//!
//! Imports run one way: `writer` (creating and appending) and `close` use
//! `shared`, `background` and `channel`; `background` uses `shared` and
//! `channel`; `shared` uses neither `writer` nor `background`.

pub(crate) mod background;
pub(crate) mod channel;
pub mod clock;
pub(crate) mod close;
pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod error;
pub mod limit;
pub mod memory_ring;
pub(crate) mod outcome;
pub(crate) mod segment;
pub(crate) mod shared;
pub(crate) mod spare;
pub(crate) mod trial;
pub(crate) mod writer;
