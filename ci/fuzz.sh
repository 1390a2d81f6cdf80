#!/usr/bin/env bash
# Fuzzes pagepool's operation language (fuzz/fuzz_targets/ops.rs: the op language of tests/proptest_model.rs,
# single-threaded, stamps verified, stats checked against a model) with cargo-fuzz: libFuzzer, AddressSanitizer
# and debug assertions on the nightly toolchain.
#
#   ci/fuzz.sh [SECONDS]      # default 60; installs cargo-fuzz from crates.io if missing
#
# Reproducible by default: a fixed seed (FUZZ_SEED, default 1) and a fixed number of executions (FUZZ_RUNS,
# default 100000, 20-60 s here), from an empty corpus in a fresh clone, so a run that passed in a fresh
# clone passes in CI too, and a failure there reproduces anywhere. SECONDS still caps the run. For exploratory
# fuzzing: FUZZ_SEED=0 (libFuzzer picks a seed) FUZZ_RUNS=-1 (no limit) ci/fuzz.sh 600.
#
# The corpus grows in fuzz/corpus/ops and crashes land in fuzz/artifacts/ops (both ignored by git); a crash
# makes this script fail and prints the reproducer command. Env: FUZZ_TARGET (default ops), FUZZ_JOBS (1).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
target=${FUZZ_TARGET:-ops}
jobs=${FUZZ_JOBS:-1}
seed=${FUZZ_SEED:-1}
runs=${FUZZ_RUNS:-100000}
start=$(date +%s)

cargo +nightly --version >/dev/null 2>&1 || {
    echo "ci/fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

cd fuzz
mkdir -p "corpus/$target" "artifacts/$target"
echo "==> cargo +nightly fuzz build $target"
cargo +nightly fuzz build "$target"
echo "==> cargo +nightly fuzz run $target: seed $seed, $runs runs, at most ${secs} s"
# -max_len: 2 bytes an operation, so up to ~2000 operations an input. -rss_limit_mb: ASan's shadow plus a few
# pools. -print_final_stats: executions and coverage at the end.
cargo +nightly fuzz run "$target" --jobs "$jobs" -- \
    -max_total_time="$secs" -seed="$seed" -runs="$runs" -max_len=4096 -rss_limit_mb=4096 -print_final_stats=1 -timeout=20
echo "==> fuzz: $target clean after ${secs} s of fuzzing ($(ls "corpus/$target" | wc -l) corpus inputs); done in $(( $(date +%s) - start )) s"
