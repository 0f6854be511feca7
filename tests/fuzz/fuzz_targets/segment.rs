//! Fuzz target `segment`: see [`fuzzing::segment`].
#![no_main]

use fuzzing::{segment, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| segment(s, data)));
