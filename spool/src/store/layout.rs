//! Where things lie in a capture directory: the manifest
//! ([`crate::store::manifest::MANIFEST_FILE`]) at its top, and every
//! channel's segments under [`SPOOL_DIR`], one directory per channel.

/// Name of the directory inside a capture directory that holds the channels.
pub const SPOOL_DIR: &str = "spool";
