#!/usr/bin/env bash
# Instructions per buffer operation, counted by callgrind: a noise-free companion to the criterion benchmarks.
#
# Each operation of examples/callgrind_ops.rs runs twice under `valgrind --tool=callgrind`, with N1 and N2
# operations; setup and teardown are the same in both runs, so (Ir(N2) - Ir(N1)) / (N2 - N1) is the user-space
# instructions of one operation (one acquire + one-byte write + release; for batch ops, per buffer of the
# 1024-buffer batch). Kernel work (mmap/munmap, page faults) is not counted: compare those with criterion.
#
# Prints a markdown table with ratios against the floor and against posix_memalign, and leaves an annotated
# profile of the pool's hot path (per source line, with --dump-instr=yes) in target/callgrind/.
#
# Usage: scripts/callgrind.sh [op ...]     (default: every op; N1/N2 overridable from the environment)
set -euo pipefail
cd "$(dirname "$0")/.."

N1=${N1:-10240}
N2=${N2:-112640}
OUT=target/callgrind
BIN=target/release/examples/callgrind_ops
SINGLE=(floor pool pool-nocache arrayqueue mutex-vec memalign std-aligned jemalloc mmap pool-overflow)
BATCH=(batch-floor batch-pool batch-pool-nocache batch-arrayqueue batch-mutex-vec batch-memalign batch-std-aligned batch-jemalloc)
if [ $# -gt 0 ]; then OPS=("$@"); else OPS=("${SINGLE[@]}" "${BATCH[@]}"); fi

command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
cargo build --quiet --profile bench --example callgrind_ops
mkdir -p "$OUT"

# Total instructions of one run of `op` with `n` operations.
ir() {
    local op=$1 n=$2 file="$OUT/$1.$2.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" "$BIN" "$op" "$n" 2>"$OUT/$op.$n.log" >/dev/null \
        || { echo "valgrind failed for $op $n; see $OUT/$op.$n.log" >&2; exit 1; }
    awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

declare -A PER_OP
for op in "${OPS[@]}"; do
    a=$(ir "$op" "$N1")
    b=$(ir "$op" "$N2")
    PER_OP[$op]=$(awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }')
    echo "$op: Ir($N1)=$a Ir($N2)=$b -> ${PER_OP[$op]} Ir/op" >&2
done

ratio() { # ratio NUM DEN -> "x.xx" or "-" when either is missing
    if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo "-"; fi
}

echo
echo "N1 = $N1, N2 = $N2; Ir/op = (Ir(N2) - Ir(N1)) / (N2 - N1), user-space instructions only."
echo
echo "| op | Ir per op | vs floor | vs posix_memalign |"
echo "|---|---:|---:|---:|"
for op in "${OPS[@]}"; do
    case $op in
        batch-*) floor=${PER_OP[batch-floor]:-}; memalign=${PER_OP[batch-memalign]:-} ;;
        *) floor=${PER_OP[floor]:-}; memalign=${PER_OP[memalign]:-} ;;
    esac
    echo "| $op | ${PER_OP[$op]} | $(ratio "${PER_OP[$op]}" "$floor") | $(ratio "${PER_OP[$op]}" "$memalign") |"
done

# Where the pool's hot path spends its instructions, per function and per source line.
if [[ " ${OPS[*]} " == *" pool "* ]]; then
    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$OUT/pool.annotate.out" \
        "$BIN" pool "$N2" 2>/dev/null >/dev/null
    callgrind_annotate --inclusive=no --auto=yes --threshold=99.9 "$OUT/pool.annotate.out" \
        >"$OUT/pool.annotate.txt" 2>&1 || true
    echo
    echo "Annotated hot path of the pool: $OUT/pool.annotate.txt (callgrind_annotate; raw: $OUT/pool.annotate.out)"
fi
