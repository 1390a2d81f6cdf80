//! Size classes: one pool serving several buffer sizes, each class a pool of its own.

use pagepool::{AcquireError, ConfigError, OverflowPolicy, PagePool, MAX_SIZE_CLASSES};

fn page() -> usize {
    pagepool::page_size()
}

fn classes() -> Vec<usize> {
    vec![page(), 2 * page(), 4 * page(), 16 * page(), 256 * page()]
}

#[test]
fn acquire_len_picks_the_smallest_class_that_fits() {
    let pool = PagePool::builder()
        .size_classes(&classes())
        .capacity(8)
        .build()
        .unwrap();
    assert_eq!(pool.size_classes(), classes());
    for (len, want) in [
        (0, page()),
        (1, page()),
        (page(), page()),
        (page() + 1, 2 * page()),
        (3 * page(), 4 * page()),
        (5 * page(), 16 * page()),
        (256 * page(), 256 * page()),
    ] {
        let b = pool.acquire_len(len).unwrap();
        assert_eq!(b.len(), want, "acquire_len({len})");
        assert!(!b.is_overflow());
        assert_eq!(b.as_ptr() as usize % page(), 0);
    }
    // acquire() is the default class: the smallest, as buf_size was not set.
    assert_eq!(pool.acquire().unwrap().len(), page());
    assert_eq!(pool.buf_size(), page());
}

#[test]
fn buf_size_names_the_default_class() {
    let pool = PagePool::builder()
        .size_classes(&classes())
        .buf_size(4 * page())
        .capacity(2)
        .build()
        .unwrap();
    assert_eq!(pool.acquire().unwrap().len(), 4 * page());
    assert_eq!(pool.stats().buf_size, 4 * page());
}

#[test]
fn above_the_largest_class_is_the_overflow_path() {
    let pool = PagePool::builder()
        .size_classes(&[page(), 2 * page()])
        .capacity(2)
        .build()
        .unwrap();
    let big = pool.acquire_len(10 * page() + 1).unwrap();
    assert!(big.is_overflow());
    assert_eq!(big.len(), 11 * page());
    let s = pool.stats();
    assert_eq!(s.overflow_in_use, 1);
    assert_eq!(
        s.classes[1].overflow_in_use, 1,
        "charged to the largest class"
    );
    drop(big);
    assert_eq!(pool.stats().overflow_unmaps, 1);

    let strict = PagePool::builder()
        .size_classes(&[page(), 2 * page()])
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    assert!(matches!(
        strict.acquire_len(3 * page()),
        Err(AcquireError::Exhausted { .. })
    ));
    assert!(matches!(
        strict.acquire_len(usize::MAX),
        Err(AcquireError::Exhausted { .. }) | Err(AcquireError::Os { .. })
    ));
    let mapping = PagePool::builder().build().unwrap();
    assert!(matches!(
        mapping.acquire_len(usize::MAX),
        Err(AcquireError::Os { .. })
    ));
}

#[test]
fn single_size_pools_serve_acquire_len_too() {
    let pool = PagePool::builder()
        .buf_size(2 * page())
        .capacity(1)
        .build()
        .unwrap();
    assert_eq!(pool.size_classes(), vec![2 * page()]);
    let a = pool.acquire_len(page()).unwrap();
    assert_eq!((a.len(), a.is_overflow()), (2 * page(), false));
    let b = pool.acquire_len(3 * page()).unwrap();
    assert_eq!((b.len(), b.is_overflow()), (3 * page(), true));
    assert!(pool.stats().classes.is_empty());
}

#[test]
fn per_class_capacity_and_stats_rows() {
    let pool = PagePool::builder()
        .size_classes(&classes())
        .capacity(8)
        .class_capacity(256 * page(), 2)
        .overflow(OverflowPolicy::Fail)
        .thread_cache(0)
        .build()
        .unwrap();
    let held: Vec<_> = classes()
        .iter()
        .flat_map(|&c| (0..2).map(move |_| c))
        .map(|c| pool.acquire_len(c).unwrap())
        .collect();
    let s = pool.stats();
    assert_eq!(s.classes.len(), 5);
    for (row, &size) in s.classes.iter().zip(&classes()) {
        assert_eq!(row.buf_size, size);
        assert_eq!(row.in_use, 2, "{row:?}");
        assert_eq!(row.capacity, if size == 256 * page() { 2 } else { 8 });
        assert!(row.classes.is_empty());
    }
    assert_eq!(s.capacity, 4 * 8 + 2);
    assert_eq!(s.in_use, 10);
    assert_eq!(s.pool_hits, 10);
    assert_eq!(
        s.mapped_bytes,
        s.classes.iter().map(|r| r.mapped_bytes).sum::<usize>()
    );
    // The largest class is full; the others are not affected.
    assert!(matches!(
        pool.acquire_len(256 * page()),
        Err(AcquireError::Exhausted { capacity: 2, .. })
    ));
    assert!(pool.acquire_len(16 * page()).is_ok());
    drop(held);
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle), (0, s.pooled_buffers));
}

#[test]
fn classes_never_share_memory() {
    let pool = PagePool::builder()
        .size_classes(&[page(), 2 * page(), 4 * page()])
        .capacity(64)
        .thread_cache(0)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    // Exhaust the middle class; hold everything.
    let mut all = Vec::new();
    for size in [page(), 2 * page(), 4 * page()] {
        for _ in 0..64 {
            all.push(pool.acquire_len(size).unwrap());
        }
    }
    let mut ranges: Vec<(usize, usize)> = all
        .iter()
        .map(|b| (b.as_ptr() as usize, b.as_ptr() as usize + b.len()))
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping buffers {w:?}");
    }
    // Releasing small buffers never makes room for a larger class, and the other way round.
    all.retain(|b| b.len() != page());
    assert!(matches!(
        pool.acquire_len(2 * page()),
        Err(AcquireError::Exhausted { .. })
    ));
    assert!(pool.acquire_len(page()).is_ok());
}

#[test]
fn cross_thread_release_returns_to_the_right_class() {
    let pool = PagePool::builder()
        .size_classes(&classes())
        .capacity(16)
        .build()
        .unwrap();
    let bufs: Vec<_> = (0..40)
        .map(|i| pool.acquire_len(classes()[i % 5]).unwrap())
        .collect();
    std::thread::spawn(move || drop(bufs)).join().unwrap();
    let s = pool.stats();
    assert_eq!(s.in_use, 0, "{s:?}");
    for row in &s.classes {
        assert_eq!(row.idle, row.pooled_buffers, "{row:?}");
    }
}

#[test]
fn dropping_the_pool_with_class_buffers_out_is_safe() {
    let pool = PagePool::builder()
        .size_classes(&classes())
        .capacity(4)
        .build()
        .unwrap();
    let mut bufs: Vec<_> = classes()
        .iter()
        .map(|&c| pool.acquire_len(c).unwrap())
        .collect();
    let clone = pool.clone();
    drop(pool);
    bufs.push(clone.acquire_len(3 * page()).unwrap());
    drop(clone);
    for b in bufs.iter_mut() {
        b.fill(0xA5);
    }
    drop(bufs);
}

#[test]
fn trim_covers_every_class() {
    let pool = PagePool::builder()
        .size_classes(&[page(), 4 * page()])
        .capacity(8)
        .thread_cache(0)
        .build()
        .unwrap();
    let held: Vec<_> = (0..8)
        .flat_map(|_| {
            [
                pool.acquire_len(1).unwrap(),
                pool.acquire_len(4 * page()).unwrap(),
            ]
        })
        .collect();
    drop(held);
    assert_eq!(pool.trim(), 8 * page() + 8 * 4 * page());
}

#[test]
fn size_class_settings_are_validated() {
    let b = || PagePool::builder().capacity(4);
    let err = |b: pagepool::PoolBuilder| b.build().unwrap_err();
    assert!(matches!(
        err(b().size_classes(&[])),
        ConfigError::SizeClassCount { count: 0, .. }
    ));
    let many: Vec<usize> = (1..=MAX_SIZE_CLASSES + 1).map(|i| i * page()).collect();
    assert!(matches!(
        err(b().size_classes(&many)),
        ConfigError::SizeClassCount { .. }
    ));
    assert!(matches!(
        err(b().size_classes(&[2 * page(), page(), 2 * page()])),
        ConfigError::DuplicateSizeClass { size } if size == 2 * page()
    ));
    assert!(matches!(
        err(b().size_classes(&[page(), page() + 1])),
        ConfigError::BufSizeNotPageMultiple { .. }
    ));
    assert!(matches!(
        err(b().size_classes(&[page(), 0])),
        ConfigError::ZeroBufSize { .. }
    ));
    assert!(matches!(
        err(b().size_classes(&[page()]).class_capacity(2 * page(), 1)),
        ConfigError::UnknownSizeClass { .. }
    ));
    assert!(matches!(
        err(b().class_capacity(page(), 1)),
        ConfigError::UnknownSizeClass { .. }
    ));
    assert!(matches!(
        err(b().size_classes(&[page(), 4 * page()]).buf_size(2 * page())),
        ConfigError::BufSizeNotASizeClass { .. }
    ));
    assert!(matches!(
        err(b().size_class_ladder(8192, 4096)),
        ConfigError::BadSizeClassLadder { .. }
    ));
    assert!(matches!(
        err(b().size_class_ladder(4096, 12288)),
        ConfigError::BadSizeClassLadder { .. }
    ));
    assert!(matches!(
        err(b().size_classes(&[page()]).class_capacity(page(), 0)),
        ConfigError::ZeroCapacity
    ));
    for e in [err(b().size_classes(&[])), err(b().size_class_ladder(3, 2))] {
        assert!(!e.to_string().is_empty());
    }
    let ladder = b().size_class_ladder(page(), 64 * page()).build().unwrap();
    assert_eq!(ladder.size_classes().len(), 7);
}
