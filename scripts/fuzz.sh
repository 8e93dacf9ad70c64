#!/usr/bin/env bash
# Run every fuzz target under fuzz/ for a while, one after the other, growing its
# corpus in fuzz/corpus/<target>/, then minimizing it (`cargo fuzz cmin`). The test
# command replays every corpus (tests/fuzz_corpus.rs). Crashes are left in
# fuzz/artifacts/<target>/: fix them, then copy each, with a name that says what it
# found, into fuzz/regressions/<target>/ (replayed too, never minimized away).
#
#   bash scripts/fuzz.sh            # 600 s a target
#   bash scripts/fuzz.sh 60         # 60 s a target
#   TARGETS="srt_url" bash scripts/fuzz.sh 600
#
# Needs cargo-fuzz (installed when missing) and, for the libsrt_lengths target, the
# system libsrt (Debian: libsrt-openssl-dev; without it that target is skipped). It
# runs on the stable toolchain with RUSTC_BOOTSTRAP=1, AddressSanitizer included.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-600}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
FEATURES=()
if pkg-config --exists srt 2>/dev/null; then
    FEATURES=(--features libsrt)
fi
TARGETS=${TARGETS:-$(cargo fuzz list)}
for target in $TARGETS; do
    echo "== $target: $SECONDS_EACH s"
    mkdir -p "corpus/$target"
    if [ "$target" = libsrt_lengths ] && [ "${#FEATURES[@]}" -eq 0 ]; then
        echo "   skipped: no libsrt (apt-get install libsrt-openssl-dev)"
        continue
    fi
    cargo fuzz run "${FEATURES[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1
    cargo fuzz cmin "${FEATURES[@]}" "$target" "corpus/$target"
done
