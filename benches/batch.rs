//! Question: what does the query pattern cost (acquire 1024 buffers, touching each, then release all 1024 in
//! the order they were taken), per buffer, for the pool and for every baseline?
//!
//! Group `batch`, one element = one buffer (an iteration is 1024 of them). The pool and the pre-made baselines
//! hold exactly 1024 buffers, so the pool never overflows. `pagepool` has the default per-thread cache (64 slots
//! for this capacity: most of a batch goes through the shared freelist in half-cache bursts);
//! `pagepool_nocache` has `thread_cache(0)`. Flat sampling, because the `memmap2` baseline (1024
//! `mmap` + page fault + `munmap`) takes milliseconds per iteration.
//!
//! Run: `cargo bench --bench batch`

mod common;

use common::POOL_CAP;
use common::{
    batch, prealloc_pool, prealloc_pool_nocache, Floor, Mmap, MutexPool, QueuePool, StdAligned,
    Strategy,
};
// glibc and jemalloc: unix-only baselines (benches/common).
#[cfg(unix)]
use common::{Jemalloc, Memalign};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};

fn bench_one<S: Strategy>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut s: S) {
    let mut held = Vec::with_capacity(POOL_CAP);
    g.bench_function(name, |b| b.iter(|| batch(&mut s, &mut held, POOL_CAP)));
}

fn batch_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(POOL_CAP as u64));
    g.sampling_mode(SamplingMode::Flat);
    bench_one(&mut g, "floor", Floor::new(POOL_CAP));
    bench_one(&mut g, "pagepool", prealloc_pool(POOL_CAP));
    bench_one(&mut g, "pagepool_nocache", prealloc_pool_nocache(POOL_CAP));
    bench_one(&mut g, "arrayqueue", QueuePool::new(POOL_CAP));
    bench_one(&mut g, "mutex_vec", MutexPool::new(POOL_CAP));
    #[cfg(unix)]
    bench_one(&mut g, "posix_memalign", Memalign);
    bench_one(&mut g, "std_aligned", StdAligned);
    #[cfg(unix)]
    bench_one(&mut g, "jemalloc", Jemalloc);
    bench_one(&mut g, "memmap2", Mmap);
    g.finish();
}

fn main() {
    // What criterion_group!/criterion_main! expand to, without their undocumented `pub fn`.
    let mut c = Criterion::default().configure_from_args();
    batch_group(&mut c);
    c.final_summary();
}
