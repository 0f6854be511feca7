//! Fuzz target `compressed`: see [`fuzzing::compressed`].
#![no_main]

use fuzzing::{compressed, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| compressed(s, data)));
