//! Fuzz target `follow`: see [`fuzzing::follow`].
#![no_main]

use fuzzing::{follow, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| follow(s, data)));
