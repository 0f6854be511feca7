//! End-to-end tests that span the workspace's crates, and what they share:
//! the recorded real SPICE session ([`recorded`]) and the fixture builder
//! ([`fixtures`], run as `cargo run -p e2e --bin make-fixtures`).

pub mod fixtures;
pub use ryll_hook::recorded;
pub mod tools;
