//! Fuzz target `metadata`: see [`fuzzing::metadata`].
#![no_main]

use fuzzing::{metadata, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| metadata(s, data)));
