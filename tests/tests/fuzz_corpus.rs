//! Replays the committed fuzz corpus (`tests/fuzz/corpus/<target>/`)
//! through the very functions the fuzz targets call
//! ([`e2e::fuzzing`]), so that CI runs every input the fuzzer kept and
//! every crash it found, with their invariants, on stable Rust.

use std::path::PathBuf;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn replays(target: &str) {
    let n = e2e::fuzzing::replay(target, &corpus(target));
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn segment_corpus_replays_with_its_invariants() {
    replays("segment");
}

#[test]
fn reader_corpus_replays_with_its_invariants() {
    replays("reader");
}

#[test]
fn follow_corpus_replays_with_its_invariants() {
    replays("follow");
}

#[test]
fn capture_corpus_replays_with_its_invariants() {
    replays("capture");
}

#[test]
fn manifest_corpus_replays_with_its_invariants() {
    replays("manifest");
}

#[test]
fn metadata_corpus_replays_with_its_invariants() {
    replays("metadata");
}

#[test]
fn framer_corpus_replays_with_its_invariants() {
    replays("framer");
}

#[test]
fn compressed_corpus_replays_with_its_invariants() {
    replays("compressed");
}

#[test]
fn every_target_has_a_corpus_test() {
    let src = include_str!("fuzz_corpus.rs");
    for (name, _) in e2e::fuzzing::TARGETS {
        assert!(src.contains(&format!("replays(\"{name}\")")), "{name}");
    }
}

/// Writes every target's seed inputs ([`e2e::fuzzing::seeds`]) into
/// `$FUZZ_SEEDS/<target>/`, for `cargo fuzz` to start from.
#[test]
#[ignore = "writes files; run by hand, see tests/fuzz/README.md"]
fn write_seed_corpus() {
    let root = PathBuf::from(std::env::var_os("FUZZ_SEEDS").expect("FUZZ_SEEDS"));
    let fixtures = e2e::fixtures::shipped_capture();
    for (name, target) in e2e::fuzzing::TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let scratch = e2e::fuzzing::Scratch::new();
        for (i, seed) in e2e::fuzzing::seeds(name, &fixtures).iter().enumerate() {
            target(&scratch, seed);
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
