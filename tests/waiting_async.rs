//! `acquire_async` (cargo feature `async`) on a real executor (`futures::executor`): wake-ups, cancellation
//! that loses neither a buffer nor a wake-up, and waiting under per-thread caches.
#![cfg(feature = "async")]

use futures::executor::block_on;
use futures::task::noop_waker;
mod common;
use common::{until_waiting, waiting_pool, WATCHDOG};
use pagepool::{AcquireError, OverflowPolicy, PagePool};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `body` on its own thread and fails if it has not finished within the watchdog: a lost wake-up would
/// otherwise hang `block_on` forever.
fn watchdog(body: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic here.
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("hung for {WATCHDOG:?}: lost wake-up?")
        }
    }
}

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = noop_waker();
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

#[test]
fn the_future_is_send_for_multi_threaded_executors() {
    fn send<T: Send>(t: T) -> T {
        t
    }
    let pool = waiting_pool(1).build().unwrap();
    let b = block_on(send(pool.acquire_async())).unwrap();
    assert!(!b.is_overflow());
}

#[test]
fn ready_at_once_below_the_limit() {
    let pool = waiting_pool(2).build().unwrap();
    let b = block_on(pool.acquire_async()).unwrap();
    assert_eq!(b.len(), pool.buf_size());
    assert_eq!(pool.stats().waiters, 0);
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
        assert!(matches!(
            block_on(pool.acquire_async()),
            Err(AcquireError::Exhausted { .. })
        ));
    }
}

#[test]
fn a_task_is_woken_by_a_release_on_another_thread() {
    watchdog(|| {
        let pool = waiting_pool(1).build().unwrap();
        for _ in 0..200 {
            let held = pool.acquire().unwrap();
            std::thread::scope(|s| {
                let task = s.spawn(|| block_on(pool.acquire_async()));
                until_waiting(&pool, 1);
                s.spawn(move || drop(held));
                assert!(task.join().unwrap().is_ok());
            });
        }
        let s = pool.stats();
        assert_eq!((s.in_use, s.waiters, s.pool_hits), (0, 0, 400));
    });
}

#[test]
fn several_tasks_on_several_threads_all_complete() {
    watchdog(|| {
        let pool = waiting_pool(2).build().unwrap();
        let rounds = 300;
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let pool = &pool;
                s.spawn(move || {
                    block_on(async {
                        for _ in 0..rounds {
                            let mut b = pool.acquire_async().await.unwrap();
                            b[0] = t;
                            std::thread::yield_now();
                            assert_eq!(b[0], t);
                        }
                    })
                });
            }
        });
        let s = pool.stats();
        assert_eq!((s.in_use, s.waiters, s.pool_hits), (0, 0, 4 * rounds));
    });
}

#[test]
fn a_cancelled_future_passes_its_buffer_on() {
    watchdog(|| {
        let pool = waiting_pool(1).build().unwrap();
        let held = pool.acquire().unwrap();
        let mut first = Box::pin(pool.acquire_async());
        assert!(poll_once(&mut first).is_pending());
        std::thread::scope(|s| {
            let second = s.spawn(|| block_on(pool.acquire_async()));
            until_waiting(&pool, 2);
            // The release goes to the first waiter, which is then dropped without being polled again.
            drop(held);
            assert_eq!(pool.stats().waiters, 1);
            drop(first);
            let b = second
                .join()
                .unwrap()
                .expect("the cancelled waiter's buffer");
            drop(b);
        });
        let s = pool.stats();
        assert_eq!((s.in_use, s.idle, s.waiters), (0, 1, 0), "{s:?}");
    });
}

#[test]
fn dropping_pending_futures_while_releasing_loses_nothing() {
    watchdog(|| {
        for rounds in 0..50 {
            // Two pooled buffers and one overflow permit: both kinds of grant are passed on.
            let pool = waiting_pool(2).max_overflow(1).build().unwrap();
            let held: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
            let mut pending: Vec<_> = (0..8).map(|_| Box::pin(pool.acquire_async())).collect();
            for f in &mut pending {
                assert!(poll_once(f).is_pending());
            }
            std::thread::scope(|s| {
                let last = s.spawn(|| block_on(pool.acquire_async()));
                until_waiting(&pool, 9);
                let releaser = s.spawn(move || {
                    for b in held {
                        drop(b);
                        std::thread::yield_now();
                    }
                });
                let canceller = s.spawn(move || {
                    for f in pending {
                        drop(f);
                        std::thread::yield_now();
                    }
                });
                releaser.join().unwrap();
                canceller.join().unwrap();
                let b = last.join().unwrap().expect("the last waiter completes");
                drop(b);
            });
            let s = pool.stats();
            assert_eq!(
                (s.in_use, s.overflow_in_use, s.waiters, s.idle),
                (0, 0, 0, s.pooled_buffers),
                "round {rounds}: {s:?}"
            );
            // The overflow buffer, passed from waiter to waiter as a mapping, ends in the reserve.
            assert_eq!(
                s.overflow_maps,
                s.overflow_unmaps + s.reserve_buffers as u64,
                "round {rounds}: {s:?}"
            );
            assert_eq!(
                s.mapped_bytes,
                s.pooled_buffers * pagepool::page_size() + s.reserve_bytes
            );
            pool.trim();
            let s = pool.stats();
            assert_eq!(s.overflow_maps, s.overflow_unmaps);
            assert_eq!(s.mapped_bytes, s.pooled_buffers * pagepool::page_size());
        }
    });
}

#[test]
fn waiting_under_thread_caches() {
    watchdog(|| {
        let pool = waiting_pool(32).thread_cache(4).build().unwrap();
        let rounds = 300;
        std::thread::scope(|s| {
            for _ in 0..4 {
                let pool = &pool;
                s.spawn(move || {
                    block_on(async {
                        for _ in 0..rounds {
                            // Hold eight at a time: 4 x 8 = 32 with caches holding some, so tasks wait; and
                            // 4 x 7 < 32, so the threads can never all block holding buffers (no deadlock).
                            let mut held = Vec::new();
                            for _ in 0..8 {
                                held.push(pool.acquire_async().await.unwrap());
                            }
                        }
                    })
                });
            }
        });
        pool.trim();
        let s = pool.stats();
        assert_eq!((s.in_use, s.waiters), (0, 0), "{s:?}");
    });
}
