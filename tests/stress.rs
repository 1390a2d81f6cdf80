//! Adversarial stress: 8 threads (on however few cores), 10^7 operations in total over four shared pools
//! (thread cache on and off, overflow mapped with a small cap and refused, a larger alignment, prealloc) plus
//! short-lived private pools dropped while their buffers are out. Every buffer is stamped over its whole length
//! with (thread, sequence) on acquire and verified before release; half of them are released on a partner
//! thread. Zero corruptions, zero double hand-outs (a global set of live pages), and every buffer accounted
//! for at the end. See `tests/stress_impl/mod.rs` for the workload.
//!
//! Ignored by default (about 15 s in release on 2 cores): run it with
//! `cargo test --release --test stress -- --ignored --nocapture`; `PAGEPOOL_STRESS_OPS=1e6` shortens it,
//! `PAGEPOOL_STRESS_SEED` changes the operation mix.

mod stress_impl;

/// Operations in total when `PAGEPOOL_STRESS_OPS` is not set.
const DEFAULT_OPS: u64 = 10_000_000;
const THREADS: usize = 8;

#[test]
#[ignore = "long: run in release with --ignored (.ci/run does)"]
fn adversarial_stress() {
    let ops = stress_impl::ops_from_env(DEFAULT_OPS);
    let seed = stress_impl::seed_from_env();
    println!("stress: {ops} ops, {THREADS} threads, seed {seed:#x}");
    let report = stress_impl::run(ops, THREADS, seed);
    assert_eq!(report.ops, ops);
    assert_eq!(report.threads, THREADS);
    println!("stress: {report}");
}

/// A few thousand operations of the same workload on every `cargo test`, so it cannot rot.
#[test]
fn stress_smoke() {
    let report = stress_impl::run(20_000, THREADS, stress_impl::seed_from_env());
    assert_eq!(report.ops, 20_000);
    assert!(report.acquires_ok > 0 && report.exhausted > 0, "{report}");
}
