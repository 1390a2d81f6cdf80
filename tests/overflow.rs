//! The overflow path: Map maps exactly a buffer's pages and unmaps them on drop; Fail changes nothing.
// Counts and inspects OS mappings: /proc/self/maps on Linux, VirtualQuery on Windows (see tests/common).
#![cfg(any(target_os = "linux", windows))]

mod common;
use common::{mapping_count, mapping_of, maps_lock};
use pagepool::{AcquireError, OverflowPolicy, PagePool};

#[test]
fn map_policy_maps_and_unmaps_exactly() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(2)
        .build()
        .unwrap();
    let pooled: Vec<_> = (0..2).map(|_| pool.acquire().unwrap()).collect();
    let base = pool.stats();
    let mut over: Vec<_> = (0..10).map(|_| pool.acquire().unwrap()).collect();
    assert!(over.iter().all(|b| b.is_overflow() && b.len() == 8192));
    for b in over.iter_mut() {
        b.fill(0x5A);
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
        assert_eq!(mapping_of(a), None, "{a:#x} still mapped");
    }
    drop(pooled);
}

#[test]
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

#[test]
fn max_overflow_caps_buffers_out_at_once() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .capacity(1)
        .max_overflow(2)
        .build()
        .unwrap();
    let a = pool.acquire().unwrap();
    let o1 = pool.acquire().unwrap();
    let o2 = pool.acquire().unwrap();
    assert!(o1.is_overflow() && o2.is_overflow());
    let e = pool.acquire().unwrap_err();
    assert!(
        matches!(
            e,
            AcquireError::Exhausted {
                overflow_in_use: 2,
                max_overflow: 2,
                ..
            }
        ),
        "{e:?}"
    );
    drop(o1);
    let o3 = pool.acquire().unwrap();
    assert!(o3.is_overflow(), "a permit came back with the unmap");
    drop((a, o2, o3));
    let s = pool.stats();
    assert_eq!(
        (
            s.overflow_maps,
            s.overflow_unmaps,
            s.exhausted,
            s.overflow_in_use
        ),
        (3, 3, 1, 0)
    );
}

#[test]
fn pooled_buffers_are_preferred_again_after_release() {
    let _g = maps_lock();
    let pool = PagePool::builder().capacity(1).build().unwrap();
    let a = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    drop(a);
    let b = pool.acquire().unwrap();
    assert!(!b.is_overflow());
    drop(o);
}
