//! Question: does total throughput grow (or at least hold) when T threads share one pool, each doing acquire +
//! release in a loop? The design's warning sign: a shared counter or refcount written on every operation makes
//! 2 threads slower than 1.
//!
//! Group `threads`, ids `<strategy>/<T>` for T = 1, 2, 4, 8 (on this 2-core machine T = 4 and 8 oversubscribe
//! the cores; the ideal is then flat at the T = 2 figure). One element = one acquire + touch + release by any
//! thread; the time is wall time from the first thread's start to the last thread's end (`iter_custom`), so
//! the reported rate is the total across threads. Strategies:
//! - `pagepool`: one shared pool, capacity 1024, preallocated, default per-thread cache;
//! - `pagepool_nocache`: the same with `thread_cache(0)`, every operation on the shared freelist;
//! - `floor`: each thread its own stack. Perfect scaling, so it is also the control for how much of a second
//!   core the machine really gave during the run;
//! - `arrayqueue` (the pool's freelist alone, shared), `mutex_vec` (shared), `posix_memalign` (glibc, per-thread
//!   tcache and arenas).
//!
//! Run: `cargo bench --bench threads`

mod common;

use common::{
    prealloc_pool, prealloc_pool_nocache, run_threads, Floor, MutexPool, QueuePool, POOL_CAP,
};
// glibc: a unix-only baseline (benches/common).
#[cfg(unix)]
use common::Memalign;
use criterion::{BenchmarkId, Criterion, Throughput};

const THREADS: [usize; 4] = [1, 2, 4, 8];

fn threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads");
    g.throughput(Throughput::Elements(1));

    let pool = prealloc_pool(POOL_CAP);
    let nocache = prealloc_pool_nocache(POOL_CAP);
    let queue = QueuePool::new(POOL_CAP);
    let mutex = MutexPool::new(POOL_CAP);
    for t in THREADS {
        g.bench_with_input(BenchmarkId::new("pagepool", t), &t, |b, &t| {
            b.iter_custom(|iters| run_threads(t, iters, || pool.clone()))
        });
        g.bench_with_input(BenchmarkId::new("pagepool_nocache", t), &t, |b, &t| {
            b.iter_custom(|iters| run_threads(t, iters, || nocache.clone()))
        });
        g.bench_with_input(BenchmarkId::new("floor", t), &t, |b, &t| {
            b.iter_custom(|iters| run_threads(t, iters, || Floor::new(16)))
        });
        g.bench_with_input(BenchmarkId::new("arrayqueue", t), &t, |b, &t| {
            b.iter_custom(|iters| run_threads(t, iters, || queue.clone()))
        });
        g.bench_with_input(BenchmarkId::new("mutex_vec", t), &t, |b, &t| {
            b.iter_custom(|iters| run_threads(t, iters, || mutex.clone()))
        });
        #[cfg(unix)]
        g.bench_with_input(BenchmarkId::new("posix_memalign", t), &t, |b, &t| {
            b.iter_custom(|iters| run_threads(t, iters, || Memalign))
        });
    }
    g.finish();
}

fn main() {
    // What criterion_group!/criterion_main! expand to, without their undocumented `pub fn`.
    let mut c = Criterion::default().configure_from_args();
    threads(&mut c);
    c.final_summary();
}
