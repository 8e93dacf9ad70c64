//! Every saved input of the library's fuzz targets (`fuzz/entries.rs`) goes through
//! its target again; `fuzz/replay.rs` says how. The relay's own targets are replayed
//! by its tests. `scripts/fuzz.sh` runs the targets themselves.

#[path = "../fuzz/entries.rs"]
mod entries;
#[path = "../fuzz/replay.rs"]
mod replay;

#[test]
fn every_saved_fuzz_input_passes_its_target_again() {
    let replayed = replay::replay(entries::TARGETS);
    eprintln!("replayed {replayed} inputs");
    // libsrt's sockets closed and libsrt cleaned up before the process exits: its
    // teardown at exit would otherwise race its own threads (a crash on the way out).
    #[cfg(feature = "libsrt")]
    assert!(
        entries::libsrt_release(),
        "a libsrt socket outlived the replay"
    );
}
