//! Every input saved under `fuzz/corpus/<target>/` (what fuzzing kept, minimized) and
//! `fuzz/regressions/<target>/` (each finding once understood or fixed, kept by name)
//! goes through its fuzz target's function again, so a finding stays found.
//! `scripts/fuzz.sh` runs the targets themselves.

#[path = "../fuzz/entries.rs"]
mod entries;

use std::path::{Path, PathBuf};

#[test]
fn every_saved_fuzz_input_passes_its_target_again() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, target) in entries::TARGETS {
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
    eprintln!("replayed {replayed} inputs");
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect()
}
