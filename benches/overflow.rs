//! Questions: when the pool is exhausted and overflows, what does one acquire + release cost (1) without the
//! overflow reserve (`overflow_decay(ZERO)`: a fresh mapping each time) against a raw `mmap` + `munmap` of the
//! same 8 KiB, where the pool should add only bookkeeping to the system calls, and (2) with the reserve (the
//! default decay: the released mapping is reused) against the pooled hit path?
//!
//! Group `overflow`, one element = one acquire + release. `pagepool_overflow_decay0` and
//! `pagepool_overflow_reserve` use a pool of capacity 1 whose only buffer is held for the whole run,
//! `OverflowPolicy::Map`; `pagepool_hit` a warmed pool of 1024 buffers with the default thread cache (the hit
//! path); `memmap2` maps and unmaps per buffer (`MmapMut::map_anon`). `*/touch` writes one byte (a page fault on
//! fresh memory, as a real user pays); `*/untouched` does not, isolating the `mmap` + `munmap` calls and the
//! pool's bookkeeping around them.
//!
//! Run: `cargo bench --bench overflow`

mod common;

use common::{cycle, exhausted_pool, warmed_pool, Mmap, Strategy};
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
    let (mut zero, held_zero) = exhausted_pool(std::time::Duration::ZERO);
    let (mut reserve, held_reserve) = exhausted_pool(pagepool::DEFAULT_OVERFLOW_DECAY);
    let mut hit = warmed_pool(1024, true, None);
    both(&mut g, "pagepool_overflow_decay0", &mut zero);
    both(&mut g, "memmap2", &mut Mmap);
    both(&mut g, "pagepool_overflow_reserve", &mut reserve);
    both(&mut g, "pagepool_hit", &mut hit);
    assert_eq!(zero.stats().overflow_in_use, 0);
    let s = reserve.stats();
    assert_eq!(s.overflow_in_use, 0);
    // Reuse, not a mapping per cycle (one cycle per variant in `cargo test --benches`; a decay may expire
    // between benchmark functions, so not exactly one mapping either).
    assert!(s.overflow_reuses >= s.overflow_maps, "{s:?}");
    drop((held_zero, held_reserve));
    g.finish();
}

fn main() {
    // What criterion_group!/criterion_main! expand to, without their undocumented `pub fn`.
    let mut c = Criterion::default().configure_from_args();
    overflow(&mut c);
    c.final_summary();
}
