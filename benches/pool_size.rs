//! Question: does the hot path's cost grow with the pool's size? Acquire + release on a pool of 1 Ki buffers
//! against one of 1 Mi buffers (8 GiB of address space), each in its steady state.
//!
//! Neither pool is preallocated. Each is first brought to where a long-running process gets: every buffer
//! acquired once (mapping every chunk), one byte written to each (so the 1 Mi pool has 4 GiB resident for the
//! duration of its benchmarks), then all released. Then, in group `pool_size`, with the default per-thread cache:
//! - `touch/<size>`: acquire, write one byte, release (the hot path as in `hot_path`);
//! - `no_touch/<size>`: acquire, release, without touching the buffer: only the pool's own bookkeeping;
//! - `touch_shuffled/<size>`, `no_touch_shuffled/<size>`: the same after every buffer has been taken and
//!   released once more in random order, as a long run of releases in arbitrary order leaves the freelist;
//!
//! and, on a second pool of the same size with `thread_cache(0)`, warmed and shuffled the same way:
//! - `touch_shuffled_nocache/<size>`: the shared freelist alone.
//!
//! Until issue #17 the shared freelist was a FIFO, which returns the buffer idle the longest, so in the 1 Mi
//! pool each touch landed on a page not seen for a million operations: in address order after a sequential
//! warm-up (which hardware prefetching and page-walk caches hide), in random order over 8 GiB after the
//! shuffle. It is now a LIFO stack, like the per-thread caches, which hand back the buffer just released
//! whatever the pool's size.
//!
//! Run: `cargo bench --bench pool_size`

mod common;

use common::{cycle, shuffle_freelist, warmed_pool, Strategy};
use criterion::{BenchmarkId, Criterion, Throughput};
use pagepool::PagePool;
use std::hint::black_box;

fn no_touch(pool: &mut PagePool) {
    let buf = Strategy::acquire(pool);
    black_box(&buf);
    Strategy::release(pool, buf);
}

fn pool_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_size");
    g.throughput(Throughput::Elements(1));
    // `cargo test --all-targets` runs this binary without `--bench` (criterion's test mode: every benchmark
    // once). There the 1 Mi pool would only cost 4 GiB of RSS and a slow debug-build warm-up, so it is skipped.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: &[(&str, usize)] = if benchmarking {
        &[("1K", 1 << 10), ("1M", 1 << 20)]
    } else {
        &[("1K", 1 << 10)]
    };
    for &(label, capacity) in sizes {
        let mut pool = warmed_pool(capacity, true, None);
        g.bench_function(BenchmarkId::new("touch", label), |b| {
            b.iter(|| cycle(&mut pool))
        });
        g.bench_function(BenchmarkId::new("no_touch", label), |b| {
            b.iter(|| no_touch(&mut pool))
        });
        shuffle_freelist(&pool);
        g.bench_function(BenchmarkId::new("touch_shuffled", label), |b| {
            b.iter(|| cycle(&mut pool))
        });
        g.bench_function(BenchmarkId::new("no_touch_shuffled", label), |b| {
            b.iter(|| no_touch(&mut pool))
        });
        drop(pool);
        // The shared freelist alone (what every operation meets once thread caches are off, and what a cache
        // refill or flush meets), after the same shuffle.
        let mut pool = warmed_pool(capacity, true, Some(0));
        shuffle_freelist(&pool);
        g.bench_function(BenchmarkId::new("touch_shuffled_nocache", label), |b| {
            b.iter(|| cycle(&mut pool))
        });
        drop(pool);
    }
    g.finish();
}

fn main() {
    // What criterion_group!/criterion_main! expand to, without their undocumented `pub fn`.
    let mut c = Criterion::default().configure_from_args();
    pool_size(&mut c);
    c.final_summary();
}
