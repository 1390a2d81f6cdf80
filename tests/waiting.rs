//! Waiting at the limit under `OverflowPolicy::Wait`: timeouts, wake-ups by releases on other threads, no
//! starvation under steady load, permits handed to waiters, and waiting with per-thread caches.

mod common;
use common::{until_waiting, waiting_pool, WATCHDOG};
use pagepool::{AcquireError, OverflowPolicy, PagePool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn page() -> usize {
    pagepool::page_size()
}

#[test]
fn times_out_with_nothing_changed() {
    let pool = waiting_pool(1).build().unwrap();
    let held = pool.acquire().unwrap();
    let before = pool.stats();
    let timeout = Duration::from_millis(50);
    let start = Instant::now();
    match pool.acquire_timeout(timeout) {
        Err(e @ AcquireError::Timeout { waited }) => {
            assert!(waited >= timeout, "{waited:?}");
            assert!(e.to_string().contains("timed out"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() >= timeout);
    let after = pool.stats();
    assert_eq!(after.timeouts, before.timeouts + 1);
    assert_eq!(after.acquires, before.acquires + 1);
    assert_eq!(
        (
            after.in_use,
            after.idle,
            after.waiters,
            after.exhausted,
            after.mapped_bytes
        ),
        (
            before.in_use,
            before.idle,
            0,
            before.exhausted,
            before.mapped_bytes
        )
    );
    // A zero timeout is one attempt.
    assert!(matches!(
        pool.acquire_timeout(Duration::ZERO),
        Err(AcquireError::Timeout { .. })
    ));
    drop(held);
    assert!(pool.acquire_timeout(Duration::ZERO).is_ok());
}

#[test]
fn plain_acquire_never_blocks_under_wait() {
    let pool = waiting_pool(1).build().unwrap();
    let _held = pool.acquire().unwrap();
    assert!(matches!(
        pool.acquire(),
        Err(AcquireError::Exhausted {
            policy: OverflowPolicy::Wait,
            ..
        })
    ));
}

#[test]
fn map_and_fail_do_not_wait() {
    for policy in [OverflowPolicy::Map, OverflowPolicy::Fail] {
        let pool = PagePool::builder()
            .capacity(1)
            .max_overflow(0)
            .overflow(policy)
            .build()
            .unwrap();
        let _held = pool.acquire().unwrap();
        let start = Instant::now();
        assert!(matches!(
            pool.acquire_timeout(WATCHDOG),
            Err(AcquireError::Exhausted { .. })
        ));
        assert!(start.elapsed() < WATCHDOG);
        assert_eq!(pool.stats().exhausted, 1);
    }
}

#[test]
fn a_waiter_is_woken_by_a_release_on_another_thread() {
    let pool = waiting_pool(1).build().unwrap();
    for round in 0..200 {
        let held = pool.acquire().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.acquire_timeout(WATCHDOG));
            until_waiting(&pool, 1);
            s.spawn(move || drop(held));
            let got = waiter.join().unwrap();
            assert!(got.is_ok(), "round {round}: {got:?}");
        });
    }
    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.waiters, s.timeouts), (0, 1, 0, 0));
    assert_eq!(s.pool_hits, 400);
}

#[test]
fn several_waiters_all_complete() {
    let pool = waiting_pool(2).build().unwrap();
    let rounds = 500;
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let pool = &pool;
            s.spawn(move || {
                for _ in 0..rounds {
                    let mut b = pool.acquire_timeout(WATCHDOG).expect("lost wake-up");
                    b[0] = t;
                    std::thread::yield_now();
                    assert_eq!(b[0], t);
                }
            });
        }
    });
    let s = pool.stats();
    assert_eq!(s.pool_hits, 4 * rounds);
    assert_eq!((s.in_use, s.waiters, s.timeouts), (0, 0, 0), "{s:?}");
}

#[test]
fn no_waiter_starves_while_others_keep_acquiring() {
    let pool = waiting_pool(2).build().unwrap();
    let stop = AtomicBool::new(false);
    let rounds = 300;
    let barged = AtomicU64::new(0);
    let served: Vec<u64> = std::thread::scope(|s| {
        // Greedy threads grab buffers with plain `acquire` as fast as they can, never queueing.
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    if let Ok(b) = pool.acquire() {
                        barged.fetch_add(1, Relaxed);
                        std::thread::yield_now();
                        drop(b);
                    }
                }
            });
        }
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let pool = &pool;
                s.spawn(move || {
                    let mut n = 0u64;
                    for _ in 0..rounds {
                        let b = pool.acquire_timeout(WATCHDOG).expect("starved waiter");
                        n += 1;
                        drop(b);
                    }
                    n
                })
            })
            .collect();
        let served = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Relaxed);
        served
    });
    assert_eq!(served, vec![rounds; 3], "every waiter got all its buffers");
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiters, s.timeouts), (0, 0, 0), "{s:?}");
    assert_eq!(s.pool_hits, 3 * rounds + barged.load(Relaxed));
}

/// Without an overflow reserve the waiter gets the permit and maps; with one, the released mapping itself.
#[test]
fn an_overflow_permit_is_handed_to_a_waiter() {
    for (b, decay) in [
        PagePool::builder().max_overflow(1),
        PagePool::builder().max_bytes(2 * page()),
    ]
    .into_iter()
    .flat_map(|b| [(b.clone(), Duration::ZERO), (b, Duration::from_secs(3600))])
    {
        let pool = b
            .overflow_decay(decay)
            .buf_size(page())
            .capacity(1)
            .overflow(OverflowPolicy::Wait)
            .build()
            .unwrap();
        let pooled = pool.acquire().unwrap();
        let over = pool.acquire().unwrap();
        assert!(over.is_overflow());
        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.acquire_timeout(WATCHDOG).map(|b| b.is_overflow()));
            until_waiting(&pool, 1);
            drop(over);
            assert!(waiter.join().unwrap().unwrap(), "an overflow buffer");
        });
        drop(pooled);
        let s = pool.stats();
        if decay.is_zero() {
            assert_eq!(
                (
                    s.overflow_in_use,
                    s.overflow_maps,
                    s.overflow_unmaps,
                    s.overflow_reuses
                ),
                (0, 2, 2, 0)
            );
        } else {
            assert_eq!(
                (
                    s.overflow_in_use,
                    s.overflow_maps,
                    s.overflow_unmaps,
                    s.overflow_reuses
                ),
                (0, 1, 0, 1)
            );
            assert_eq!((s.reserve_buffers, s.mapped_bytes), (1, 2 * page()));
            pool.trim();
        }
        assert_eq!(pool.stats().mapped_bytes, page());
    }
}

#[test]
fn a_release_while_someone_waits_bypasses_the_thread_cache() {
    let pool = waiting_pool(64).thread_cache(8).build().unwrap();
    let held: Vec<_> = (0..64).map(|_| pool.acquire().unwrap()).collect();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| pool.acquire_timeout(WATCHDOG));
        until_waiting(&pool, 1);
        // Dropped on a thread with a cache of its own: the buffer must reach the waiter, not that cache.
        let one = s.spawn(|| {
            let mut held = held;
            drop(held.pop());
            held
        });
        assert!(waiter.join().unwrap().is_ok());
        drop(one.join().unwrap());
    });
    assert_eq!(pool.stats().timeouts, 0);
}

/// Buffers idle in another thread's cache are taken back (reclaim) before anyone waits: a caller that takes
/// everything gets them too, although their thread makes no pool operation; then a waiter is served by the
/// next release. (Without a process-wide barrier the first waiter instead asks every cache to flush at its
/// thread's next operation: `src/tests/reclaim.rs`, `waiter_without_a_barrier_is_served_by_the_flush_request`.)
#[test]
fn idle_buffers_in_other_threads_caches_are_reclaimed_before_waiting() {
    let pool = waiting_pool(64).thread_cache(8).build().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let pool = &pool;
        let cacher = s.spawn(move || {
            let bufs: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
            drop(bufs);
            ready_tx.send(()).unwrap();
            // Stay alive (no exit flush), making no pool operation, until the end.
            done_rx.recv().unwrap();
        });
        ready_rx.recv().unwrap();
        let cached = pool.stats().cached;
        assert!(cached > 1, "the cacher's buffers rest in its cache");
        // Take everything the pool can hand out: the cacher's idle buffers included.
        let mut rest: Vec<_> = std::iter::from_fn(|| pool.acquire().ok()).collect();
        assert_eq!(rest.len(), 64);
        assert!(
            pool.stats().reclaimed >= cached as u64,
            "{:?}",
            pool.stats()
        );
        let waiter = s.spawn(|| pool.acquire_timeout(WATCHDOG));
        until_waiting(pool, 1);
        drop(rest.pop());
        assert!(
            waiter.join().unwrap().is_ok(),
            "the release went to the waiter"
        );
        done_tx.send(()).unwrap();
        cacher.join().unwrap();
        drop(rest);
    });
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiters, s.timeouts), (0, 0, 0), "{s:?}");
}

#[test]
fn waiting_with_budget_overflow_and_caches_under_load() {
    // One chunk of 8 pooled buffers plus room for 4 overflow buffers; every thread caches up to 2.
    let max = 12 * page();
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(8)
        .thread_cache(2)
        .max_bytes(max)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let rounds = 400;
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..rounds {
                    // Up to three at once: 4 threads x 2 held < 12, so they never all block holding buffers.
                    let n = 1 + (i + usize::from(t)) % 3;
                    let held: Vec<_> = (0..n)
                        .map(|_| pool.acquire_timeout(WATCHDOG).expect("lost wake-up"))
                        .collect();
                    assert!(pool.stats().mapped_bytes <= max);
                    drop(held);
                }
            });
        }
    });
    pool.trim();
    let s = pool.stats();
    assert_eq!(
        (s.in_use, s.overflow_in_use, s.waiters, s.timeouts),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.overflow_maps, s.overflow_unmaps);
    assert_eq!(s.mapped_bytes, s.pooled_buffers * page());
}
