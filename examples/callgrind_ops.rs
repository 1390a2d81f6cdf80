//! Runs N buffer operations of one named strategy, for counting instructions under callgrind
//! (`scripts/callgrind.sh` runs each operation at two N and divides the difference, so setup cancels out).
//!
//! Usage: `callgrind_ops <op> <n>`, where one operation is one acquire + one-byte write + release of an
//! 8 KiB buffer, and `<op>` is one of
//! - single: `pool` (default per-thread cache), `pool-nocache` (`thread_cache(0)`), `floor`, `arrayqueue`,
//!   `mutex-vec`, `memalign`, `std-aligned`, `jemalloc`, `mmap`, `pool-overflow` (capacity-1 pool whose buffer
//!   is held, `OverflowPolicy::Map`, `overflow_decay(ZERO)`: a fresh mapping each time),
//!   `pool-overflow-reserve` (the same with the default decay: the released mapping reused);
//! - batch (acquire 1024, then release 1024; `n` must be a multiple of 1024): `batch-pool`, `batch-pool-nocache`,
//!   `batch-floor`, `batch-arrayqueue`, `batch-mutex-vec`, `batch-memalign`, `batch-std-aligned`,
//!   `batch-jemalloc`.
//!
//! Build: `cargo build --profile bench --example callgrind_ops` (the bench profile keeps line tables).
//! `memalign` and `jemalloc` (and their batch forms) are unix-only: elsewhere they exit with a message.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{
    batch, cycle, exhausted_pool, prealloc_pool, prealloc_pool_nocache, Floor, Mmap, MutexPool,
    QueuePool, StdAligned, Strategy, POOL_CAP,
};
// glibc and jemalloc: unix-only baselines (benches/common).
#[cfg(unix)]
use common::{Jemalloc, Memalign};
use std::hint::black_box;
use std::process::ExitCode;

/// `n` single cycles. Not inlined, so that callgrind_annotate shows the loop as its own function.
#[inline(never)]
fn run_single<S: Strategy>(mut s: S, n: u64) {
    for _ in 0..black_box(n) {
        cycle(&mut s);
    }
}

/// `n / 1024` batches of 1024.
#[inline(never)]
fn run_batch<S: Strategy>(mut s: S, n: u64) {
    let mut held = Vec::with_capacity(POOL_CAP);
    for _ in 0..black_box(n) / POOL_CAP as u64 {
        batch(&mut s, &mut held, POOL_CAP);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (op, n) = match (
        args.get(1),
        args.get(2)
            .and_then(|n| n.replace('_', "").parse::<u64>().ok()),
    ) {
        (Some(op), Some(n)) => (op.as_str(), n),
        _ => {
            eprintln!("usage: callgrind_ops <op> <n>   (see the source for the list of ops)");
            return ExitCode::from(2);
        }
    };
    if op.starts_with("batch-") && n % POOL_CAP as u64 != 0 {
        eprintln!("batch ops need n to be a multiple of {POOL_CAP}");
        return ExitCode::from(2);
    }
    match op {
        "pool" => run_single(prealloc_pool(POOL_CAP), n),
        "pool-nocache" => run_single(prealloc_pool_nocache(POOL_CAP), n),
        "floor" => run_single(Floor::new(POOL_CAP), n),
        "arrayqueue" => run_single(QueuePool::new(POOL_CAP), n),
        "mutex-vec" => run_single(MutexPool::new(POOL_CAP), n),
        #[cfg(unix)]
        "memalign" => run_single(Memalign, n),
        "std-aligned" => run_single(StdAligned, n),
        #[cfg(unix)]
        "jemalloc" => run_single(Jemalloc, n),
        "mmap" => run_single(Mmap, n),
        // A fresh mapping per buffer (no overflow reserve), as before issue #15.
        "pool-overflow" => {
            let (pool, held) = exhausted_pool(std::time::Duration::ZERO);
            run_single(pool, n);
            drop(held);
        }
        // The released mapping reused from the overflow reserve (the default decay).
        "pool-overflow-reserve" => {
            let (pool, held) = exhausted_pool(pagepool::DEFAULT_OVERFLOW_DECAY);
            run_single(pool, n);
            drop(held);
        }
        "batch-pool" => run_batch(prealloc_pool(POOL_CAP), n),
        "batch-pool-nocache" => run_batch(prealloc_pool_nocache(POOL_CAP), n),
        "batch-floor" => run_batch(Floor::new(POOL_CAP), n),
        "batch-arrayqueue" => run_batch(QueuePool::new(POOL_CAP), n),
        "batch-mutex-vec" => run_batch(MutexPool::new(POOL_CAP), n),
        #[cfg(unix)]
        "batch-memalign" => run_batch(Memalign, n),
        "batch-std-aligned" => run_batch(StdAligned, n),
        #[cfg(unix)]
        "batch-jemalloc" => run_batch(Jemalloc, n),
        #[cfg(not(unix))]
        "memalign" | "jemalloc" | "batch-memalign" | "batch-jemalloc" => {
            eprintln!(
                "{op}: unavailable on this platform (glibc and jemalloc baselines are unix-only)"
            );
            return ExitCode::from(2);
        }
        other => {
            eprintln!("unknown op {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
