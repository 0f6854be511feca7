//! What a capture is on disk and in staging, and how segments get there:
//! the segment format, `manifest.json`, the staging directory, file-system
//! helpers with the security rules built in, where things lie in a capture
//! directory, the disk limit, crash recovery, and the mover
//! that finishes a close in the background; compressed segments' blocks
//! and their codec.

pub mod block;
pub mod compress;
pub(crate) mod direct_write;
pub mod format;
pub mod fsutil;
pub mod layout;
pub mod limit;
pub mod manifest;
pub(crate) mod mover;
pub(crate) mod priority;
pub mod recover;
pub mod source;
pub mod staging;
