//! A capture spool for SPICE traffic that never makes the session wait.
//!
//! A SPICE client's channel loops hand every chunk they read from or write to
//! their socket to [`Spool::append`]. The append copies the bytes into a
//! memory-mapped *segment* of that channel and returns: no allocation, no
//! system call, no lock shared with another channel, no waiting on a disk.
//! Everything slow — creating, sizing and prefaulting the next segments,
//! sealing full ones and moving them to the capture directory — happens on a
//! background thread, ahead of need. When a channel's segment is full and the
//! next one is not ready, the record is dropped, counted, and the drop is
//! written into the spool as a *gap record*, so a reader can show exactly
//! where traffic is missing.
//!
//! What an append costs, then, is a lookup of the channel by name, an
//! uncontended lock of that channel, a read of the time-stamp counter
//! ([`write::clock`]), and the copy. A small record's CRC is left to the
//! background thread, which fills it in before the segment leaves memory:
//! the CRC of a 1 KiB record costs about as much as the rest of its append.
//! A record of [`CRC_AT_APPEND_MIN`] bytes or more, whose copy costs as much
//! as its CRC, gets its CRC at append in a capture bound for disk, while the
//! payload is still in the cache
//! ([`SpoolConfig::checksum_at_append`]): the background thread would have
//! to bring it back from memory.
//!
//! Segments are mapped from a memory-backed filesystem (tmpfs: a private
//! directory under `$XDG_RUNTIME_DIR`, else `/dev/shm`). Stores into a mapped
//! file on a real disk can stall for seconds when that disk is slow — the
//! kernel throttles dirty pages of the file — while tmpfs pages are never
//! written back. Once a segment is safe in the capture directory its file
//! is reused for a later one — a new header, whose `written_to` tells
//! readers where the new records end (`FORMAT.md`) — which costs far less
//! than fresh pages ([`SpoolConfig::spare_segments`]). A crash of the writer process leaves the staged segments
//! in memory, where [`store::recover`] finds them; every new session moves those
//! of crashed sessions home in the background.
//!
//! Closing need not wait for a slow disk either: [`Spool::close_within`]
//! seals every channel at once, moves what it can within a grace period,
//! and leaves the rest to a detached mover process, with the manifest
//! saying so (`pending_move`) and readers reading those segments in place.
//!
//! The crate has three parts. [`write`](mod@write) is the session's side: the hot
//! path, the background threads that feed it, the clock and the disk limit.
//! [`store`] is what lies on disk and in staging and how it gets there: the
//! format, the manifest, the staging directory, crash recovery and the
//! mover. [`read`] reads a capture back, closed or live.
//!
//! The on-disk format is specified in `FORMAT.md` and implemented by
//! [`store::format`]; [`read::reader`] reads it back, damaged or not, and
//! [`read::follow`] reads a capture while it is being written.
//! [`write::limit`] bounds a long session's disk use (a ring buffer, or stop
//! at the limit), and [`store::recover`] moves a crashed writer's staged
//! segments into place.
//!
//! ```no_run
//! use spool::{Direction, Spool, SpoolConfig};
//! let spool = Spool::create(SpoolConfig::new("/tmp/capture")).unwrap();
//! spool.append("display", Direction::ServerToClient, b"\x65\x00\x10\x00\x00\x00");
//! let counters = spool.counters("display").unwrap();
//! assert_eq!(counters.records, 1);
//! spool.close().unwrap();
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod read;
pub mod store;
pub mod write;

pub use read::capture::Capture;
pub use store::format::Direction;
pub use store::limit::{DiskLimit, LimitPolicy};
pub use store::manifest::Manifest;
pub use write::close::DROP_GRACE;
pub use write::config::{SpoolConfig, StagingChoice, CRC_AT_APPEND_MIN};
pub use write::counters::ChannelCounters;
pub use write::error::{BackgroundError, SpoolError};
pub use write::memory_ring::TrimHold;
pub use write::outcome::{CloseOutcome, CloseProgress, MoverHandle};
pub use write::writer::{ChannelHandle, Spool};
