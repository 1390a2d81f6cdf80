//! Question: when the pool is exhausted and overflows by mapping, what does one acquire + release cost against
//! a raw `mmap` + `munmap` of the same 8 KiB? The overflow path should add only bookkeeping to the system calls.
//!
//! Group `overflow`, one element = one acquire + release. `pagepool_overflow` uses a pool of capacity 1 whose
//! only buffer is held for the whole run, `OverflowPolicy::Map`; `memmap2` maps and unmaps per buffer
//! (`MmapMut::map_anon`). `*/touch` writes one byte (a page fault on fresh memory, as a real user pays);
//! `*/untouched` does not, isolating the `mmap` + `munmap` calls and the pool's bookkeeping around them.
//!
//! Run: `cargo bench --bench overflow`

mod common;

use common::{cycle, exhausted_pool, Mmap, Strategy};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

fn untouched<S: Strategy>(s: &mut S) {
    let b = s.acquire();
    black_box(&b);
    s.release(b);
}

fn both<S: Strategy>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, s: &mut S) {
    g.bench_function(BenchmarkId::new(name, "touch"), |b| b.iter(|| cycle(s)));
    g.bench_function(BenchmarkId::new(name, "untouched"), |b| {
        b.iter(|| untouched(s))
    });
}

fn overflow(c: &mut Criterion) {
    let mut g = c.benchmark_group("overflow");
    g.throughput(Throughput::Elements(1));
    let (mut pool, held) = exhausted_pool();
    both(&mut g, "pagepool_overflow", &mut pool);
    both(&mut g, "memmap2", &mut Mmap);
    assert_eq!(pool.stats().overflow_in_use, 0);
    drop(held);
    g.finish();
}

fn main() {
    // What criterion_group!/criterion_main! expand to, without their undocumented `pub fn`.
    let mut c = Criterion::default().configure_from_args();
    overflow(&mut c);
    c.final_summary();
}
