#!/usr/bin/env bash
# Runs every test of the crate, all features on. Installs what the tests need from
# outside Rust (Debian packages) when it is missing, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
need=()
declare -A packages=(
  [redis-server]=redis-server
  [srt-live-transmit]=srt-tools
  [ffmpeg]=ffmpeg
)
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || need+=("${packages[$cmd]}")
done
# The libsrt connector (feature `libsrt`) links the system libsrt and its header.
[ -e /usr/include/srt/srt.h ] || need+=(libsrt-openssl-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# tests/examples.rs runs the example programs as a user does: build them as programs
# (`cargo test --all-targets` builds examples only as test harnesses). Cargo builds
# the mirror-relay program for tests/relay.rs by itself.
cargo build --all-features --examples
# Benches are measurements, not tests: scripts/bench.sh runs them (clippy in .ci/run
# checks that they build).
cargo test --workspace --all-features --lib --bins --tests --examples
cargo test --workspace --all-features --doc
