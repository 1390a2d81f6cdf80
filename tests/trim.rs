//! Trimming gives memory back for real: process RSS from /proc/self/statm before a burst, after it, and after
//! `trim()` / idle trimming. The tests of this file take a lock so that they never measure each other.
//! Not under AddressSanitizer (`--cfg pagepool_asan`): its shadow memory of the pool's pages is resident too and
//! is not given back, so RSS says nothing about the pool there (trimming itself is exercised by the lib tests).
#![cfg(all(target_os = "linux", not(pagepool_asan)))]

mod common;
use pagepool::{OverflowPolicy, PagePool};
use std::time::Duration;

/// Resident bytes of this process.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * pagepool::page_size()
}

const BUF: usize = 64 << 10;
const CAP: usize = 256;

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

#[test]
fn trim_after_a_burst_brings_rss_back() {
    let _g = common::maps_lock();
    let pool = PagePool::builder()
        .buf_size(BUF)
        .capacity(CAP)
        .overflow(OverflowPolicy::Map)
        .build()
        .unwrap();
    let mut held = Vec::with_capacity(10 * CAP);
    // A burst of 10x capacity: every pooled buffer plus 9x as many overflow buffers, all touched.
    let burst = |held: &mut Vec<_>| {
        for i in 0..10 * CAP {
            let mut b = pool.acquire().unwrap();
            b.fill(i as u8 | 1);
            held.push(b);
        }
    };
    // A first burst, trimmed, settles one-time growth that is not the pool's memory: glibc's heap top after
    // the overflow handles' small boxes (freed, but kept below the heap's trim threshold), this thread's
    // cache entry, tracing callsites. The measured burst starts from that steady state.
    burst(&mut held);
    held.clear();
    pool.trim();
    let before = rss();
    burst(&mut held);
    let peak = rss();
    assert_eq!(pool.stats().overflow_in_use, 9 * CAP);
    held.clear();
    let released = rss();
    let s = pool.stats();
    assert_eq!((s.in_use, s.overflow_in_use), (0, 0), "{s:?}");
    let given = pool.trim();
    let after = rss();
    println!(
        "RSS: before {:.2} MiB, burst {:.2} MiB, released {:.2} MiB, after trim {:.2} MiB ({:+.2}% of before); trim gave back {:.2} MiB",
        mib(before),
        mib(peak),
        mib(released),
        mib(after),
        (after as f64 / before as f64 - 1.0) * 100.0,
        mib(given),
    );
    // Overflow buffers wait in the reserve (default `overflow_decay`) and pooled memory stays resident until
    // trimmed: trim returns both.
    assert!(
        released >= before + CAP * BUF * 9 / 10,
        "pooled memory stays resident until trimmed"
    );
    assert_eq!(s.reserve_bytes, 9 * CAP * BUF, "{s:?}");
    assert_eq!(given, CAP * BUF + 9 * CAP * BUF);
    assert_eq!(pool.stats().reserve_buffers, 0);
    assert!(
        after as f64 <= before as f64 * 1.05,
        "after trim {after} bytes vs {before} before the burst"
    );
    assert_eq!(pool.stats().trimmed_bytes, 2 * (CAP * BUF) as u64);
    // The pool still works, and trimmed buffers come back zeroed.
    let mut b = pool.acquire().unwrap();
    assert!(b.iter().all(|&x| x == 0));
    b.fill(7);
    assert!(b.iter().all(|&x| x == 7));
    assert!(!b.is_overflow());
}

#[test]
fn idle_memory_is_trimmed_after_a_quiet_period() {
    let _g = common::maps_lock();
    let period = Duration::from_millis(100);
    let pool = PagePool::builder()
        .buf_size(BUF)
        .capacity(CAP)
        .thread_cache(0)
        .idle_trim_after(period)
        .build()
        .unwrap();
    let mut held = Vec::with_capacity(CAP);
    for _ in 0..CAP {
        let mut b = pool.acquire().unwrap();
        b.fill(3);
        held.push(b);
    }
    held.clear();
    let resident = rss();
    // The period in which every buffer was busy ends: nothing to trim.
    std::thread::sleep(period + Duration::from_millis(20));
    assert_eq!(pool.trim_idle(), 0);
    // A whole quiet period later, every buffer has been idle throughout; the pool's own slow path (this
    // acquire pops the shared freelist) notices and trims all but the buffer it just took.
    std::thread::sleep(period + Duration::from_millis(20));
    let b = pool.acquire().unwrap();
    let trimmed = pool.stats().trimmed_bytes as usize;
    let after = rss();
    println!(
        "idle trim: RSS {:.2} MiB -> {:.2} MiB, trimmed {:.2} MiB",
        mib(resident),
        mib(after),
        mib(trimmed)
    );
    assert_eq!(trimmed, (CAP - 1) * BUF);
    assert!(resident - after >= (CAP - 1) * BUF * 9 / 10);
    drop(b);
}

#[test]
fn busy_buffers_are_not_trimmed_by_the_idle_policy() {
    let _g = common::maps_lock();
    let period = Duration::from_millis(50);
    let pool = PagePool::builder()
        .buf_size(BUF)
        .capacity(8)
        .thread_cache(0)
        .idle_trim_after(period)
        .build()
        .unwrap();
    // Four buffers cycle all the time; four stay idle.
    let all: Vec<_> = (0..8).map(|_| pool.acquire().unwrap()).collect();
    drop(all);
    let start = std::time::Instant::now();
    while start.elapsed() < period * 5 {
        let four: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
        drop(four);
        std::thread::sleep(Duration::from_millis(5));
    }
    // Each period trims at most the 4 idle ones: never a buffer that was in use.
    let trimmed = pool.stats().trimmed_bytes as usize;
    assert!(trimmed > 0, "some period ended while cycling");
    assert_eq!(trimmed % (4 * BUF), 0, "{trimmed}");
}

#[test]
fn locked_pools_are_not_trimmed() {
    let _g = common::maps_lock();
    if pagepool::page_size() * 4 > 8 << 20 {
        return;
    }
    let pool = PagePool::builder()
        .capacity(4)
        .lock_memory(pagepool::LockPolicy::BestEffort)
        .build()
        .unwrap();
    drop(pool.acquire().unwrap());
    assert_eq!(pool.trim(), 0);
    assert_eq!(pool.stats().trimmed_bytes, 0);
}
