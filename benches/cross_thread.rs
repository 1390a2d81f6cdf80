//! Question: what does a buffer cost per item when one thread acquires it and another releases it (a reader
//! thread filling buffers that a worker thread consumes), against acquire + release on the same thread?
//!
//! Group `cross_thread`, one element = one buffer taken on the producer (the measuring thread, one byte
//! written), handed over, and released on a consumer thread. Two transports, each bounded to
//! [`DEPTH`] items in flight so the pool (capacity 1024) never overflows:
//! - `mpsc`: `std::sync::mpsc::sync_channel(DEPTH)` (blocking);
//! - `spin`: a `crossbeam_queue::ArrayQueue` of DEPTH slots, both sides spinning (yielding after a while, since
//!   this runs on 2 cores next to other work).
//!
//! `pagepool/*` has the default per-thread cache (the producer's cache drains and refills from the shared
//! freelist in bursts, the consumer's fills and flushes back in bursts); `pagepool_nocache/*` has
//! `thread_cache(0)`. Baselines in the group: `pagepool/same_thread` (acquire, touch, release on one thread),
//! `posix_memalign/*` over the same transports (glibc then frees on a thread that did not allocate), and
//! `channel_only/*`: the transport alone carrying a `u64`, no buffer, which is the part of the cross-thread
//! cost that is not the pool.
//!
//! Run: `cargo bench --bench cross_thread`

mod common;

use common::{cycle, prealloc_pool, prealloc_pool_nocache, touch, Strategy, POOL_CAP};
// glibc: a unix-only baseline (benches/common).
#[cfg(unix)]
use common::Memalign;
use criterion::{BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use std::hint::black_box;
use std::sync::mpsc::sync_channel;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Items in flight at most (well below the pool's capacity).
const DEPTH: usize = 256;

/// Producer (this thread) makes `iters` items and sends them over a bounded `sync_channel`; a consumer thread
/// sinks them. Returns the time from the common start until the consumer has sunk the last one.
fn via_mpsc<T: Send>(
    iters: u64,
    mut make: impl FnMut() -> T,
    mut sink: impl FnMut(T) + Send,
) -> Duration {
    let (tx, rx) = sync_channel::<T>(DEPTH);
    let start_line = Barrier::new(2);
    std::thread::scope(|s| {
        let start_line = &start_line;
        let consumer = s.spawn(move || {
            start_line.wait();
            for item in rx {
                sink(item);
            }
        });
        start_line.wait();
        let start = Instant::now();
        for _ in 0..iters {
            tx.send(make()).expect("consumer alive");
        }
        drop(tx);
        consumer.join().expect("consumer panicked");
        start.elapsed()
    })
}

/// Waits a little: spin first, then give the core away (2 cores, other processes).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// As [`via_mpsc`], over a bounded lock-free queue with spinning on both sides.
fn via_spin<T: Send>(
    iters: u64,
    mut make: impl FnMut() -> T,
    mut sink: impl FnMut(T) + Send,
) -> Duration {
    let q = ArrayQueue::<T>::new(DEPTH);
    let start_line = Barrier::new(2);
    std::thread::scope(|s| {
        let (q, start_line) = (&q, &start_line);
        let consumer = s.spawn(move || {
            start_line.wait();
            for _ in 0..iters {
                let mut spins = 0;
                let item = loop {
                    match q.pop() {
                        Some(item) => break item,
                        None => backoff(&mut spins),
                    }
                };
                sink(item);
            }
        });
        start_line.wait();
        let start = Instant::now();
        for _ in 0..iters {
            let mut item = make();
            let mut spins = 0;
            while let Err(back) = q.push(item) {
                item = back;
                backoff(&mut spins);
            }
        }
        consumer.join().expect("consumer panicked");
        start.elapsed()
    })
}

/// Producer acquires from its handle and touches; consumer releases through its own handle.
fn buffers<S>(transport: &str, iters: u64, producer: &mut S, consumer: &mut S) -> Duration
where
    S: Strategy,
    S::Buf: Send,
    S: Send,
{
    let make = || {
        let mut b = producer.acquire();
        touch(S::ptr(&mut b));
        b
    };
    let sink = |b| consumer.release(b);
    match transport {
        "mpsc" => via_mpsc(iters, make, sink),
        _ => via_spin(iters, make, sink),
    }
}

fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_thread");
    g.throughput(Throughput::Elements(1));

    let pool = prealloc_pool(POOL_CAP);
    let nocache = prealloc_pool_nocache(POOL_CAP);
    let mut same = pool.clone();
    g.bench_function("pagepool/same_thread", |b| b.iter(|| cycle(&mut same)));

    for transport in ["mpsc", "spin"] {
        let (mut p, mut q) = (pool.clone(), pool.clone());
        g.bench_function(BenchmarkId::new("pagepool", transport), |b| {
            b.iter_custom(|iters| buffers(transport, iters, &mut p, &mut q))
        });
        let (mut p, mut q) = (nocache.clone(), nocache.clone());
        g.bench_function(BenchmarkId::new("pagepool_nocache", transport), |b| {
            b.iter_custom(|iters| buffers(transport, iters, &mut p, &mut q))
        });
        #[cfg(unix)]
        {
            let (mut p, mut q) = (Memalign, Memalign);
            g.bench_function(BenchmarkId::new("posix_memalign", transport), |b| {
                b.iter_custom(|iters| buffers(transport, iters, &mut p, &mut q))
            });
        }
        g.bench_function(BenchmarkId::new("channel_only", transport), |b| {
            b.iter_custom(|iters| {
                let mut i = 0u64;
                let make = move || {
                    i += 1;
                    i
                };
                let sink = |x: u64| {
                    black_box(x);
                };
                match transport {
                    "mpsc" => via_mpsc(iters, make, sink),
                    _ => via_spin(iters, make, sink),
                }
            })
        });
    }
    g.finish();
}

fn main() {
    // What criterion_group!/criterion_main! expand to, without their undocumented `pub fn`.
    let mut c = Criterion::default().configure_from_args();
    cross_thread(&mut c);
    c.final_summary();
}
