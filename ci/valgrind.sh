#!/usr/bin/env bash
# valgrind memcheck over the adversarial stress workload (tests/stress_impl, 8 threads): release build, reduced
# op count. It runs the harness-less tests/tsan_stress.rs binary rather than tests/stress.rs: libtest's own
# result channel leaves a 48-byte "possibly lost" block (the Thread handle std::sync::mpmc::Context creates for
# libtest's main thread), which is the harness's, not ours.
#
#   ci/valgrind.sh                    # PAGEPOOL_STRESS_OPS (default 1000000) operations on 8 threads
#
# memcheck sees every heap block and every read of memory the program never wrote, but not the pool's own
# buffers beyond that: they are mmap'd pages, which memcheck treats as defined and never reports as leaked.
# Fails on any error (--error-exitcode=1) and on any definite, indirect or possible leak.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || {
    echo "ci/valgrind.sh: needs valgrind (apt-get install valgrind)" >&2
    exit 1
}
start=$(date +%s)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/valgrind} CARGO_TERM_COLOR=never
ops=${PAGEPOOL_STRESS_OPS:-1000000}

echo "==> build: cargo test --release --test tsan_stress --no-run"
# Captured, then echoed: `tee /dev/stderr` would reopen whatever stderr is, truncating it when it is a file
# (as when .ci/run's output is redirected to a log).
build_log=$(cargo test --release --test tsan_stress --no-run 2>&1)
printf '%s\n' "$build_log" >&2
bin=$(printf '%s\n' "$build_log" | sed -n 's/^ *Executable tests\/tsan_stress.rs (\(.*\))$/\1/p')
[ -x "$bin" ] || {
    echo "ci/valgrind.sh: stress binary not found" >&2
    exit 1
}
valgrind --version

echo "==> valgrind memcheck: $bin ($ops ops)"
# --fair-sched=yes: valgrind runs one thread at a time; fair scheduling keeps 8 threads interleaving.
PAGEPOOL_STRESS_OPS=$ops valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
    --track-origins=yes --fair-sched=yes \
    "$bin" --ignored
echo "==> valgrind: clean in $(( $(date +%s) - start )) s"
