//! End-to-end tests that span the workspace's crates, and what they share:
//! the recorded real SPICE session ([`recorded`]) and the fixture builder
//! ([`fixtures`], run as `cargo run -p e2e --bin make-fixtures`), and live
//! SPICE servers and ground-truth captures ([`live`]), and the bodies of
//! the fuzz targets ([`fuzzing`]).

pub mod fixtures;
pub mod fuzzing;
pub mod live;
pub use ryll_tools::recorded;
pub mod tools;
