//! ryll's CaptureSink on the spool (see issue 4).
pub mod baseline;
