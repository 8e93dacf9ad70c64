#!/usr/bin/env bash
# The long soak: tests/soak.rs for 10 minutes (or SECONDS; two rounds of half each),
# 100 streams (or STREAMS), in release mode, under heaptrack when it is installed
# (Debian: heaptrack), so that the heap left allocated at the end is measured, not
# only resident memory. Its figures go to target/bench-results/soak.md for
# BENCHMARKS.md (scripts/bench.sh runs this as its `soak` section).
#
#   bash scripts/soak.sh            # 600 s, 100 streams
#   bash scripts/soak.sh 120 50     # 120 s, 50 streams
#
# Needs redis-server (Debian: redis-server), as the test command does.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_FOR=${1:-600}
STREAMS=${2:-100}
REPORT=target/bench-results/soak.md
mkdir -p target/bench-results
rm -f "$REPORT"
test_binary=$(cargo test --release --all-features --test soak --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "soak":
        print(m["executable"])')
export SOAK_SECS=$SECONDS_FOR SOAK_STREAMS=$STREAMS SOAK_REPORT=$REPORT
if command -v heaptrack >/dev/null 2>&1; then
    profile=target/bench-results/soak.heaptrack
    rm -f "$profile".*
    status=0
    heaptrack -o "$profile" "$test_binary" --nocapture || status=$?
    leaked=$(heaptrack_print -f "$profile".* 2>/dev/null | sed -n 's/^total memory leaked: //p')
    peak=$(heaptrack_print -f "$profile".* 2>/dev/null | sed -n 's/^peak heap memory consumption: //p')
    # Kilobytes are what statics and the test's own bookkeeping hold; more is a leak.
    case ${leaked:-?} in
        *B | *K) met=yes ;;
        *) met=no ;;
    esac
    {
        echo
        echo "Under heaptrack: peak heap ${peak:-?}; heap still allocated when the process ended, after both rounds: ${leaked:-?} (\`heaptrack_print -f $profile.*\`)."
        echo
        echo "<!-- target: heap left allocated at the end, under heaptrack | kilobytes (statics) | ${leaked:-?} | $met -->"
    } >> "$REPORT"
    exit "$status"
else
    echo "heaptrack is not installed: resident memory only (apt-get install heaptrack)"
    "$test_binary" --nocapture
fi
