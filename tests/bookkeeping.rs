//! Bookkeeping in proportion to mapped memory: building a pool costs nothing per buffer, and the freelist's
//! links come with each chunk as it is mapped. RSS from /proc/self/statm; the tests of this file take a lock so
//! that they never measure each other. Not under AddressSanitizer (its shadow memory makes RSS meaningless).
#![cfg(all(target_os = "linux", not(pagepool_asan)))]

mod common;
use pagepool::PagePool;
use std::collections::HashSet;

/// Resident bytes of this process.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * pagepool::page_size()
}

const BUF: usize = 4096;

#[test]
fn a_pool_of_2_30_buffers_builds_without_per_buffer_memory() {
    let _g = common::maps_lock();
    let before = rss();
    let pool = PagePool::builder()
        .buf_size(BUF)
        .capacity(1 << 30)
        .build()
        .unwrap();
    let grown = rss().saturating_sub(before);
    // Per-buffer bookkeeping would be gigabytes here (20 GiB before this change); a chunk table and a few
    // heap pages are all that is allowed.
    assert!(grown < 4 << 20, "build grew RSS by {grown} bytes");
    let s = pool.stats();
    assert_eq!((s.capacity, s.pooled_buffers, s.chunks), (1 << 30, 0, 0));
}

#[test]
fn rss_after_acquiring_is_the_buffers_plus_a_tenth_of_a_percent() {
    let _g = common::maps_lock();
    const N: usize = 1 << 14;
    let mut held = Vec::with_capacity(N);
    let before = rss();
    let pool = PagePool::builder()
        .buf_size(BUF)
        .capacity(1 << 30)
        .thread_cache(0)
        .build()
        .unwrap();
    for _ in 0..N {
        let mut b = pool.acquire().unwrap();
        b.fill(1);
        held.push(b);
    }
    let data = N * BUF;
    let acquired = rss().saturating_sub(before);
    // Released: every buffer's freelist link is written (4 bytes each).
    held.clear();
    let released = rss().saturating_sub(before);
    println!("RSS: +{acquired} acquired, +{released} released, for {data} bytes of buffers");
    // 0.1% of the buffers, plus 1 MiB for the heap's own growth (pages of malloc's arenas, tracing callsites).
    let bound = data + data / 1000 + (1 << 20);
    assert!(acquired <= bound, "acquired: {acquired} > {bound}");
    assert!(released <= bound, "released: {released} > {bound}");
    assert!(
        acquired >= data,
        "the buffers were written: {acquired} < {data}"
    );
}

/// Hands out and takes back every buffer of several chunks, with and without thread caches: each buffer once,
/// the same buffers again after release, no chunk mapped twice, and trimmed buffers come back zeroed.
#[test]
fn a_large_pool_cycles_buffers_across_chunks() {
    let _g = common::maps_lock();
    for cache in [Some(0), None] {
        let mut b = PagePool::builder().buf_size(BUF).capacity(1 << 22);
        if let Some(n) = cache {
            b = b.thread_cache(n);
        }
        let pool = b.build().unwrap();
        // Enough for several chunks (2^22 / 512 chunks = 2^13 slots each).
        let n = 3 * (1 << 13) + 5;
        let take = |tag: u8| {
            (0..n)
                .map(|_| {
                    let mut b = pool.acquire().unwrap();
                    assert!(!b.is_overflow());
                    b[0] = tag;
                    b
                })
                .collect::<Vec<_>>()
        };
        let first = take(1);
        let addrs: HashSet<usize> = first.iter().map(|b| b.as_ptr() as usize).collect();
        assert_eq!(addrs.len(), n, "each buffer once");
        let chunks = pool.stats().chunks;
        assert_eq!(chunks, 4, "{:?}", pool.stats());
        drop(first);
        let s = pool.stats();
        assert_eq!(s.idle, s.pooled_buffers);
        let second = take(2);
        let again: HashSet<usize> = second.iter().map(|b| b.as_ptr() as usize).collect();
        assert_eq!(again.len(), n, "each buffer once");
        if cache == Some(0) {
            // Released buffers are reused before fresh ones. (A thread cache refills partly from the freelist
            // while the rest sits in the depot's magazines, so it may take a few fresh ones.)
            assert!(
                again == addrs,
                "{} of {n} buffers are not the same again",
                again.difference(&addrs).count()
            );
        }
        assert_eq!(pool.stats().chunks, chunks);
        drop(second);
        assert!(pool.trim() >= n * BUF);
        let third = take(3);
        assert!(third.iter().all(|b| b[1..].iter().all(|&x| x == 0)));
        assert_eq!(pool.stats().chunks, chunks);
        drop(third);
    }
}
