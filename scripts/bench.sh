#!/usr/bin/env bash
# Regenerate BENCHMARKS.md: run every bench, collect the markdown section each one
# writes to target/bench-results/<bench>.md (criterion benches get theirs made here
# from criterion's estimates), stamp each section with the date (UTC), the exact
# command and the commit it was measured with, and put them under a header describing
# the machine and a summary of the targets.
#
#   bash scripts/bench.sh            # all benches and the 10-minute soak, about 25 minutes on 2 cores
#   BENCHES="hot_path recovery" bash scripts/bench.sh   # a subset
#   RUN="scale" bash scripts/bench.sh                   # rerun one, keep the others' results
#   BENCH_QUICK=1 bash scripts/bench.sh                 # short runs, to check the benches work
#
# A section kept by RUN keeps the stamp of the run that measured it. Honours
# CARGO_TARGET_DIR. Measurements are only comparable within one run; on a shared
# machine run it alone (e.g. under `flock`).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS=$ROOT/target/bench-results
CRITERION=$TARGET_DIR/criterion
OUT=$ROOT/BENCHMARKS.md
# The invocation as it was typed, with the variables this script and the benches read.
invocation=""
for var in BENCHES RUN BENCH_QUICK THROUGHPUT_ONLY; do
    if [[ -n ${!var:-} ]]; then
        invocation+="$var=\"${!var}\" "
    fi
done
COMMAND="${invocation}bash scripts/bench.sh"
# What each bench is run with: the variables the benches read, then cargo.
bench_env=""
for var in BENCH_QUICK THROUGHPUT_ONLY; do
    if [[ -n ${!var:-} ]]; then
        bench_env+="$var=\"${!var}\" "
    fi
done
BENCHES=${BENCHES:-"hot_path throughput srt_relay relay_scale recovery detection scale state_store soak"}
STARTED=$(date +%s)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $commit != unknown ]] && ! git diff --quiet HEAD -- . ':!BENCHMARKS.md' 2>/dev/null; then
    commit+=" with uncommitted changes"
fi

mkdir -p "$RESULTS"
notes=()

criterion_section() {
    # $1: bench name. Reads target/criterion/*/new/estimates.json written since the start.
    python3 - "$1" "$CRITERION" "$STARTED" "$RESULTS/$1.md" <<'PY'
import json, os, sys

bench, root, started, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

def estimates():
    """{'group/function': (median ns, lower, upper)} of every benchmark run since the start."""
    found = {}
    for dirpath, _, files in os.walk(root):
        if "estimates.json" in files and os.path.basename(dirpath) == "new":
            path = os.path.join(dirpath, "estimates.json")
            if os.path.getmtime(path) < started:
                continue
            bench_json = os.path.join(dirpath, "benchmark.json")
            try:
                with open(bench_json) as f:
                    meta = json.load(f)
                name = meta.get("full_id") or meta.get("title")
            except OSError:
                name = os.path.relpath(os.path.dirname(dirpath), root)
            with open(path) as f:
                e = json.load(f)["median"]
            ci = e["confidence_interval"]
            found[name] = (e["point_estimate"], ci["lower_bound"], ci["upper_bound"])
    return found

def ns(v):
    return f"{v:.1f} ns" if v < 1000 else (f"{v / 1000:.2f} µs" if v < 1e6 else f"{v / 1e6:.2f} ms")

est = estimates()
lines = []
targets = []
# The notice the other benches write in quick mode (benches/common/quick.rs).
quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
quick_notice = ("**Quick run (BENCH_QUICK=1): counts and durations cut to check that the bench "
                "works; these figures are not comparable with a full run's.**\n")

def row(name, base=None, label=None):
    if name not in est:
        return f"| {label or name} | not measured | | |"
    v, lo, hi = est[name]
    ratio = f"×{v / est[base][0]:.2f}" if base in est and est[base][0] > 0 else "—"
    return f"| {label or name} | {ns(v)} | {ns(lo)} – {ns(hi)} | {ratio} |"

if bench == "hot_path":
    lines.append("## Hot path: per-packet cost (criterion)\n")
    if quick:
        lines.append(quick_notice)
    lines.append(
        "Measured in real time by criterion (`benches/hot_path.rs`): the median time per "
        "iteration, its 95 % confidence interval, and the ratio to the baseline of the same "
        "table, all from this run. Every figure is one packet polled through a connection "
        "opened by the layers, as a program opens it. `accounting` runs while another thread "
        "reads the same figures in a tight loop (`check_health()` on the health handle, or "
        f"taking the lock), the worst case of a metrics reporter on this {os.cpu_count()}-core "
        "machine. `stream` is one packet polled through each wrapper of an endless in-memory "
        "connection whose packets arrive at a steady rhythm, each stamped a fixed gap after "
        "the one before, so that the failure detector learns the gaps and runs its periodic "
        "checks inside the measured loop.\n")
    lines.append("| with a concurrent reader, per packet | median | 95 % CI | vs mutex |")
    lines.append("|---|---|---|---|")
    lines.append(row("accounting/lock_free_with_reader", "accounting/mutex_with_reader", "`Monitored` (lock-free)"))
    lines.append(row("accounting/mutex_with_reader", "accounting/mutex_with_reader", "mutex-accounting wrapper"))
    lines.append("")
    lines.append("| stream, per packet polled | median | 95 % CI | vs bare |")
    lines.append("|---|---|---|---|")
    for name, label in [("stream/bare", "bare connection"),
                        ("stream/health", "`Monitored` (health)"),
                        ("stream/mutex_baseline", "mutex-accounting wrapper"),
                        ("stream/health_and_detection", "`Detected<Monitored>` (health + detection)")]:
        lines.append(row(name, "stream/bare", label))
    lines.append("")
    # What the bench saw its detector do, written by benches/hot_path.rs in this run.
    stream_note = os.path.join(os.path.dirname(out), "hot_path.stream.md")
    if os.path.exists(stream_note) and os.path.getmtime(stream_note) >= started:
        with open(stream_note) as f:
            lines.append(f.read().strip() + "\n")
    extra = sorted(k for k in est if k.startswith("experiment/"))
    if extra:
        lines.append("| experiment, per packet | median | 95 % CI | vs `record_packet` copy |")
        lines.append("|---|---|---|---|")
        for k in extra:
            lines.append(row(k, "experiment/record_packet_copy", k.split("/", 1)[1]))
        lines.append("")
    def get(n):
        return est[n][0] if n in est else None
    lfr, mxr = get("accounting/lock_free_with_reader"), get("accounting/mutex_with_reader")
    bare, health, locked = get("stream/bare"), get("stream/health"), get("stream/mutex_baseline")
    if bare and health:
        targets.append(("health accounting added per packet (`Monitored` − bare poll)", "≤ 20 ns", ns(health - bare), health - bare <= 20))
    if bare and health and locked and health > bare:
        added_h, added_m = health - bare, locked - bare
        targets.append(("mutex / lock-free added cost, uncontended", "several times (≥ 3×)", f"×{added_m / added_h:.1f}", added_m / added_h >= 3))
        lines.append(f"Added per packet over the bare poll: health {ns(added_h)}, mutex wrapper {ns(added_m)}.\n")
    if lfr and mxr:
        targets.append(("mutex / lock-free, with a concurrent reader", "several times (≥ 3×)", f"×{mxr / lfr:.1f}", mxr / lfr >= 3))
elif bench == "state_store":
    lines.append("## State stores: save and load latency (criterion)\n")
    if quick:
        lines.append(quick_notice)
    lines.append(
        "Measured in real time by criterion (`benches/state_store.rs`): median time of one "
        "save or load of a stream's state, its 95 % confidence interval, and the ratio to the "
        "in-memory store's figure of this run. Redis is a `redis-server` the bench starts on "
        "loopback (skipped when not installed); the file store fsyncs.\n")
    lines.append("| store / operation | median | 95 % CI | vs memory |")
    lines.append("|---|---|---|---|")
    for store in ["memory", "file", "redis"]:
        for op in ["save", "load"]:
            lines.append(row(f"state_store/{store}/{op}", f"state_store/memory/{op}"))
    lines.append("")

for figure, target, measured, met in targets:
    lines.append(f"<!-- target: {figure} | {target} | {measured} | {'yes' if met else 'no'} -->")
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

STAMP_PREFIX="_Measured "

stamp_section() {
    # $1: bench, $2: when it started (UTC), $3: the command that ran it. Puts a line
    # saying so under the section's title.
    python3 - "$RESULTS/$1.md" "$STAMP_PREFIX" "$2" "$3" "$COMMAND" "$commit" <<'PY'
import sys

path, prefix, when, command, invocation, commit = sys.argv[1:7]
stamp = (f"{prefix}{when} by `{command}` (run by `{invocation}`), "
         f"at commit {commit}._")
with open(path) as f:
    lines = f.read().split("\n")
title = next((i for i, l in enumerate(lines) if l.startswith("## ")), None)
if title is None:
    lines[0:0] = [stamp, ""]
else:
    lines[title + 1:title + 1] = ["", stamp]
with open(path, "w") as f:
    f.write("\n".join(lines))
PY
}

for bench in $BENCHES; do
    # RUN="scale detection": run only those again, keep the others' last results.
    if [[ -n ${RUN:-} && " $RUN " != *" $bench "* && -f $RESULTS/$bench.md ]]; then
        echo "== $bench: kept from the last run"
        continue
    fi
    rm -f "$RESULTS/$bench.md"
    if [[ $bench == soak ]]; then
        # Not a bench: the long run of tests/soak.rs, which writes its own section.
        echo "== soak"
        began_utc=$(date -u '+%Y-%m-%d %H:%M UTC')
        passed=yes
        bash scripts/soak.sh 2>&1 | tee "$RESULTS/soak.log" || passed=no
        if [[ -s $RESULTS/soak.md ]]; then
            stamp_section soak "$began_utc" "bash scripts/soak.sh"
        fi
        if [[ $passed == no ]]; then
            notes+=("\`soak\`: a check of the soak failed (its section says which); see target/bench-results/soak.log.")
        fi
        continue
    fi
    if [[ ! -f benches/$bench.rs ]]; then
        notes+=("\`$bench\`: skipped, benches/$bench.rs does not exist yet.")
        echo "== $bench: skipped (no benches/$bench.rs)"
        continue
    fi
    echo "== $bench"
    if [[ $bench == srt_relay || $bench == relay_scale ]]; then
        # It runs the relay program as an operator does, on both SRT backends.
        cargo build --release --all-features --bin mirror-relay
    fi
    began=$(date +%s)
    began_utc=$(date -u '+%Y-%m-%d %H:%M UTC')
    # BENCH_QUICK and THROUGHPUT_ONLY reach the bench from this environment.
    if ! cargo bench --all-features --bench "$bench" 2>&1 | tee "$RESULTS/$bench.log"; then
        notes+=("\`$bench\`: the bench failed; see target/bench-results/$bench.log.")
        continue
    fi
    if [[ $bench == hot_path || $bench == state_store ]]; then
        criterion_section "$bench"
    fi
    if [[ ! -s $RESULTS/$bench.md ]]; then
        notes+=("\`$bench\`: ran but wrote no section to target/bench-results/$bench.md.")
    else
        stamp_section "$bench" "$began_utc" "${bench_env}cargo bench --all-features --bench $bench"
    fi
    echo "== $bench took $(( $(date +%s) - began )) s"
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
{
    echo "# Benchmarks"
    echo
    echo "Assembled by \`$COMMAND\` on $(date -u '+%Y-%m-%d %H:%M UTC') (that run took $(( ($(date +%s) - STARTED) / 60 )) minutes)."
    echo "Each section says when (UTC), by which command and at which commit it was measured;"
    echo "a section kept from an earlier run (\`RUN=\`) keeps its own."
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| machine | $(nproc) cores, ${cpu:-unknown CPU}, $mem memory |"
    echo "| kernel | $(uname -sr) |"
    echo "| rustc | $(rustc --version) |"
    echo "| command | \`$COMMAND\` (each bench: \`${bench_env}cargo bench --all-features --bench <name>\`; see each section) |"
    echo
    echo "Every time is also given as a ratio against a baseline measured in the same run;"
    echo "on a shared or small machine the ratios are the figures to compare between runs."
    echo "Each section says which figures are measured in real time and which simulated."
    echo
    echo "## Targets"
    echo
    echo "| section | figure | target | measured | met? |"
    echo "|---|---|---|---|---|"
    for bench in $BENCHES; do
        [[ -f $RESULTS/$bench.md ]] || continue
        sed -n "s/^<!-- target: \\(.*\\) -->\$/| $bench | \\1 |/p" "$RESULTS/$bench.md"
    done
    echo
    if (( ${#notes[@]} )); then
        for note in "${notes[@]}"; do
            echo "- $note"
        done
        echo
    fi
    for bench in $BENCHES; do
        [[ -f $RESULTS/$bench.md ]] || continue
        if grep -q "^$STAMP_PREFIX" "$RESULTS/$bench.md"; then
            cat "$RESULTS/$bench.md"
        else
            # Measured before sections were stamped: say that its date is unknown.
            awk -v note="_Kept from an earlier run; when and by which command it was measured was not recorded._" \
                '!done && /^## / { print; print ""; print note; done = 1; next } { print }' \
                "$RESULTS/$bench.md"
        fi
        echo
    done
} > "$OUT"
echo "wrote $OUT"
