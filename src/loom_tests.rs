//! Loom models of every lock-free path: freelist hand-out and return, chunk growth, overflow accounting at
//! exhaustion, teardown of the shared state when the last handle goes, waiting at the limit, and the sweep
//! epochs through which thread caches notice closes, trims and waiters (`sweep_races_*`).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --lib`
//!
//! Under `cfg(loom)` every chunk holds one slot (see `config.rs`), so a capacity-2 pool has two chunks and the
//! models also race chunk growth. The freelist and the depot are tagged Treiber stacks of loom atomics, modelled
//! as they are (their own models are at the end of the file).

use crate::shared::TEARDOWNS;
use crate::{AcquireError, AlignedBuf, OverflowPolicy, PagePool};
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering::SeqCst;

/// A pool without an overflow reserve (the models of the reserve build their own): overflow buffers are
/// unmapped on drop, as these models expect. Without thread caches, as the default was for these small
/// capacities before adaptive caches (issue #14): the caches have models of their own (`cached_pool`,
/// `adaptive_caches_grow_and_give_back_room`), and with them `three_threads_two_slots_with_overflow` did not
/// finish in 20 minutes at bound 2.
fn pool(capacity: usize, policy: OverflowPolicy) -> PagePool {
    PagePool::builder()
        .buf_size(crate::page_size())
        .capacity(capacity)
        .thread_cache(0)
        .overflow(policy)
        .overflow_decay(std::time::Duration::ZERO)
        .build()
        .unwrap()
}

fn teardowns() -> usize {
    TEARDOWNS.with(|t| t.get())
}

/// Per-slot "held" flags, indexed by address: a second holder of the same memory trips the assertion.
struct Holders {
    flags: Vec<AtomicBool>,
    base: std::sync::Mutex<Vec<usize>>,
}

impl Holders {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Holders {
            flags: (0..n).map(|_| AtomicBool::new(false)).collect(),
            base: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A stable small index per distinct pooled address (non-modelled bookkeeping).
    fn index(&self, b: &AlignedBuf) -> usize {
        let addr = b.as_ptr() as usize;
        let mut seen = self.base.lock().unwrap();
        match seen.iter().position(|&a| a == addr) {
            Some(i) => i,
            None => {
                seen.push(addr);
                seen.len() - 1
            }
        }
    }

    fn take(&self, b: &AlignedBuf) {
        let i = self.index(b);
        assert!(
            !self.flags[i].swap(true, SeqCst),
            "slot handed to two holders at once"
        );
    }

    fn give(&self, b: &AlignedBuf) {
        let i = self.index(b);
        assert!(self.flags[i].swap(false, SeqCst));
    }
}

/// Two threads race acquire/release (and chunk growth) on a two-slot pool: no slot is ever held twice, and
/// every slot comes home.
#[test]
fn acquire_release_race() {
    loom::model(|| {
        let p = pool(2, OverflowPolicy::Fail);
        let holders = Holders::new(2);
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (p, h) = (p.clone(), holders.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        let mut b = p
                            .acquire()
                            .expect("two threads, two slots: never exhausted");
                        h.take(&b);
                        b[0] = t;
                        assert_eq!(b[0], t);
                        h.give(&b);
                        drop(b);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = p.stats();
        assert_eq!(s.in_use, 0);
        assert_eq!(s.idle, s.pooled_buffers);
        assert!(s.pooled_buffers >= 1 && s.pooled_buffers <= 2);
        assert_eq!(s.pool_hits, 4);
        assert_eq!(s.exhausted + s.overflow_maps, 0);
    });
}

/// Three threads, two slots, Map policy: each takes one buffer and frees it; pooled and overflow buffers never
/// alias, and all overflow mappings are gone at the end.
#[test]
fn three_threads_two_slots_with_overflow() {
    loom::model(|| {
        let p = pool(2, OverflowPolicy::Map);
        let handles: Vec<_> = (0..3)
            .map(|t| {
                let p = p.clone();
                thread::spawn(move || {
                    let mut b = p.acquire().unwrap();
                    b.fill(t);
                    thread::yield_now();
                    assert!(
                        b.iter().all(|&x| x == t),
                        "buffer shared with another holder"
                    );
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = p.stats();
        assert_eq!((s.in_use, s.overflow_in_use), (0, 0));
        assert_eq!(s.overflow_maps, s.overflow_unmaps);
        assert_eq!(s.pool_hits + s.overflow_maps, 3);
        assert_eq!(s.mapped_bytes, s.pooled_buffers * crate::page_size());
    });
}

/// The last pool handle is dropped while another thread still writes to and then releases the last buffer:
/// the memory stays valid for the holder and the shared state is torn down exactly once, after it.
#[test]
fn last_handle_drop_races_last_release() {
    loom::model(|| {
        let before = teardowns();
        let p = pool(1, OverflowPolicy::Fail);
        let b = p.acquire().unwrap();
        let t = thread::spawn(move || {
            let mut b = b;
            b.fill(7);
            assert!(b.iter().all(|&x| x == 7));
            drop(b);
        });
        drop(p);
        t.join().unwrap();
        settle(|| teardowns() > before);
        assert_eq!(teardowns(), before + 1);
    });
}

/// Same race with an overflow buffer out as well as a pooled one.
#[test]
fn last_handle_drop_with_overflow_out() {
    loom::model(|| {
        let before = teardowns();
        let p = pool(1, OverflowPolicy::Map);
        let a = p.acquire().unwrap();
        let o = p.acquire().unwrap();
        assert!(o.is_overflow());
        let t = thread::spawn(move || drop(o));
        let p2 = p.clone();
        drop(p);
        drop(a);
        drop(p2);
        t.join().unwrap();
        assert_eq!(teardowns(), before + 1);
    });
}

/// Acquire at exhaustion racing a release, `Fail` policy: either the acquire sees the returned slot or it gets
/// `Exhausted`, and the counters say which.
#[test]
fn exhaustion_races_release_fail() {
    loom::model(|| {
        let p = pool(1, OverflowPolicy::Fail);
        let held = p.acquire().unwrap();
        let p2 = p.clone();
        let t = thread::spawn(move || p2.acquire().map(|b| b.is_overflow()));
        drop(held);
        let got = t.join().unwrap();
        let s = p.stats();
        match got {
            Ok(overflow) => {
                assert!(!overflow);
                assert_eq!((s.pool_hits, s.exhausted), (2, 0));
            }
            Err(AcquireError::Exhausted { .. }) => assert_eq!((s.pool_hits, s.exhausted), (1, 1)),
            Err(e) => panic!("{e}"),
        }
        assert_eq!((s.idle, s.in_use, s.overflow_maps), (1, 0, 0));
    });
}

/// Acquire at exhaustion racing a release, `Map` policy with `max_overflow(1)`: the acquire gets the returned
/// slot or an overflow buffer, never an error, and the overflow counters balance.
#[test]
fn exhaustion_races_release_map() {
    loom::model(|| {
        let p = PagePool::builder()
            .buf_size(crate::page_size())
            .capacity(1)
            .thread_cache(0)
            .max_overflow(1)
            .overflow_decay(std::time::Duration::ZERO)
            .build()
            .unwrap();
        let held = p.acquire().unwrap();
        let p2 = p.clone();
        let t = thread::spawn(move || p2.acquire().unwrap().is_overflow());
        drop(held);
        let overflowed = t.join().unwrap();
        let s = p.stats();
        assert_eq!(s.overflow_maps, u64::from(overflowed));
        assert_eq!(s.overflow_unmaps, s.overflow_maps);
        assert_eq!(
            (s.idle, s.in_use, s.overflow_in_use, s.exhausted),
            (1, 0, 0, 0)
        );
        assert_eq!(s.mapped_bytes, crate::page_size());
    });
}

/// Two threads at the overflow cap: exactly one of two concurrent overflow acquires wins the single permit.
#[test]
fn overflow_cap_is_exact() {
    loom::model(|| {
        let p = PagePool::builder()
            .buf_size(crate::page_size())
            .capacity(1)
            .thread_cache(0)
            .max_overflow(1)
            .overflow_decay(std::time::Duration::ZERO)
            .build()
            .unwrap();
        let _held = p.acquire().unwrap();
        let results: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                thread::spawn(move || p.acquire().map(|b| (b.is_overflow(), b)))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        // Each successful thread hands its buffer back to us still alive, so the second one must be refused.
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1);
        let s = p.stats();
        assert_eq!((s.exhausted, s.overflow_maps, s.overflow_in_use), (1, 1, 1));
        assert!(results.iter().flatten().all(|(o, _)| *o));
        drop(results);
        assert_eq!(p.stats().overflow_in_use, 0);
    });
}

/// Waits until `done()` holds. Loom lets `join` return as soon as a thread's closure has returned, before its
/// thread-local destructors (our cache flush at thread exit) have run; std's `join` waits for them. Yielding
/// here lets loom schedule those destructors, and a destructor that never makes `done()` true fails the model.
/// The per-cache stats blocks are std atomics (not modelled), so without a join edge loom may still show stale
/// modelled counters right after they change: wait for the whole condition, not just one field.
fn settle(done: impl Fn() -> bool) {
    while !done() {
        thread::yield_now();
    }
}

fn cached_pool(capacity: usize, cache: usize) -> PagePool {
    PagePool::builder()
        .buf_size(crate::page_size())
        .capacity(capacity)
        .thread_cache(cache)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap()
}

/// Two threads with caches of 2 on a 2-slot pool (magazines of 1): one thread's refill (from the depot or the
/// freelist) races the other's flush at exit; no slot is ever held twice, nothing is exhausted, and after both
/// threads exit every slot is back in the depot or the freelist.
#[test]
fn cache_refill_and_flush_race() {
    loom::model(|| {
        let p = cached_pool(2, 2);
        let holders = Holders::new(2);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (p, h) = (p.clone(), holders.clone());
                thread::spawn(move || {
                    let a = p
                        .acquire()
                        .expect("2 slots, 2 threads x 1 held: never exhausted");
                    h.take(&a);
                    h.give(&a);
                    drop(a); // into this thread's cache; flushed to the depot when the thread exits
                    let b = p.acquire().expect("never exhausted");
                    h.take(&b);
                    h.give(&b);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        settle(|| {
            let s = p.stats();
            s.cached == 0 && s.idle == s.pooled_buffers
        });
        let s = p.stats();
        assert_eq!((s.in_use, s.cached, s.exhausted), (0, 0, 0), "{s:?}");
        assert_eq!(s.pool_hits, 4);
    });
}

/// The depot's Treiber stack of magazines under contention: two threads each put a magazine and take one back;
/// every slot index comes out exactly once.
#[test]
fn depot_put_take_race() {
    use crate::depot::Depot;
    loom::model(|| {
        let f = Arc::new(linked_freelist(2));
        let d = Arc::new(Depot::new(2, 1).unwrap());
        let handles: Vec<_> = (0..2u32)
            .map(|t| {
                let (d, f) = (d.clone(), f.clone());
                thread::spawn(move || {
                    let mut v = vec![t];
                    assert!(d.put(&f, &mut v), "a whole magazine: always put");
                    assert!(v.is_empty());
                    let mut out = Vec::new();
                    d.take(&f, &mut out);
                    out
                })
            })
            .collect();
        let mut seen: Vec<u32> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let mut rest = Vec::new();
        while d.take(&f, &mut rest) {}
        seen.extend(rest);
        seen.sort_unstable();
        assert_eq!(seen, [0, 1], "each slot exactly once");
    });
}

/// A buffer acquired on one thread is released on another while the acquiring thread exits (flushing its
/// cache): the slot lands in the releaser's cache, and everything is home after both exit.
#[test]
fn cross_thread_release_while_owner_exits() {
    loom::model(|| {
        let p = cached_pool(2, 2);
        let (tx, rx) = loom::sync::mpsc::channel();
        let p1 = p.clone();
        let owner = thread::spawn(move || {
            let b = p1.acquire().unwrap();
            tx.send(b).unwrap();
            // The thread exits now: its cache (holding the chunk's other slot, if refilled) is flushed.
        });
        let p2 = p.clone();
        let releaser = thread::spawn(move || {
            let b = rx.recv().unwrap();
            drop(b);
            drop(p2);
        });
        owner.join().unwrap();
        releaser.join().unwrap();
        settle(|| {
            let s = p.stats();
            s.cached == 0 && s.idle == s.pooled_buffers
        });
        let s = p.stats();
        assert_eq!((s.in_use, s.cached), (0, 0), "{s:?}");
        assert_eq!(s.idle, s.pooled_buffers);
    });
}

/// The last handle drops while another thread's cache holds the pool's slots and that thread releases the
/// last buffer and exits: the shared state is freed exactly once, after the thread's exit flush.
#[test]
fn close_races_cached_release() {
    loom::model(|| {
        let before = teardowns();
        let p = cached_pool(2, 2);
        let b = p.acquire().unwrap();
        let t = thread::spawn(move || {
            let mut b = b;
            b.fill(1);
            drop(b); // into this thread's cache, or directly home if the pool is already closing
        });
        drop(p);
        t.join().unwrap();
        settle(|| teardowns() > before);
        assert_eq!(teardowns(), before + 1);
    });
}

fn waiting_pool(capacity: usize, cache: usize) -> PagePool {
    PagePool::builder()
        .buf_size(crate::page_size())
        .capacity(capacity)
        .thread_cache(cache)
        .max_overflow(0)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap()
}

/// Loom has no time: `acquire_timeout` parks without a deadline, so a lost wake-up is a deadlock loom reports.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(3600);

/// A waiter at the limit races the release of the only buffer on another thread: whichever way the waiter's
/// registration and second look interleave with the release's freelist push and waiter check (or its
/// hand-off), the waiter gets the buffer and never sleeps past the release.
#[test]
fn waiter_races_release_no_lost_wakeup() {
    loom::model(|| {
        let p = waiting_pool(1, 0);
        let held = p.acquire().unwrap();
        let t = thread::spawn(move || drop(held));
        let b = p.acquire_timeout(FOREVER).expect("woken by the release");
        t.join().unwrap();
        drop(b);
        let s = p.stats();
        assert_eq!((s.in_use, s.idle, s.waiters, s.pool_hits), (0, 1, 0, 2));
    });
}

/// As above, the release on a thread with a cache: it either sees the waiter (and bypasses its cache) or
/// caches the buffer and flushes it at thread exit, which serves the waiter.
#[test]
fn waiter_races_cached_release() {
    loom::model(|| {
        let p = waiting_pool(2, 2);
        let a = p.acquire().unwrap();
        let b = p.acquire().unwrap();
        let t = thread::spawn(move || drop(a));
        let got = p.acquire_timeout(FOREVER).expect("woken by the release");
        t.join().unwrap();
        drop((got, b));
        settle(|| {
            let s = p.stats();
            s.in_use == 0 && s.waiters == 0
        });
    });
}

/// A noop waker for polling a future once by hand.
struct Noop;
impl std::task::Wake for Noop {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// A waiting future is dropped (cancelled) while the only buffer is released and a second, blocking waiter
/// waits: if the release was handed to the cancelled future, its drop passes it on; either way the blocking
/// waiter completes and no buffer is lost.
#[test]
fn cancelled_waiter_races_release() {
    use std::future::Future;
    loom::model(|| {
        let p = waiting_pool(1, 0);
        let held = p.acquire().unwrap();
        let p1 = p.clone();
        let canceller = thread::spawn(move || {
            let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
            let mut f = Box::pin(p1.acquire_async());
            let polled = f.as_mut().poll(&mut std::task::Context::from_waker(&waker));
            // Ready (the release came first) or Pending: either way it is dropped now.
            drop(polled);
            drop(f);
        });
        let releaser = thread::spawn(move || drop(held));
        let b = p
            .acquire_timeout(FOREVER)
            .expect("the other waiter completes");
        canceller.join().unwrap();
        releaser.join().unwrap();
        drop(b);
        let s = p.stats();
        assert_eq!((s.in_use, s.idle, s.waiters), (0, 1, 0), "{s:?}");
    });
}

/// An overflow buffer is unmapped while a waiter waits at `max_overflow(1)` (pooled slot held): the permit
/// and its budget go to the waiter, which maps its own overflow buffer; counters balance and the budget is
/// whole again at the end.
#[test]
fn waiter_races_overflow_release() {
    loom::model(|| {
        let p = PagePool::builder()
            .buf_size(crate::page_size())
            .capacity(1)
            .thread_cache(0)
            .max_overflow(1)
            .max_bytes(2 * crate::page_size())
            .overflow(OverflowPolicy::Wait)
            .overflow_decay(std::time::Duration::ZERO)
            .build()
            .unwrap();
        let pooled = p.acquire().unwrap();
        let over = p.acquire().unwrap();
        assert!(over.is_overflow());
        let t = thread::spawn(move || drop(over));
        let b = p.acquire_timeout(FOREVER).expect("woken by the unmap");
        assert!(b.is_overflow());
        t.join().unwrap();
        drop((b, pooled));
        let s = p.stats();
        assert_eq!((s.overflow_in_use, s.waiters), (0, 0), "{s:?}");
        assert_eq!((s.overflow_maps, s.overflow_unmaps), (2, 2));
        assert_eq!(s.mapped_bytes, crate::page_size());
    });
}

/// Two blocking waiters, two buffers released by one thread: both waiters are served (hand-off to the front
/// waiter, or the freelist and the wake check when a release races a registration).
#[test]
fn two_waiters_two_releases() {
    loom::model(|| {
        let p = waiting_pool(2, 0);
        let a = p.acquire().unwrap();
        let b = p.acquire().unwrap();
        let p1 = p.clone();
        let w = thread::spawn(move || drop(p1.acquire_timeout(FOREVER).expect("first waiter")));
        let r = thread::spawn(move || {
            drop(a);
            drop(b);
        });
        drop(p.acquire_timeout(FOREVER).expect("second waiter"));
        w.join().unwrap();
        r.join().unwrap();
        let s = p.stats();
        assert_eq!(
            (s.in_use, s.idle, s.waiters, s.pool_hits),
            (0, 2, 0, 4),
            "{s:?}"
        );
    });
}

/// Issue #13, item 5. A sweep that sees a close's sweep epoch must see the close itself: this thread's cache
/// holds the only slot of pool A (its entry pins A) when another thread drops A's last handle (sets `CLOSING`,
/// then bumps the epoch) while this thread makes an operation on pool B, which sweeps. If that sweep recorded the
/// close's epoch as honoured, A's entry must be gone and A torn down: this thread would not look again until
/// the next bump, so A's memory would stay mapped for as long as the thread lives. Failed with a `Relaxed`
/// bump and sweep load (the sweep read the new epoch and the state from before `CLOSING`).
#[test]
fn sweep_races_close() {
    loom::model(|| {
        let before = teardowns();
        let a = cached_pool(1, 1);
        let b = cached_pool(1, 1);
        let a_id = a.inner_addr();
        drop(a.acquire().unwrap()); // into this thread's cache: its entry holds A's slot and a reference
        let closer = thread::spawn(move || drop(a)); // the last handle: CLOSING, then the epoch bump
        drop(b.acquire().unwrap()); // a pool operation: sweeps this thread's caches
        let (seen, entry) = crate::cache::loom_view(a_id);
        if seen >= 1 {
            assert_eq!(
                entry, None,
                "the sweep honoured the close's epoch but kept the closed pool's entry"
            );
            assert_eq!(teardowns(), before + 1, "closed pool A not torn down");
        }
        closer.join().unwrap();
        // After the join the close is visible to any ordering: the next operation lets go of A.
        drop(b.acquire().unwrap());
        assert_eq!(crate::cache::loom_view(a_id).1, None);
        assert_eq!(teardowns(), before + 1);
        drop(b);
        assert_eq!(teardowns(), before + 2);
    });
}

/// Issue #13, item 5, for `trim()` (the first waiter's flush request takes the same path: the pool's trim
/// epoch, then the sweep epoch). This thread's cache holds pool A's only slot when another thread calls
/// `A.trim()` while this thread makes an operation on pool B, which sweeps. If that sweep recorded the trim's
/// epoch as honoured, the slot must have left the cache: the request would otherwise be lost until the next
/// bump. Failed with `Relaxed` bumps and loads (the sweep read the new sweep epoch and the old trim epoch).
#[test]
fn sweep_races_trim() {
    loom::model(|| {
        let a = cached_pool(1, 1);
        let b = cached_pool(1, 1);
        let a_id = a.inner_addr();
        drop(a.acquire().unwrap()); // into this thread's cache
        let a2 = a.clone();
        let trimmer = thread::spawn(move || {
            a2.trim();
        });
        drop(b.acquire().unwrap()); // sweeps this thread's caches
        let (seen, entry) = crate::cache::loom_view(a_id);
        if seen >= 1 {
            assert_eq!(
                entry,
                Some(0),
                "the sweep honoured the trim's epoch but kept the idle slot cached"
            );
        }
        trimmer.join().unwrap();
        drop(b.acquire().unwrap());
        assert_eq!(crate::cache::loom_view(a_id).1, Some(0));
        let s = a.stats();
        assert_eq!((s.cached, s.idle, s.in_use), (0, 1, 0), "{s:?}");
    });
}

/// `sweep_races_close` with the entry made during the race: a thread with no cache entry for pool A releases
/// A's last buffer out (which makes an entry unless it sees A closing) while another thread drops A's last
/// handle, then makes an operation on pool B. Whichever way the entry's `is_closing` check and the sweeps
/// read, a sweep that honoured the close's epoch has let go of A.
#[test]
fn close_races_new_entry() {
    loom::model(|| {
        let before = teardowns();
        let a = cached_pool(1, 1);
        let b = cached_pool(1, 1);
        let a_id = a.inner_addr();
        let buf = a.acquire().unwrap();
        let t = thread::spawn(move || {
            drop(buf); // a new entry for A on this thread, unless A is seen closing
            drop(b.acquire().unwrap()); // sweeps this thread's caches
            let (seen, entry) = crate::cache::loom_view(a_id);
            if seen >= 1 {
                assert_eq!(
                    entry, None,
                    "the sweep honoured the close's epoch but kept A's entry"
                );
                assert_eq!(teardowns(), before + 1, "closed pool A not torn down");
            }
        });
        drop(a);
        t.join().unwrap();
        settle(|| teardowns() == before + 2);
    });
}

/// `sweep_races_trim` for the other writer of the trim epoch: the first waiter at a `Wait` pool's limit asks
/// every thread cache to flush. Another thread releases pool A's only buffer (to the waiter if it sees one, else
/// into a cache entry it makes for A now) while this thread waits for a buffer of A; then that thread makes an
/// operation on pool B, which sweeps. A sweep that honoured the waiter's request must have flushed the slot (to
/// the waiter), or the waiter would wait for as long as that thread lives. Failed with `Relaxed` orderings, and
/// still failed with only the sweep epoch fixed: a release that looked for waiters before its sweep cached the
/// slot after that sweep had honoured the request, and a new entry read the trim epoch of a request still in
/// flight (incremented, not yet bumped) and recorded it as honoured before its thread could see the waiter.
#[test]
fn sweep_races_waiter_flush_request() {
    loom::model(|| {
        let a = waiting_pool(1, 1);
        let b = cached_pool(1, 1);
        let a_id = a.inner_addr();
        let buf = a.acquire().unwrap();
        let releaser = thread::spawn(move || {
            drop(buf); // to the waiter, or into this thread's cache
            drop(b.acquire().unwrap()); // sweeps this thread's caches
            let (seen, entry) = crate::cache::loom_view(a_id);
            if seen >= 1 {
                assert!(
                    matches!(entry, None | Some(0)),
                    "the sweep honoured the waiter's request but kept the idle slot cached ({entry:?})"
                );
            }
            // Exit: this thread's caches are flushed, which serves the waiter if nothing else did.
        });
        let got = a
            .acquire_timeout(FOREVER)
            .expect("served by the release or the flush");
        releaser.join().unwrap();
        drop(got);
        let s = a.stats();
        assert_eq!((s.in_use, s.waiters), (0, 0), "{s:?}");
    });
}

/// io_uring registration (`iovecs` closes the discard gate, `gate.rs`) races a trim of the pool's one idle
/// slot: once the close has returned, no discard is in flight and none starts, in every interleaving (a trim
/// that entered before the close finishes first; one that had not is refused), and trim reports exactly what
/// it discarded.
#[test]
fn discard_gate_close_races_trim() {
    use std::sync::atomic::AtomicBool as StdAtomicBool;
    // Both outcomes must be explored: a trim that discarded before the close, and one kept out.
    static DISCARDED: StdAtomicBool = StdAtomicBool::new(false);
    static KEPT_OUT: StdAtomicBool = StdAtomicBool::new(false);
    loom::model(|| {
        let p = cached_pool(1, 0);
        drop(p.acquire().unwrap()); // maps the chunk; its slot idles on the freelist
        let p1 = p.clone();
        let t = thread::spawn(move || p1.trim());
        p.close_discard_gate();
        let at_close = p.discards();
        let trimmed = t.join().unwrap();
        assert_eq!(
            p.discards(),
            at_close,
            "a discard started after the gate closed"
        );
        assert_eq!(trimmed, at_close * crate::page_size());
        if at_close > 0 { &DISCARDED } else { &KEPT_OUT }.store(true, SeqCst);
        // Closed for good: the next trim finds the slot idle and leaves it alone.
        assert_eq!(p.trim(), 0);
        assert_eq!(p.discards(), at_close);
        let s = p.stats();
        assert_eq!((s.idle, s.in_use), (1, 0), "{s:?}");
    });
    assert!(DISCARDED.load(SeqCst) && KEPT_OUT.load(SeqCst));
}

// ---- the overflow reserve -------------------------------------------------------------------------------
// Loom has no time, and a model must make the same atomic operations when replayed, so no model depends on the
// decay's clock: the decay is an hour, and `trim()` runs the same unmapping path (`Inner::unmap_reserved`)
// for every entry instead of the expired ones.

/// A pool with one pooled slot and an overflow reserve that only `trim()` empties.
fn reserving_pool(max_overflow: usize, policy: OverflowPolicy) -> PagePool {
    PagePool::builder()
        .buf_size(crate::page_size())
        .capacity(1)
        .thread_cache(0)
        .max_overflow(max_overflow)
        .max_bytes((1 + max_overflow) * crate::page_size())
        .overflow(policy)
        .overflow_decay(FOREVER)
        .build()
        .unwrap()
}

/// Two threads each take an overflow buffer (a fresh mapping, or the other's from the reserve), write and check
/// it, and release it into the reserve; the main thread empties the reserve meanwhile (the decay's unmapping
/// path). No mapping is ever held twice, neither thread is refused (a permit held by a buffer on its way out of
/// the reserve is waited for, not reported as `Exhausted`), permits and budget never exceed `max_overflow(2)`
/// and `max_bytes`, and the books balance at the end: every mapping is out, reserved or unmapped.
#[test]
fn reserve_put_take_decay_race() {
    loom::model(|| {
        let p = reserving_pool(2, OverflowPolicy::Map);
        let pooled = p.acquire().unwrap();
        let threads: Vec<_> = (1..=2u8)
            .map(|t| {
                let p = p.clone();
                thread::spawn(move || {
                    let mut b = p.acquire().expect("two permits, two threads");
                    assert!(b.is_overflow());
                    b.fill(t);
                    thread::yield_now();
                    assert!(
                        b.iter().all(|&x| x == t),
                        "mapping shared with another holder"
                    );
                })
            })
            .collect();
        p.trim();
        for t in threads {
            t.join().unwrap();
        }
        let s = p.stats();
        assert_eq!(s.overflow_in_use, 0, "{s:?}");
        assert!(s.reserve_buffers <= 2, "{s:?}");
        assert_eq!(
            s.overflow_maps,
            s.overflow_unmaps + s.reserve_buffers as u64,
            "{s:?}"
        );
        assert_eq!(s.overflow_maps + s.overflow_reuses, 2, "{s:?}");
        assert_eq!(
            s.mapped_bytes,
            crate::page_size() * (1 + s.reserve_buffers),
            "{s:?}"
        );
        p.trim();
        let s = p.stats();
        assert_eq!(
            (s.reserve_buffers, s.overflow_maps),
            (0, s.overflow_unmaps),
            "{s:?}"
        );
        // Both permits and their budget are back.
        let again = (p.acquire().unwrap(), p.acquire().unwrap());
        assert!(again.0.is_overflow() && again.1.is_overflow());
        drop((again, pooled));
    });
}

/// A waiter at `max_overflow(1)` races the release of the only overflow buffer and a `trim()` right after it
/// on another thread: the released mapping is handed to the waiter, or reaches it through the reserve (the
/// waiter's second look, or the releaser's wake check serving it), or is unmapped by the trim, whose permit
/// then goes to the waiter. Whichever, the waiter is woken (a lost wake-up is a deadlock loom reports) and the
/// books balance.
#[test]
fn reserve_waiter_races_release_and_trim() {
    loom::model(|| {
        let p = reserving_pool(1, OverflowPolicy::Wait);
        let pooled = p.acquire().unwrap();
        let over = p.acquire().unwrap();
        assert!(over.is_overflow());
        let p2 = p.clone();
        let t = thread::spawn(move || {
            drop(over);
            p2.trim();
        });
        let b = p.acquire_timeout(FOREVER).expect("woken by the release");
        assert!(b.is_overflow());
        t.join().unwrap();
        drop(b);
        let s = p.stats();
        assert_eq!((s.overflow_in_use, s.waiters), (0, 0), "{s:?}");
        assert_eq!(
            s.overflow_maps,
            s.overflow_unmaps + s.reserve_buffers as u64,
            "{s:?}"
        );
        assert_eq!(s.overflow_maps + s.overflow_reuses, 2, "{s:?}");
        drop(pooled);
    });
}

/// The last handle is dropped while the reserve holds a mapping and another thread releases the last pooled
/// and overflow buffers (into the reserve, if it still sees the pool open): the shared state, with whatever
/// the reserve holds, is torn down exactly once, after the last release.
#[test]
fn close_with_reserved_mappings() {
    loom::model(|| {
        let before = teardowns();
        let p = reserving_pool(2, OverflowPolicy::Map);
        let a = p.acquire().unwrap();
        let o1 = p.acquire().unwrap();
        let o2 = p.acquire().unwrap();
        assert!(o1.is_overflow() && o2.is_overflow());
        drop(o2);
        assert_eq!(p.stats().reserve_buffers, 1);
        let t = thread::spawn(move || drop((o1, a)));
        drop(p);
        t.join().unwrap();
        assert_eq!(teardowns(), before + 1);
    });
}

/// The last handle is dropped while another thread releases an overflow buffer into the empty reserve, with a
/// pooled buffer still out (so the shared state outlives both). Once both are done the reserve is empty: the
/// close took the mapping out, or the release saw the close and unmapped it. Found by review: the close looked
/// at the reserve's length gauge first and skipped the lock when it read 0, and the release looked at
/// `CLOSING` after its put, a store-buffering pair in which each could miss the other's write, leaving the
/// mapping reserved until the last buffer came home.
#[test]
fn close_races_release_into_reserve() {
    loom::model(|| {
        let p = reserving_pool(1, OverflowPolicy::Map);
        let a = p.acquire().unwrap();
        let o = p.acquire().unwrap();
        assert!(o.is_overflow());
        let t = thread::spawn(move || drop(o));
        drop(p);
        t.join().unwrap();
        assert_eq!(
            a.loom_reserved(),
            0,
            "a mapping stayed reserved after the close"
        );
        drop(a);
    });
}

/// Review: an `acquire_len` above the pool's size at `max_overflow(2)`, whose permit and budget are held by
/// reserved buffers, races a release into the reserve and a reuse from it on another thread. Every permit the
/// oversize acquire needs is held by a reserved buffer or by the other thread's one buffer, so it must evict
/// (never `Exhausted`), the other thread must be served (from the reserve or with a fresh permit), and the
/// books balance.
#[test]
fn reserve_evict_races_reuse() {
    loom::model(|| {
        let page = crate::page_size();
        let p = PagePool::builder()
            .buf_size(page)
            .capacity(1)
            .thread_cache(0)
            .max_overflow(2)
            .max_bytes(4 * page)
            .overflow(OverflowPolicy::Map)
            .overflow_decay(FOREVER)
            .build()
            .unwrap();
        let pooled = p.acquire().unwrap();
        let o1 = p.acquire().unwrap();
        let o2 = p.acquire().unwrap();
        assert!(o1.is_overflow() && o2.is_overflow());
        drop(o2);
        let p2 = p.clone();
        let t = thread::spawn(move || {
            drop(o1);
            let b = p2.acquire().expect("a reserved mapping or a permit");
            assert!(b.is_overflow());
        });
        let big = p
            .acquire_len(2 * page)
            .expect("room after evicting reserved buffers");
        assert!(big.is_overflow() && big.len() == 2 * page);
        t.join().unwrap();
        drop(big);
        let s = p.stats();
        assert_eq!(s.overflow_in_use, 0, "{s:?}");
        assert_eq!(
            s.overflow_maps,
            s.overflow_unmaps + s.reserve_buffers as u64,
            "{s:?}"
        );
        p.trim();
        let again = (p.acquire().unwrap(), p.acquire().unwrap());
        assert!(again.0.is_overflow() && again.1.is_overflow());
        drop((again, pooled));
    });
}

/// Review: the race `Reserve::settling` exists for, which `reserve_put_take_decay_race` never reaches (two
/// threads, two permits: no acquire there is ever refused; with `settling` always `false` it still passes). At
/// `max_overflow(1)` the only permit is held by a reserved buffer that `trim()` on another thread is taking out
/// and unmapping: an acquire that finds the reserve empty and the permit taken must wait for the permit, not
/// report `Exhausted`. (Fails with `settling` returning `false`.)
#[test]
fn reserve_acquire_races_trim_unmap() {
    loom::model(|| {
        let p = reserving_pool(1, OverflowPolicy::Map);
        let pooled = p.acquire().unwrap();
        drop(p.acquire().unwrap()); // into the reserve, holding the only permit
        let p2 = p.clone();
        let t = thread::spawn(move || {
            p2.trim();
        });
        let b = p.acquire().expect("the reserved buffer or its permit");
        assert!(b.is_overflow());
        t.join().unwrap();
        drop((b, pooled));
        let s = p.stats();
        assert_eq!(s.overflow_in_use, 0, "{s:?}");
        assert_eq!(
            s.overflow_maps,
            s.overflow_unmaps + s.reserve_buffers as u64,
            "{s:?}"
        );
    });
}

/// Adaptive caches (`thread_cache(1)`, `max_thread_cache(2)`): a thread takes two buffers and gives them
/// back, so its cache, full at the second release after a refill, grows by claiming room from the shared
/// `cache_room` (a read-modify-write), while the main thread does the same. Nothing is exhausted, every slot
/// comes home, and once both caches have closed all the room they claimed is back.
#[test]
fn adaptive_caches_grow_and_give_back_room() {
    loom::model(|| {
        let p = PagePool::builder()
            .buf_size(crate::page_size())
            .capacity(4)
            .thread_cache(1)
            .max_thread_cache(2)
            .overflow(OverflowPolicy::Fail)
            .build()
            .unwrap();
        let cycle = |p: &PagePool| {
            let a = p.acquire().expect("4 slots, 2 threads x 2 held");
            let b = p.acquire().expect("4 slots, 2 threads x 2 held");
            drop((a, b));
        };
        let t = {
            let p = p.clone();
            thread::spawn(move || cycle(&p))
        };
        cycle(&p);
        t.join().unwrap();
        // `trim` shrinks this thread's cache back to its start; the other one closed at its exit.
        p.trim();
        settle(|| {
            let s = p.stats();
            s.cached == 0 && s.idle == s.pooled_buffers
        });
        settle(|| p.loom_cache_room() == 4);
        assert_eq!(p.stats().exhausted, 0);
    });
}

// Reclaim (issue #14, item 2): other threads reach a thread's idle cached slots through the cache's
// asymmetric lock (`cache.rs`, "Reclaim"). Loom models both halves of the barrier pair as `SeqCst` fences.

/// A thread at the limit reclaims the idle slots of the owner's cache while the owner pops and pushes on its
/// hit path: no slot is ever held twice, the thief is never refused (the owner holds at most one of the two
/// slots at a time, so one is always idle in its cache or on its way there inside an operation the thief waits
/// out), and everything comes home.
#[test]
fn reclaim_races_owner_pop_and_push() {
    loom::model(|| {
        let p = cached_pool(2, 2);
        let holders = Holders::new(2);
        let both = (p.acquire().unwrap(), p.acquire().unwrap());
        drop(both); // both idle in this thread's cache
        let thief = {
            let (p, h) = (p.clone(), holders.clone());
            thread::spawn(move || {
                let b = match p.acquire() {
                    Ok(b) => b,
                    Err(e) => panic!("refused while a slot idled in the owner's cache: {e:?}"),
                };
                h.take(&b);
                h.give(&b);
                drop(b);
            })
        };
        // The owner's hit path: pop, then push.
        let b = p.acquire().expect("the owner keeps at least one slot");
        holders.take(&b);
        holders.give(&b);
        drop(b);
        thief.join().unwrap();
        p.trim();
        settle(|| {
            let s = p.stats();
            s.cached == 0 && s.idle == s.pooled_buffers
        });
        let s = p.stats();
        assert_eq!((s.in_use, s.exhausted), (0, 0), "{s:?}");
    });
}

/// A thread with cached slots exits (its cache closes: flush, unregister, reference given back) while another
/// thread's `trim` reclaims from every cache: each slot goes home exactly once (the freelist's loom twin
/// panics on a second return), and the references balance: the pool is torn down once, at its last handle.
#[test]
fn thread_exit_races_reclaim() {
    loom::model(|| {
        let before = teardowns();
        let p = cached_pool(2, 2);
        let t = {
            let p = p.clone();
            thread::spawn(move || {
                let both = (p.acquire().unwrap(), p.acquire().unwrap());
                drop(both); // into this thread's cache; the thread exits right after
            })
        };
        p.trim();
        t.join().unwrap();
        settle(|| {
            let s = p.stats();
            s.cached == 0 && s.idle == s.pooled_buffers
        });
        drop(p);
        // The exiting thread gives its entry's own reference back last, after its cache is unregistered
        // (`Local::run_owed`): the teardown may be its.
        settle(|| teardowns() > before);
        assert_eq!(teardowns(), before + 1);
    });
}

/// Issue #14, item 2b: a thread caches the pool's slot and then blocks (here: spins on a flag) while the last
/// handle drops elsewhere: the close ends that thread's cache, so the pool is torn down right there, before the
/// blocked thread does anything. Its next cache operation (on another pool) forgets the dead entry without
/// touching the freed pool.
#[test]
fn close_ends_a_blocked_threads_cache() {
    loom::model(|| {
        let before = teardowns();
        let p = cached_pool(1, 1);
        let p_id = p.inner_addr();
        let cached = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let t = {
            let (p, cached, go) = (p.clone(), cached.clone(), go.clone());
            thread::spawn(move || {
                let q = cached_pool(1, 1);
                drop(p.acquire().unwrap()); // cached on this thread
                drop(p);
                cached.store(true, SeqCst);
                while !go.load(SeqCst) {
                    thread::yield_now();
                }
                drop(q.acquire().unwrap()); // sweeps: the dead entry goes
                assert_eq!(crate::cache::loom_view(p_id).1, None);
            })
        };
        while !cached.load(SeqCst) {
            thread::yield_now();
        }
        drop(p);
        assert_eq!(
            teardowns(),
            before + 1,
            "the blocked thread's cache kept the pool"
        );
        go.store(true, SeqCst);
        t.join().unwrap();
    });
}

/// The close's reclaim races the caching thread's own release into its cache (and that thread's exit): the
/// pool is torn down exactly once, whichever comes first, and never while the release still needs it.
#[test]
fn close_reclaim_races_cached_release() {
    loom::model(|| {
        let before = teardowns();
        let p = cached_pool(2, 2);
        let warm = p.acquire().unwrap();
        let b = p.acquire().unwrap();
        let t = {
            let p = p.clone();
            thread::spawn(move || {
                drop(warm); // creates this thread's cache, holding the slot
                drop(p);
                drop(b); // a hit-path push, racing the close's reclaim
            })
        };
        drop(p);
        t.join().unwrap();
        settle(|| teardowns() > before);
        assert_eq!(teardowns(), before + 1);
    });
}

// ---- the freelist's Treiber stacks and the depot's chains (freelist.rs, depot.rs) ----------------------------
// Each model drives the stacks directly, on a freelist whose chunks (one slot each under loom) all have their
// links, and checks at the end that every slot index is in exactly one place.

/// A freelist for `capacity` slots with the links of every chunk allocated, and nothing on it.
fn linked_freelist(capacity: usize) -> crate::freelist::FreeList {
    let l = crate::PoolBuilder::default()
        .capacity(capacity)
        .layout()
        .unwrap();
    let f = crate::freelist::FreeList::new(&l);
    for k in 0..l.chunks {
        f.add_chunk(k).unwrap();
    }
    f
}

/// Pops everything and returns it sorted.
fn drain(f: &crate::freelist::FreeList) -> Vec<u32> {
    let mut v: Vec<u32> = std::iter::from_fn(|| f.pop()).collect();
    v.sort_unstable();
    v
}

/// The ABA schedule of a Treiber stack: one thread pops the top and pushes it back, while another pops two and
/// pushes the first back. Without the version tag, the first thread's exchange could succeed on a head that
/// names the same slot with a different link below it, losing or duplicating a slot.
#[test]
fn freelist_aba_pop_push_race() {
    loom::model(|| {
        let f = Arc::new(linked_freelist(3));
        for s in 0..3 {
            f.push(s);
        }
        let t = {
            let f = f.clone();
            thread::spawn(move || {
                let x = f.pop().expect("three slots, at most three out");
                f.push(x);
            })
        };
        let a = f.pop().expect("three slots, at most three out");
        let b = f.pop().expect("three slots, at most three out");
        f.push(a);
        t.join().unwrap();
        f.push(b);
        assert_eq!(f.len(), 3);
        assert_eq!(drain(&f), [0, 1, 2], "each slot exactly once");
        assert_eq!(f.len(), 0);
    });
}

/// A fresh run (one written link) races pops and a hot push: the run's implicit links hand out every slot once,
/// and a pop prefers the hot stack over the cold one.
#[test]
fn freelist_fresh_run_races_pop_and_push() {
    loom::model(|| {
        let f = Arc::new(linked_freelist(3));
        let t = {
            let f = f.clone();
            thread::spawn(move || {
                f.push_fresh(0..2);
                f.pop()
            })
        };
        f.push(2);
        let mine = f.pop();
        let theirs = t.join().unwrap();
        let mut all: Vec<u32> = drain(&f);
        all.extend(mine);
        all.extend(theirs);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2], "each slot exactly once");
        assert_eq!(f.len(), 0);
        // Sequentially: resident (hot) slots come before trimmed (cold) ones, whatever the push order.
        f.push_cold(0);
        f.push(1);
        f.push_cold(2);
        assert_eq!(
            [f.pop(), f.pop(), f.pop(), f.pop()],
            [Some(1), Some(2), Some(0), None]
        );
    });
}

/// Magazines of two slots: the taker walks a chain's links inside its compare-exchange window while the other
/// thread pops that chain and pushes a new one; every slot comes out exactly once, in whole magazines.
#[test]
fn depot_chain_walk_races_put_and_take() {
    use crate::depot::Depot;
    loom::model(|| {
        let f = Arc::new(linked_freelist(4));
        let d = Arc::new(Depot::new(4, 2).unwrap());
        assert!(d.put(&f, &mut vec![0, 1]));
        let t = {
            let (d, f) = (d.clone(), f.clone());
            thread::spawn(move || {
                let mut out = Vec::new();
                d.take(&f, &mut out);
                out
            })
        };
        assert!(d.put(&f, &mut vec![2, 3]));
        let mut mine = Vec::new();
        d.take(&f, &mut mine);
        let theirs = t.join().unwrap();
        assert_eq!(theirs.len(), 2, "one of the two magazines is always there");
        assert_eq!(mine.len(), 2, "one of the two magazines is always there");
        assert!(!d.take(&f, &mut Vec::new()));
        assert_eq!(d.idle(), 0);
        let mut all = [mine, theirs].concat();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3], "each slot exactly once");
    });
}
