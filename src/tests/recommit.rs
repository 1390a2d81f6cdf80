//! A trim whose recommit fails (issue #13, item 2): on Windows, trimming decommits a range and commits it again;
//! when the commit fails (commit pressure), the range is reserved but unusable, and handing it out would give
//! the caller a `&mut [u8]` over memory that faults on first touch. Such a range must stay out of the freelist
//! until a later recommit succeeds.
//!
//! The failure is injected with `sys::fault::fail_recommit_at`: under Wine the range really is left
//! uncommitted (`fault::committed` asks `VirtualQuery`); on Linux the pages stay usable but the pool takes the
//! same path, so both suites cover it.

use crate::sys::fault;
use crate::{AcquireError, AlignedBuf, OverflowPolicy, PagePool};

/// What a failed `MEM_COMMIT` reports under commit pressure.
#[cfg(windows)]
const COMMIT_FAILED: i32 = 1455; // ERROR_COMMITMENT_LIMIT
#[cfg(not(windows))]
const COMMIT_FAILED: i32 = 12; // ENOMEM

fn page() -> usize {
    crate::page_size()
}

/// Four one-page buffers in one chunk, all mapped, no overflow: an acquire past the freelist is refused.
fn four(thread_cache: usize) -> PagePool {
    PagePool::builder()
        .buf_size(page())
        .capacity(4)
        .thread_cache(thread_cache)
        .overflow(OverflowPolicy::Fail)
        .prealloc(true)
        .build()
        .unwrap()
}

fn committed(b: &AlignedBuf) -> bool {
    fault::committed(
        std::ptr::NonNull::new(b.as_ptr().cast_mut()).unwrap(),
        b.len(),
    )
}

/// Takes all four buffers and gives back the first and the third: two idle slots that are not neighbours, so a
/// trim discards them as two ranges, the first one first. Returns their addresses and the two still held.
fn two_idle(pool: &PagePool) -> ((*const u8, *const u8), Vec<AlignedBuf>) {
    let mut bufs: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    let third = bufs.remove(2);
    let first = bufs.remove(0);
    let addrs = (first.as_ptr(), third.as_ptr());
    drop(first);
    drop(third);
    (addrs, bufs)
}

/// Fails the test if `b` is the range whose recommit failed, without dropping `b` (on Windows that range is not
/// committed, and a release may write to it: the buffer is leaked instead).
fn refuse_lost(b: AlignedBuf, lost: *const u8, cache: usize) -> AlignedBuf {
    if b.as_ptr() == lost {
        let usable = committed(&b);
        std::mem::forget(b);
        panic!(
            "cache {cache}: handed out {lost:p}, the range whose recommit failed (committed: {usable})"
        );
    }
    b
}

/// The range whose recommit failed is never handed out while recommitting it keeps failing, and is handed
/// out, committed and writable, once a retry succeeds. With and without thread caches (trim flushes this
/// thread's cache first; refills then take the cache path).
#[test]
fn a_failed_recommit_never_hands_out_the_range() {
    for cache in [0, 4] {
        let pool = four(cache);
        let ((lost, kept), mut held) = two_idle(&pool);
        fault::fail_recommit_at(0, COMMIT_FAILED);
        pool.trim();
        assert!(
            fault::clear_recommits() >= 1,
            "cache {cache}: no recommit made"
        );
        // Still under pressure: the next retry (the acquire that finds the freelist empty) fails too.
        fault::fail_recommit_at(0, COMMIT_FAILED);
        let a = refuse_lost(pool.acquire().unwrap(), lost, cache);
        assert_eq!(a.as_ptr(), kept, "cache {cache}");
        assert!(committed(&a), "cache {cache}");
        match pool.acquire() {
            Err(AcquireError::Exhausted { .. }) => {}
            Ok(b) => {
                let _b = refuse_lost(b, lost, cache);
                panic!("cache {cache}: a fifth buffer from a pool of four");
            }
            Err(e) => panic!("cache {cache}: {e}"),
        }
        fault::clear_recommits();
        // The pressure is gone: the next acquire that finds the freelist empty recommits the range first.
        let mut b = pool.acquire().expect("the recommitted buffer");
        assert_eq!(b.as_ptr(), lost, "cache {cache}");
        assert!(committed(&b), "cache {cache}");
        b.fill(0xA5);
        assert!(b.iter().all(|&x| x == 0xA5));
        held.extend([a, b]);
        drop(held);
    }
}

/// `idle + in_use + uncommitted == pooled_buffers`, with `in_use` what the test holds.
fn books(pool: &PagePool, in_use: usize) -> crate::PoolStats {
    let s = pool.stats();
    assert_eq!(s.idle + s.in_use + s.uncommitted, s.pooled_buffers, "{s:?}");
    assert_eq!(s.in_use, in_use, "{s:?}");
    s
}

/// The held-out buffer is counted in `uncommitted` (neither idle nor in use), the trim still reports its bytes
/// as given back, and the next trim recommits it and puts it back in the freelist.
#[test]
fn held_out_buffers_return_at_the_next_trim() {
    let pool = four(0);
    let ((lost, _), held) = two_idle(&pool);
    fault::fail_recommit_at(0, COMMIT_FAILED);
    assert_eq!(pool.trim(), 2 * page(), "both ranges were given back");
    assert_eq!(fault::clear_recommits(), 2, "one recommit per range");
    let s = books(&pool, 2);
    assert_eq!((s.idle, s.uncommitted), (1, 1), "{s:?}");
    assert_eq!(s.trimmed_bytes, 2 * page() as u64, "{s:?}");
    let lost_range = std::ptr::NonNull::new(lost.cast_mut()).unwrap();
    if cfg!(windows) {
        assert!(
            !fault::committed(lost_range, page()),
            "the injected failure leaves the range uncommitted under Wine"
        );
    }
    // The next trim retries first (one recommit), then trims the idle buffers again (one range of two).
    fault::fail_recommit_at(u64::MAX, COMMIT_FAILED);
    pool.trim();
    assert_eq!(fault::clear_recommits(), 2);
    let s = books(&pool, 2);
    assert_eq!((s.idle, s.uncommitted), (2, 0), "{s:?}");
    assert!(fault::committed(lost_range, page()));
    // Every buffer is served again, from the pool.
    let again: Vec<_> = (0..2).map(|_| pool.acquire().unwrap()).collect();
    assert!(again.iter().any(|b| b.as_ptr() == lost));
    drop((held, again));
    books(&pool, 0);
}

/// An idle-trim period that ends retries the held-out buffers too, even with nothing idle to trim.
#[test]
fn idle_trim_period_retries_held_out_buffers() {
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(4)
        .thread_cache(0)
        .overflow(OverflowPolicy::Fail)
        .prealloc(true)
        .idle_trim_after(std::time::Duration::from_millis(1))
        .build()
        .unwrap();
    let all: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    drop(all);
    // One range of four slots; its recommit fails: the whole pool is held out.
    fault::fail_recommit_at(0, COMMIT_FAILED);
    pool.trim();
    fault::clear_recommits();
    let s = books(&pool, 0);
    assert_eq!((s.idle, s.uncommitted), (0, 4), "{s:?}");
    std::thread::sleep(std::time::Duration::from_millis(5));
    // The period ended with no idle buffer (nothing to trim), but the held-out ones are retried.
    pool.trim_idle();
    let s = books(&pool, 0);
    assert_eq!((s.idle, s.uncommitted), (4, 0), "{s:?}");
}

/// While every retry fails, the held-out buffers stay out and counted, whatever asks for them: acquires are
/// refused (`Exhausted`, counted), trims find nothing to trim. Once a retry succeeds, all of them serve.
#[test]
fn lasting_pressure_keeps_buffers_out_and_counted() {
    let pool = four(0);
    drop((0..4).map(|_| pool.acquire().unwrap()).collect::<Vec<_>>());
    fault::fail_recommit_at(0, COMMIT_FAILED);
    pool.trim();
    for round in 0..3 {
        // The retry of this round fails.
        fault::fail_recommit_at(0, COMMIT_FAILED);
        assert!(
            matches!(pool.acquire(), Err(AcquireError::Exhausted { .. })),
            "round {round}"
        );
        fault::fail_recommit_at(0, COMMIT_FAILED);
        assert_eq!(pool.trim(), 0, "round {round}: nothing idle to trim");
        let s = books(&pool, 0);
        assert_eq!((s.idle, s.uncommitted), (0, 4), "round {round}: {s:?}");
        assert_eq!(s.exhausted, round + 1, "{s:?}");
    }
    fault::clear_recommits();
    let all: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    assert!(all.iter().all(|b| !b.is_overflow() && committed(b)));
    let s = books(&pool, 4);
    assert_eq!(s.uncommitted, 0, "{s:?}");
}

/// Dropping a pool that holds buffers out unmaps every chunk: with nothing out, and with buffers still out
/// when the last handle goes (the chunk is unmapped when the last of them is released).
#[test]
fn pool_drop_with_held_out_buffers_unmaps_everything() {
    let live0 = fault::live();
    let pool = four(0);
    drop((0..4).map(|_| pool.acquire().unwrap()).collect::<Vec<_>>());
    fault::fail_recommit_at(0, COMMIT_FAILED);
    pool.trim();
    fault::clear_recommits();
    assert_eq!(pool.stats().uncommitted, 4, "one range: the whole chunk");
    drop(pool);
    assert_eq!(
        fault::live(),
        live0,
        "a pool with held-out buffers leaked its chunk"
    );

    let pool = four(0);
    let (_, held) = two_idle(&pool);
    fault::fail_recommit_at(1, COMMIT_FAILED);
    pool.trim();
    fault::clear_recommits();
    assert_eq!(pool.stats().uncommitted, 1);
    drop(pool);
    assert_eq!(fault::live(), live0 + 1, "unmapped under live buffers");
    drop(held);
    assert_eq!(
        fault::live(),
        live0,
        "the last buffer out did not unmap the chunk"
    );
}

/// Size classes: each class holds its own buffers out, and the pool's row sums them.
#[test]
fn size_class_stats_sum_uncommitted() {
    let pool = PagePool::builder()
        .size_classes(&[page(), 2 * page()])
        .capacity(2)
        .thread_cache(0)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let bufs: Vec<_> = [1, page() + 1, 1, page() + 1]
        .iter()
        .map(|&n| pool.acquire_len(n).unwrap())
        .collect();
    drop(bufs);
    // One range per class, the small class first: its recommit fails.
    fault::fail_recommit_at(0, COMMIT_FAILED);
    pool.trim();
    assert_eq!(fault::clear_recommits(), 2);
    let s = pool.stats();
    let rows: Vec<_> = s.classes.iter().map(|c| (c.idle, c.uncommitted)).collect();
    assert_eq!(rows, [(0, 2), (2, 0)], "{s:?}");
    assert_eq!((s.idle, s.uncommitted, s.in_use), (2, 2, 0), "{s:?}");
    assert_eq!(s.idle + s.in_use + s.uncommitted, s.pooled_buffers, "{s:?}");
}

/// Records, for every `pagepool` event, its level, its message and the pool's stats at that moment.
struct BooksAtEvents {
    pool: PagePool,
    seen: std::sync::Mutex<Vec<(tracing::Level, String, crate::PoolStats)>>,
}

impl tracing::Subscriber for BooksAtEvents {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "pagepool"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut m = super::Message(String::new());
        event.record(&mut m);
        let s = self.pool.stats();
        self.seen
            .lock()
            .unwrap()
            .push((*event.metadata().level(), m.0, s));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The trim's warning about held-out buffers and the retry's notice that they are back are emitted once the
/// pool's books agree: at each event, every buffer is idle, in use by the test, or counted as uncommitted
/// (foreign code, such as a subscriber, never sees a slot in flight).
#[test]
fn events_come_after_the_books_agree() {
    let pool = four(0);
    let (_, held) = two_idle(&pool);
    let sub = std::sync::Arc::new(BooksAtEvents {
        pool: pool.clone(),
        seen: std::sync::Mutex::new(Vec::new()),
    });
    tracing::subscriber::with_default(sub.clone(), || {
        fault::fail_recommit_at(0, COMMIT_FAILED);
        pool.trim();
        fault::clear_recommits();
        pool.trim();
    });
    let seen = std::mem::take(&mut *sub.seen.lock().unwrap());
    drop(sub);
    for (level, msg, s) in &seen {
        assert_eq!(
            (s.idle + s.in_use + s.uncommitted, s.in_use),
            (s.pooled_buffers, 2),
            "{level} {msg:?} saw {s:?}"
        );
    }
    let find = |level, words: &str| {
        seen.iter()
            .find(|(l, m, _)| *l == level && m.contains(words))
            .unwrap_or_else(|| panic!("no {level} event with {words:?} in {seen:#?}"))
    };
    let (_, _, s) = find(tracing::Level::WARN, "could not commit");
    assert_eq!((s.idle, s.uncommitted), (1, 1), "{s:?}");
    let (_, _, s) = find(tracing::Level::INFO, "back in the pool");
    assert_eq!((s.idle, s.uncommitted), (2, 0), "{s:?}");
    drop(held);
}
