//! The byte budget (`max_bytes`): what it counts, how it caps chunks and overflow, and its configuration errors.

use pagepool::{AcquireError, ConfigError, OverflowPolicy, PagePool, PoolBuilder};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

fn page() -> usize {
    pagepool::page_size()
}

/// Bytes the first chunk of `b`'s pool reserves, measured on a pool without a budget.
fn first_chunk_bytes(b: PoolBuilder) -> usize {
    let probe = b.overflow(OverflowPolicy::Fail).build().unwrap();
    let _one = probe.acquire().unwrap();
    probe.stats().mapped_bytes
}

#[test]
fn budget_counts_pooled_and_overflow_bytes_exactly() {
    // Capacity 1: one chunk of one page. No overflow reserve: a dropped overflow buffer is unmapped at once
    // (tests/overflow_reserve.rs has the budget with a reserve).
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(1)
        .overflow_decay(Duration::ZERO)
        .max_bytes(3 * page())
        .overflow(OverflowPolicy::Map)
        .build()
        .unwrap();
    assert_eq!(pool.max_bytes(), Some(3 * page()));
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    let c = pool.acquire().unwrap();
    assert!(!a.is_overflow() && b.is_overflow() && c.is_overflow());
    assert_eq!(pool.stats().mapped_bytes, 3 * page());
    let before = pool.stats();
    match pool.acquire() {
        Err(e @ AcquireError::Exhausted { .. }) => {
            assert!(e.to_string().contains("max_bytes"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let after = pool.stats();
    assert_eq!(after.exhausted, before.exhausted + 1);
    assert_eq!(
        after.mapped_bytes,
        3 * page(),
        "a refused acquire maps nothing"
    );
    // An unmapped overflow buffer gives its bytes back.
    drop(b);
    assert_eq!(pool.stats().mapped_bytes, 2 * page());
    let d = pool.acquire().unwrap();
    assert!(d.is_overflow());
    drop((a, c, d));
    let s = pool.stats();
    assert_eq!((s.mapped_bytes, s.overflow_in_use, s.idle), (page(), 0, 1));
}

#[test]
fn a_chunk_that_would_cross_the_budget_is_not_mapped() {
    let b = || {
        PagePool::builder()
            .buf_size(page())
            .capacity((64 << 20) / page())
    };
    let chunk = first_chunk_bytes(b());
    assert!(chunk >= 4 << 20, "chunks are at least 4 MiB: {chunk}");
    let pool = b()
        .max_bytes(chunk + 2 * page())
        .overflow(OverflowPolicy::Map)
        .build()
        .unwrap();
    let per_chunk = chunk / page();
    let mut held: Vec<_> = (0..per_chunk).map(|_| pool.acquire().unwrap()).collect();
    assert!(held.iter().all(|b| !b.is_overflow()));
    // The second chunk does not fit: the rest of the budget serves two overflow buffers, then nothing.
    held.push(pool.acquire().unwrap());
    held.push(pool.acquire().unwrap());
    assert!(held[per_chunk..].iter().all(|b| b.is_overflow()));
    assert!(matches!(
        pool.acquire(),
        Err(AcquireError::Exhausted { .. })
    ));
    let s = pool.stats();
    assert_eq!((s.chunks, s.pooled_buffers), (1, per_chunk));
    assert_eq!(s.mapped_bytes, chunk + 2 * page());
    // Once the overflow bytes are back, growth is still refused only because the chunk is larger than what is
    // left; a budget with room for it lets the pool grow.
    drop(held);
    let roomy = b().max_bytes(2 * chunk).build().unwrap();
    let held: Vec<_> = (0..per_chunk + 1)
        .map(|_| roomy.acquire().unwrap())
        .collect();
    assert!(held.iter().all(|b| !b.is_overflow()));
    assert_eq!(roomy.stats().chunks, 2);
}

#[test]
fn prealloc_within_budget_maps_everything() {
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(8)
        .prealloc(true)
        .max_bytes(8 * page())
        .build()
        .unwrap();
    let s = pool.stats();
    assert_eq!((s.idle, s.mapped_bytes), (8, 8 * page()));
}

#[test]
fn mapped_bytes_never_exceeds_the_budget_under_concurrency() {
    for policy in [OverflowPolicy::Map, OverflowPolicy::Wait] {
        let max = 4 * page() + 3 * page();
        let pool = PagePool::builder()
            .buf_size(page())
            .capacity(4)
            .thread_cache(0)
            .max_bytes(max)
            .overflow(policy)
            .build()
            .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..3 {
                let pool = &pool;
                s.spawn(move || {
                    for i in 0..3000 {
                        let got = if policy == OverflowPolicy::Wait && i % 2 == 0 {
                            pool.acquire_timeout(Duration::from_millis(1))
                        } else {
                            pool.acquire()
                        };
                        if let Ok(mut b) = got {
                            b[0] = t;
                            // Hold up to five at once: one thread alone overflows, three reach the budget.
                            let more: Vec<_> = (0..4).map_while(|_| pool.acquire().ok()).collect();
                            assert!(pool.stats().mapped_bytes <= max);
                            drop(more);
                        }
                    }
                });
            }
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    let m = pool.stats().mapped_bytes;
                    assert!(m <= max, "{m} > {max}");
                    std::thread::yield_now();
                }
            });
            // Stop the observer once the workers are done (scope joins them in spawn order after this).
            s.spawn(|| {
                while pool.stats().acquires < 3 * 3000 {
                    std::thread::yield_now();
                }
                stop.store(true, Relaxed);
            });
        });
        let s = pool.stats();
        assert_eq!((s.in_use, s.overflow_in_use, s.waiters), (0, 0, 0), "{s:?}");
        // Reserved overflow buffers (default `overflow_decay`) stay mapped, within the budget, until a trim.
        assert_eq!(s.mapped_bytes, s.pooled_buffers * page() + s.reserve_bytes);
        assert!(s.mapped_bytes <= max);
        pool.trim();
        let s = pool.stats();
        assert_eq!(s.mapped_bytes, s.pooled_buffers * page());
        assert!(
            s.overflow_maps > 0,
            "the budget's overflow room was used: {s:?}"
        );
    }
}

#[test]
fn budget_below_one_buffer_is_refused() {
    for max in [0, 1, page() - 1] {
        let e = PagePool::builder()
            .buf_size(page())
            .capacity(4)
            .max_bytes(max)
            .build()
            .unwrap_err();
        match &e {
            ConfigError::BudgetTooSmall {
                max_bytes,
                min_bytes,
                overflow_buffer,
                ..
            } => {
                assert_eq!((*max_bytes, *min_bytes), (max, page()));
                assert_eq!(*overflow_buffer, Some(page()));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("raise max_bytes to at least"), "{e}");
    }
}

#[test]
fn budget_below_the_first_chunk_without_overflow_is_refused() {
    let b = || PagePool::builder().buf_size(page()).capacity(4096);
    let chunk = first_chunk_bytes(b());
    for builder in [
        b().overflow(OverflowPolicy::Fail),
        b().overflow(OverflowPolicy::Map).max_overflow(0),
        b().overflow(OverflowPolicy::Wait).max_overflow(0),
    ] {
        let e = builder.max_bytes(chunk - page()).build().unwrap_err();
        match &e {
            ConfigError::BudgetTooSmall {
                min_bytes,
                first_chunk,
                overflow_buffer: None,
                ..
            } => assert_eq!((*min_bytes, *first_chunk), (chunk, chunk)),
            other => panic!("{other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains("lower capacity") && msg.contains("allow overflow"),
            "{msg}"
        );
    }
    // With overflow allowed the same budget is fine: it serves overflow buffers only.
    let pool = b().max_bytes(chunk - page()).build().unwrap();
    let one = pool.acquire().unwrap();
    assert!(one.is_overflow());
    assert_eq!(pool.stats().chunks, 0);
}

#[test]
fn prealloc_over_budget_is_refused() {
    let e = PagePool::builder()
        .buf_size(page())
        .capacity(8)
        .prealloc(true)
        .max_bytes(7 * page())
        .build()
        .unwrap_err();
    match &e {
        ConfigError::PreallocOverBudget {
            max_bytes,
            prealloc_bytes,
        } => assert_eq!((*max_bytes, *prealloc_bytes), (7 * page(), 8 * page())),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("turn prealloc off"), "{e}");
}

#[test]
fn wait_needs_a_limit() {
    let e = PagePool::builder()
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::WaitWithoutLimit), "{e:?}");
    assert!(e.to_string().contains("set one of them"), "{e}");
    for b in [
        PagePool::builder()
            .overflow(OverflowPolicy::Wait)
            .max_overflow(0),
        PagePool::builder()
            .overflow(OverflowPolicy::Wait)
            .max_bytes(64 << 20),
    ] {
        let pool = b.build().unwrap();
        assert_eq!(pool.overflow_policy(), OverflowPolicy::Wait);
    }
}

#[test]
fn wait_below_the_limit_behaves_like_map() {
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(1)
        .max_bytes(2 * page())
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    assert!(!a.is_overflow() && b.is_overflow());
    // At the limit plain acquire never blocks.
    assert!(matches!(
        pool.acquire(),
        Err(AcquireError::Exhausted {
            policy: OverflowPolicy::Wait,
            ..
        })
    ));
}

#[test]
fn alignment_slack_counts_against_the_budget() {
    let align = 16 * page();
    let pool = PagePool::builder()
        .buf_size(page())
        .alignment(align)
        .capacity(1)
        .max_bytes(2 * align)
        .build()
        .unwrap();
    let a = pool.acquire().unwrap();
    let s = pool.stats();
    assert!(s.mapped_bytes <= 2 * align, "{s:?}");
    // Whatever the slack on this platform, a second mapping fits only if the budget allows it.
    match pool.acquire() {
        Ok(b) => {
            assert!(b.is_overflow());
            assert!(pool.stats().mapped_bytes <= 2 * align);
        }
        Err(e) => assert!(matches!(e, AcquireError::Exhausted { .. }), "{e:?}"),
    }
    drop(a);
}
