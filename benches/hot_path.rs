//! Question: what does one acquire + release of one 8 KiB buffer cost on one thread, against the floor (a
//! thread's own stack of pre-made buffers) and against every allocator or pool a caller could use instead?
//!
//! Group `hot_path`, one element = one acquire, one byte written, one release. Baselines in the same group:
//! `floor`, `arrayqueue` (the pool's freelist alone), `mutex_vec`, `posix_memalign`, `std_aligned`, `jemalloc`,
//! `memmap2` (map + unmap per buffer). `pagepool` is capacity 1024, preallocated, with the default per-thread
//! cache (a LIFO stack per thread: the buffer just released comes back, warm); `pagepool_nocache` is the same
//! pool with `thread_cache(0)`, so every operation goes through the shared freelist (a lock-free LIFO stack
//! since issue #17: the buffer just released comes back; until then a FIFO that handed out the coldest of the
//! 1024 buffers).
//!
//! Run: `cargo bench --bench hot_path`

mod common;

use common::POOL_CAP;
use common::{
    cycle, prealloc_pool, prealloc_pool_nocache, Floor, Mmap, MutexPool, QueuePool, StdAligned,
    Strategy,
};
// glibc and jemalloc: unix-only baselines (benches/common).
#[cfg(unix)]
use common::{Jemalloc, Memalign};
use criterion::{Criterion, Throughput};

fn bench_one<S: Strategy>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut s: S,
) {
    g.bench_function(name, |b| b.iter(|| cycle(&mut s)));
}

fn hot_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
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
    hot_path(&mut c);
    c.final_summary();
}
