//! The `spool2pcap` binary's own modules (the library does not use them):
//! the command line's definitions ([`args`]), the first check of a capture
//! directory ([`checks`]) and the cut by time and count ([`cut`]).

pub mod args;
pub mod checks;
pub mod cut;
