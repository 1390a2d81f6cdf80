//! The stress workload of `tests/stress.rs` without the libtest harness, for ThreadSanitizer (`ci/sanitizers.sh`):
//! libtest reports its results over a std channel compiled without TSan instrumentation, which TSan flags as a
//! race that is not ours. Like the `#[ignore]`d stress test it only runs when given `--ignored`;
//! `PAGEPOOL_STRESS_OPS` sets the operation count (default 200,000 here; ci/sanitizers.sh asks for 10^6).

mod stress_impl;

const DEFAULT_OPS: u64 = 200_000;
const THREADS: usize = 8;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args
        .iter()
        .any(|a| a == "--ignored" || a == "--include-ignored")
    {
        println!("tsan_stress: skipped (run with --ignored, as ci/sanitizers.sh does)");
        return;
    }
    let ops = stress_impl::ops_from_env(DEFAULT_OPS);
    let seed = stress_impl::seed_from_env();
    println!("tsan_stress: {ops} ops, {THREADS} threads, seed {seed:#x}");
    let report = stress_impl::run(ops, THREADS, seed);
    println!("tsan_stress: {report}");
    println!("tsan_stress: 1 passed, 0 failed");
}
