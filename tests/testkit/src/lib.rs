//! What the tests of every crate share. Reading their output back: a pcap
//! or pcapng file as frames ([`pcap`]), each frame as the TCP segment it
//! carries ([`tcp`]), and the segments as the byte streams of each
//! connection ([`streams`]). Running the child process a test kills or
//! follows ([`child`]), or a command or call that could block
//! ([`deadline`]); the files a run must leave alone ([`files`]); text that
//! must not reach a terminal ([`text`]).
//!
//! One copy, so that a check added here (checksums, capture lengths, the
//! handshake that opens a connection) holds for every test that reads a
//! capture. It depends on no crate of this workspace, so spool2pcap, the
//! ryll tools and the end-to-end tests all take it as a dev-dependency
//! without a cycle; what it must know of SPICE (the server port, the
//! length of the link phase) the caller passes in.
//!
//! It panics on anything it cannot read: it is for tests, where a panic
//! naming what was wrong is the failure wanted.

pub mod child;
pub mod deadline;
pub mod files;
pub mod pcap;
pub mod streams;
pub mod tcp;
pub mod text;
