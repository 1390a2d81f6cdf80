#!/usr/bin/env bash
# Runs every criterion group with short settings (about 5 minutes on 2 cores) and prints the markdown tables of
# docs/benchmarks.md (scripts/bench_table.py). The load average is logged before and after each group: the
# thread-scaling and cross-thread groups only mean something on an otherwise idle machine.
#
# Usage: scripts/bench.sh [extra criterion args]    e.g. scripts/bench.sh --measurement-time 5
set -euo pipefail
cd "$(dirname "$0")/.."

BENCHES=(hot_path batch cross_thread threads overflow pool_size)
rm -rf target/criterion
cargo bench --no-run "${BENCHES[@]/#/--bench=}" >/dev/null 2>&1 || cargo bench --no-run "${BENCHES[@]/#/--bench=}"
mkdir -p target
for b in "${BENCHES[@]}"; do
    echo "== $b: start $(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    if ! cargo bench --bench "$b" -- --warm-up-time 1 --measurement-time 2 "$@" >"target/bench-$b.log" 2>&1; then
        cat "target/bench-$b.log" >&2
        echo "cargo bench --bench $b failed" >&2
        exit 1
    fi
    grep -E "^[a-z_]+/|time:|thrpt:" "target/bench-$b.log" >&2 || true
done
echo "== done $(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 scripts/bench_table.py target/criterion
