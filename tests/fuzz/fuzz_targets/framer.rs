//! Fuzz target `framer`: see [`fuzzing::framer`].
#![no_main]

use fuzzing::{framer, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| framer(s, data)));
