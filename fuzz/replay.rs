//! Replaying saved fuzz inputs: every input under `fuzz/corpus/<target>/` (what
//! fuzzing kept, minimized) and `fuzz/regressions/<target>/` (each finding, kept by
//! name) goes through its target's function again, so a finding stays found. Shared
//! by the library's replay (`tests/fuzz_corpus.rs`) and the relay's (its tests).
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// A fuzz target: its name (its corpus directory's) and what it does with an input.
pub type Target = (&'static str, fn(&[u8]));

/// Replay every saved input of `targets`; returns how many. Panics
/// naming the target and the input when one panics again, or when a target has no
/// corpus.
pub fn replay(targets: &[Target]) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for &(name, target) in targets {
        let corpus = fuzz.join("corpus").join(name);
        let inputs = files(&corpus);
        assert!(
            !inputs.is_empty(),
            "{name}: no input under {} (every target keeps a corpus)",
            corpus.display()
        );
        let regressions = fuzz.join("regressions").join(name);
        let found = if regressions.exists() {
            files(&regressions)
        } else {
            Vec::new()
        };
        for path in inputs.iter().chain(&found) {
            let input = std::fs::read(path).expect("a saved input");
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "{name}: {} panics", path.display());
            replayed += 1;
        }
    }
    replayed
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect()
}
