//! Fuzz target `reader`: see [`fuzzing::reader`].
#![no_main]

use fuzzing::{reader, Scratch};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SCRATCH: Scratch = Scratch::new();
}

fuzz_target!(|data: &[u8]| SCRATCH.with(|s| reader(s, data)));
