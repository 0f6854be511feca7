//! ryll's CaptureSink on the spool (see issue 4).
