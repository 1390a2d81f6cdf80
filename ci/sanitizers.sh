#!/usr/bin/env bash
# Runs pagepool's tests under the sanitizers on the nightly toolchain:
#   1. AddressSanitizer (LeakSanitizer on): the lib unit tests and every integration test (no doctests, benches
#      or examples), then the stress test with a reduced operation count.
#   2. ThreadSanitizer: the stress workload as the harness-less tests/tsan_stress.rs (libtest's own result
#      channel, compiled into the uninstrumented std, is reported as a race under TSan; see Cargo.toml).
#
#   ci/sanitizers.sh [asan|tsan|all]     # default all
#
# No rust-src here, so no -Zbuild-std: std stays uninstrumented. ASan copes with that as is. TSan needs
# -Cunsafe-allow-abi-mismatch=sanitizer to link against the uninstrumented std, and cannot see synchronisation
# done inside precompiled std code; our crate, crossbeam and every generic std item (atomics, channels,
# Arc, Mutex) are compiled into our binaries and so are instrumented. Nothing is suppressed: any report fails
# the run.
# Env: PAGEPOOL_STRESS_OPS overrides the stress op counts (ASan 300000 in a debug build, TSan 1000000 in release, by default).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
TARGET=x86_64-unknown-linux-gnu
export CARGO_TERM_COLOR=never RUST_BACKTRACE=1
step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

cargo +nightly --version >/dev/null 2>&1 || {
    echo "ci/sanitizers.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
}
cargo +nightly --version
rustc +nightly --version

if [ "$what" = asan ] || [ "$what" = all ]; then
    t0=$(date +%s)
    # detect_leaks=1: LeakSanitizer at exit (nothing in the tests leaks on purpose).
    # allocator_may_return_null=1: a failed malloc returns NULL as glibc's does, instead of ASan aborting;
    #   tests/config_errors.rs asks for a 64 GiB freelist on purpose and expects ConfigError::FreelistAlloc.
    # strict_string_checks, detect_stack_use_after_return: stricter than the defaults.
    # handle_segv=0: tests/secrets.rs expects children that touch a guard page or unmapped memory to die of
    #   SIGSEGV; ASan's own handler would turn that death into a report and exit code 1.
    export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1:detect_stack_use_after_return=1:abort_on_error=0:handle_segv=0"
    # --cfg pagepool_asan: the pool poisons idle pooled buffers (src/sys/mod.rs), so a use after release of
    # pooled memory, which stays mapped, is reported too.
    ASAN_RUSTFLAGS="-Zsanitizer=address -Cdebug-assertions --cfg pagepool_asan"
    asan() {
        RUSTFLAGS="$ASAN_RUSTFLAGS" RUSTDOCFLAGS="-Zsanitizer=address" \
            CARGO_TARGET_DIR=target/asan cargo +nightly test --target "$TARGET" "$@"
    }
    step "ASan: lib unit tests and integration tests"
    # Skipped: the two tests that count every line of /proc/self/maps (tests/million.rs
    # one_million_8k_buffers_need_at_most_1000_mappings; tests/overflow.rs
    # overflow_maps_exactly_and_refusals_map_nothing). Under ASan the heap is ASan's own allocator,
    # which maps each size class's region inside one reserved range on first use and never unmaps it, so any
    # heap allocation between two counts (an error's to_string, a Vec of buffers, the freelist) adds lines that
    # are not the pool's. The pool's own mappings are checked by address in this same run (tests/lifetime.rs,
    # tests/thread_cache.rs, tests/mappings.rs, tests/proptest_model.rs); the skipped tests run in .ci/run.
    asan --lib --tests -- \
        --skip one_million_8k_buffers_need_at_most_1000_mappings \
        --skip overflow_maps_exactly_and_refusals_map_nothing
    step "ASan: stress test (${PAGEPOOL_STRESS_OPS:-3e5} ops)"
    PAGEPOOL_STRESS_OPS=${PAGEPOOL_STRESS_OPS:-3e5} asan --test stress -- --ignored --nocapture
    step "ASan: a use after release of a pooled buffer must be reported (examples/asan_use_after_release.rs)"
    if RUSTFLAGS="$ASAN_RUSTFLAGS" CARGO_TARGET_DIR=target/asan \
        cargo +nightly run --quiet --target "$TARGET" --example asan_use_after_release 2>target/asan/uar.log; then
        cat target/asan/uar.log
        echo "ci/sanitizers.sh: FAILED: the use after release ran without an ASan report" >&2
        exit 1
    fi
    grep -q "use-after-poison" target/asan/uar.log || {
        cat target/asan/uar.log
        echo "ci/sanitizers.sh: FAILED: expected an ASan use-after-poison report" >&2
        exit 1
    }
    echo "caught: $(grep -m1 'ERROR: AddressSanitizer' target/asan/uar.log)"
    step "ASan: clean in $(( $(date +%s) - t0 )) s"
fi

if [ "$what" = tsan ] || [ "$what" = all ]; then
    t0=$(date +%s)
    # halt_on_error=0 to see every report; any report still makes the process exit 66.
    export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:history_size=4"
    step "TSan: tests/tsan_stress.rs (${PAGEPOOL_STRESS_OPS:-1000000} ops, 8 threads)"
    # --cfg pagepool_tsan: the crate's mutexes show TSan the ordering std's precompiled slow path gives (src/sync.rs).
    RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer -Cdebug-assertions --cfg pagepool_tsan" \
        CARGO_TARGET_DIR=target/tsan PAGEPOOL_STRESS_OPS=${PAGEPOOL_STRESS_OPS:-1000000} \
        cargo +nightly test --target "$TARGET" --release --test tsan_stress -- --ignored
    step "TSan: clean in $(( $(date +%s) - t0 )) s"
fi

step "sanitizers ($what) done in $(( $(date +%s) - start )) s"
