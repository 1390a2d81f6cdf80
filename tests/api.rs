//! The public surface: builder defaults, buffer shape and alignment, trait impls, clones sharing one pool.

use pagepool::{AlignedBuf, OverflowPolicy, PagePool, PoolStats};

fn assert_send_sync_clone_debug<T: Send + Sync + Clone + std::fmt::Debug>() {}
fn assert_send_sync_debug<T: Send + Sync + std::fmt::Debug>() {}

#[test]
fn type_properties() {
    assert_send_sync_clone_debug::<PagePool>();
    assert_send_sync_debug::<AlignedBuf>();
    assert_send_sync_clone_debug::<PoolStats>();
    assert_send_sync_debug::<pagepool::ConfigError>();
    assert_send_sync_debug::<pagepool::AcquireError>();
}

#[test]
fn page_size_is_a_power_of_two() {
    let p = pagepool::page_size();
    assert!(p.is_power_of_two() && p >= 4096, "{p}");
}

#[test]
fn defaults() {
    let pool = PagePool::builder().build().unwrap();
    assert_eq!(pool.buf_size(), pagepool::page_size());
    assert_eq!(pool.capacity(), 1024);
    assert_eq!(pool.alignment(), pagepool::page_size());
    assert_eq!(pool.overflow_policy(), OverflowPolicy::Map);
    let s = pool.stats();
    assert_eq!(
        (s.capacity, s.pooled_buffers, s.mapped_bytes, s.chunks),
        (1024, 0, 0, 0)
    );
}

#[test]
fn buffers_are_aligned_page_multiples_and_writable() {
    let page = pagepool::page_size();
    let pool = PagePool::builder()
        .buf_size(2 * page)
        .capacity(8)
        .build()
        .unwrap();
    let mut bufs: Vec<AlignedBuf> = (0..8).map(|_| pool.acquire().unwrap()).collect();
    for (i, b) in bufs.iter_mut().enumerate() {
        assert_eq!(b.len(), 2 * page);
        assert_eq!(b.as_ptr() as usize % page, 0);
        assert!(!b.is_overflow());
        b.fill(i as u8);
        b.as_mut()[0] = 0xEE;
        assert_eq!(b.as_ref()[0], 0xEE);
        assert_eq!(b.as_slice()[1], i as u8);
        b.as_mut_slice()[1] = 1;
    }
    // Distinct buffers never overlap.
    let mut ranges: Vec<_> = bufs
        .iter()
        .map(|b| (b.as_ptr() as usize, b.len()))
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "{w:?}");
    }
}

#[test]
fn fresh_memory_is_zeroed() {
    let pool = PagePool::builder().capacity(2).build().unwrap();
    let b = pool.acquire().unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

#[test]
fn large_alignment_is_honoured() {
    let page = pagepool::page_size();
    for align in [2 * page, 64 * 1024, 2 << 20] {
        let pool = PagePool::builder()
            .buf_size(page)
            .alignment(align)
            .capacity(3)
            .max_overflow(2)
            .build()
            .unwrap();
        let bufs: Vec<_> = (0..5).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(bufs.iter().filter(|b| b.is_overflow()).count(), 2);
        for b in &bufs {
            assert_eq!(
                b.as_ptr() as usize % align,
                0,
                "align {align}, overflow {}",
                b.is_overflow()
            );
            assert_eq!(b.len(), page);
        }
    }
}

#[test]
fn clones_share_one_pool() {
    let a = PagePool::builder()
        .capacity(2)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let b = a.clone();
    let x = a.acquire().unwrap();
    let y = b.acquire().unwrap();
    assert!(b.acquire().is_err(), "the clone sees the same two slots");
    assert_eq!(a.stats().in_use, 2);
    drop((x, y));
    assert_eq!(b.stats().idle, 2);
}

#[test]
fn released_buffer_is_reused() {
    let pool = PagePool::builder()
        .capacity(1)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let p1 = pool.acquire().unwrap().as_ptr();
    let p2 = pool.acquire().unwrap().as_ptr();
    assert_eq!(p1, p2);
    let s = pool.stats();
    assert_eq!((s.acquires, s.pool_hits, s.idle, s.in_use), (2, 2, 1, 0));
}

#[test]
fn prealloc_maps_everything_up_front() {
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(100)
        .prealloc(true)
        .build()
        .unwrap();
    let s = pool.stats();
    assert_eq!((s.pooled_buffers, s.idle, s.in_use), (100, 100, 0));
    assert_eq!(s.mapped_bytes, 100 * 8192);
    let lazy = PagePool::builder()
        .buf_size(8192)
        .capacity(100)
        .build()
        .unwrap();
    assert_eq!(lazy.stats().pooled_buffers, 0);
    drop(lazy.acquire().unwrap());
    assert_eq!(lazy.stats().pooled_buffers, 100, "one chunk holds all 100");
}

#[test]
fn debug_output_names_the_settings() {
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(3)
        .build()
        .unwrap();
    let d = format!("{pool:?}");
    for needle in ["buf_size: 8192", "capacity: 3", "Map"] {
        assert!(d.contains(needle), "{d}");
    }
    let b = pool.acquire().unwrap();
    let d = format!("{b:?}");
    assert!(d.contains("len: 8192") && d.contains("slot"), "{d}");
}

#[test]
fn stats_add_up_when_quiet() {
    let pool = PagePool::builder()
        .capacity(4)
        .max_overflow(2)
        .build()
        .unwrap();
    let held: Vec<_> = (0..7).map(|_| pool.acquire()).collect();
    let s = pool.stats();
    assert_eq!(held.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(
        s.acquires,
        s.pool_hits + s.overflow_maps + s.overflow_reuses + s.exhausted + s.os_errors
    );
    assert_eq!((s.pool_hits, s.overflow_maps, s.exhausted), (4, 2, 1));
    assert_eq!(s.idle + s.in_use, s.pooled_buffers);
    drop(held);
    // The two overflow buffers wait in the reserve (default `overflow_decay`) until a trim or their decay.
    let s = pool.stats();
    assert_eq!((s.in_use, s.overflow_in_use, s.reserve_buffers), (0, 0, 2));
    assert_eq!(
        s.overflow_maps,
        s.overflow_unmaps + s.overflow_in_use as u64 + s.reserve_buffers as u64
    );
    // One comes back out without a mapping: counted as a reuse, in `acquires` too.
    let again = pool.acquire_len(pool.buf_size()).unwrap();
    let s = pool.stats();
    assert_eq!((s.overflow_reuses, s.overflow_maps), (0, 2), "pooled first");
    drop(again);
    let held: Vec<_> = (0..5).map(|_| pool.acquire().unwrap()).collect();
    let s = pool.stats();
    assert_eq!(
        (s.overflow_reuses, s.overflow_maps, s.reserve_buffers),
        (1, 2, 1)
    );
    assert_eq!(
        s.acquires,
        s.pool_hits + s.overflow_maps + s.overflow_reuses + s.exhausted + s.os_errors
    );
    drop(held);
    pool.trim();
    let s = pool.stats();
    assert_eq!(
        (s.overflow_unmaps, s.reserve_buffers, s.reserve_bytes),
        (2, 0, 0)
    );
}
