//! Fuzz target `capture`: see [`fuzzing::capture`].
#![no_main]

use fuzzing::{capture, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| capture(s, data)));
