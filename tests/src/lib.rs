//! End-to-end tests that span the workspace's crates, and the one place
//! the tests and benches of this crate share helpers (each target uses
//! this library; none includes another's files): the recorded real SPICE
//! session ([`recorded`]) and the fixture builder ([`fixtures`], run as
//! `cargo run -p e2e --bin make-fixtures`), live SPICE servers and
//! ground-truth captures ([`live`]), a capture compared with the wire
//! ([`ground_truth`]), external tools ([`tools`]), the benches' command
//! line, machine facts and generated captures ([`bench`](mod@bench)), the bodies
//! of the fuzz targets ([`fuzzing`]), and hostile captures built to cost
//! time or memory ([`hostile`]).

pub mod bench;
pub mod fixtures;
pub mod fuzzing;
pub mod ground_truth;
pub mod hostile;
pub mod live;
pub use ryll_tools::recorded;
pub mod tools;
