//! Fuzz target `manifest`: see [`fuzzing::manifest`].
#![no_main]

use fuzzing::{manifest, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| manifest(s, data)));
