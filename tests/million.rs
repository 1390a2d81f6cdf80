//! 1,000,000 pooled 8 KiB buffers need at most 1,000 mappings, and all of them go away with the pool.
//!
//! Alone in its own test binary: libtest starts a thread per test, and a thread stack mapped between the two
//! /proc/self/maps readings would move the count.
// Counts OS mappings: /proc/self/maps on Linux, VirtualQuery on Windows (see tests/common).
#![cfg(any(target_os = "linux", windows))]

mod common;
use common::mapping_count;
use pagepool::PagePool;

#[test]
fn one_million_8k_buffers_need_at_most_1000_mappings() {
    let before = mapping_count();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(1_000_000)
        .build()
        .unwrap();
    // Acquire every pooled buffer (address space only: nothing is written, so RSS stays small).
    let held: Vec<_> = (0..1_000_000).map(|_| pool.acquire().unwrap()).collect();
    assert!(held.iter().all(|b| !b.is_overflow()));
    let s = pool.stats();
    assert_eq!(s.pooled_buffers, 1_000_000);
    let during = mapping_count();
    println!(
        "1,000,000 pooled 8 KiB buffers: {} chunks, {} more /proc/self/maps lines",
        s.chunks,
        during.saturating_sub(before)
    );
    assert!(s.chunks <= 1000, "{s:?}");
    assert!(during <= before + 1000, "{before} -> {during} mappings");
    drop(held);
    drop(pool);
    // Everything is unmapped again once the pool and all its buffers are gone.
    assert!(
        mapping_count() <= before + 2,
        "{before} -> {}",
        mapping_count()
    );
}
