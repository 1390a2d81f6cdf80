//! The overflow path: Map maps exactly a buffer's pages and, without an overflow reserve, unmaps them on drop;
//! Fail changes nothing. (tests/overflow_reserve.rs has the reserve.)
// Counts and inspects OS mappings: /proc/self/maps on Linux, VirtualQuery on Windows (see tests/common).
#![cfg(any(target_os = "linux", windows))]

mod common;
use common::{mapping_count, maps_lock, tag, tagged_mapping_of};
use pagepool::{AcquireError, OverflowPolicy, PagePool};

/// The one test of this file: libtest starts a thread per test, and a starting thread maps its stack and
/// signal stack, which moves a whole-process mapping count or reuses a just-unmapped address. Alone in its
/// binary, nothing else maps while it counts.
#[test]
fn overflow_maps_exactly_and_refusals_map_nothing() {
    map_policy_maps_and_unmaps_exactly();
    fail_policy_returns_exhausted_and_changes_nothing_else();
}

fn map_policy_maps_and_unmaps_exactly() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(2)
        .overflow_decay(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let pooled: Vec<_> = (0..2).map(|_| pool.acquire().unwrap()).collect();
    let base = pool.stats();
    let mut over: Vec<_> = (0..10).map(|_| pool.acquire().unwrap()).collect();
    assert!(over.iter().all(|b| b.is_overflow() && b.len() == 8192));
    for b in over.iter_mut() {
        b.fill(0x5A);
        tag(b); // each is its own mapping: no split, the counts below are unchanged
    }
    let s = pool.stats();
    assert_eq!(
        s.mapped_bytes,
        base.mapped_bytes + 10 * 8192,
        "exactly the buffers' pages"
    );
    assert_eq!((s.overflow_in_use, s.overflow_maps), (10, 10));
    let addrs: Vec<usize> = over.iter().map(|b| b.as_ptr() as usize).collect();
    drop(over);
    let s = pool.stats();
    assert_eq!(
        s.mapped_bytes, base.mapped_bytes,
        "mapped_bytes returns to its earlier value"
    );
    assert_eq!((s.overflow_in_use, s.overflow_unmaps), (0, 10));
    // Checked by address rather than by counting mappings: the heap of the process (ASan's, Wine's) may map
    // regions of its own between two counts.
    for a in addrs {
        assert_eq!(tagged_mapping_of(a), None, "{a:#x} still mapped");
    }
    drop(pooled);
}

fn fail_policy_returns_exhausted_and_changes_nothing_else() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .capacity(3)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let held: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
    let before = pool.stats();
    let maps = mapping_count();
    let e = pool.acquire().unwrap_err();
    // Counted right away, before anything below allocates (the process heap may map regions of its own).
    assert_eq!(mapping_count(), maps, "a refused acquire maps nothing");
    match &e {
        AcquireError::Exhausted {
            capacity,
            overflow_in_use,
            policy,
            ..
        } => {
            assert_eq!(
                (*capacity, *overflow_in_use, *policy),
                (3, 0, OverflowPolicy::Fail)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("raise capacity"), "{e}");
    let after = pool.stats();
    assert_eq!(after.exhausted, before.exhausted + 1);
    assert_eq!(after.acquires, before.acquires + 1);
    assert_eq!(
        (
            after.idle,
            after.in_use,
            after.overflow_in_use,
            after.mapped_bytes,
            after.chunks
        ),
        (
            before.idle,
            before.in_use,
            before.overflow_in_use,
            before.mapped_bytes,
            before.chunks
        )
    );
    drop(held);
}
