//! Reclaiming idle slots from other threads' caches (`cache::reclaim`), and what happens where the OS offers no
//! process-wide barrier: `sys::fault::refuse_barrier` makes `process_barrier` report none on the calling
//! thread, as a kernel without `membarrier` or a seccomp filter would. Every reclaim then leaves the caches
//! alone, and the older mechanisms (sweeps at each thread's next pool operation, thread exit) still return
//! everything.

use super::PanickingSubscriber;
use crate::sys::fault;
use crate::{OverflowPolicy, PagePool};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Marks the mapping holding `buf` (`MADV_DONTDUMP`, a flag of the mapping only) so that [`tagged`] can tell
/// it from a later mapping at the same address (tests run in parallel and map memory too).
#[cfg(target_os = "linux")]
fn tag(buf: &[u8]) {
    // SAFETY: a buffer the caller holds: page-aligned whole pages inside a live private anonymous mapping;
    // MADV_DONTDUMP only sets a flag of the mapping.
    let rc = unsafe {
        libc::madvise(
            buf.as_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MADV_DONTDUMP,
        )
    };
    assert_eq!(rc, 0);
}

/// Whether the mapping at `addr` is one [`tag`] marked (`dd` in `/proc/self/smaps`' `VmFlags`).
#[cfg(target_os = "linux")]
fn tagged(addr: usize) -> bool {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside && line.starts_with("VmFlags:") {
            return line.split_whitespace().any(|f| f == "dd");
        }
    }
    false
}

fn cached_pool(capacity: usize, cache: usize) -> PagePool {
    PagePool::builder()
        .capacity(capacity)
        .thread_cache(cache)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap()
}

/// Runs `f` with `refused` set on a new thread, and returns its result.
fn on_thread<R: Send>(refused: bool, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            fault::refuse_barrier(refused);
            f()
        })
        .join()
        .unwrap()
    })
}

/// With a barrier, a pool closed on another thread is unmapped at once, although this thread's cache held one
/// of its slots and this thread made no pool operation since; without one, it stays mapped until this thread's
/// next cache operation (of any pool) sweeps the entry away.
#[cfg(target_os = "linux")]
#[test]
fn close_reaches_other_threads_caches_only_with_a_barrier() {
    for refused in [false, true] {
        // Mapped first, so that its chunk cannot land where the closed pool's was.
        let p = cached_pool(8, 4);
        drop(p.acquire().unwrap());
        let other = cached_pool(8, 4);
        let b = other.acquire().unwrap();
        tag(&b);
        let addr = b.as_ptr() as usize;
        drop(b); // into this thread's cache: its entry holds the slot and a reference
        assert_eq!(other.stats().cached, 1);
        on_thread(refused, move || drop(other));
        assert_eq!(tagged(addr), refused, "refused = {refused}");
        // Any cache operation sweeps: the dead or closing entry goes, and with it the last reference.
        drop(p.acquire().unwrap());
        assert!(
            !tagged(addr),
            "refused = {refused}: still mapped after the sweep"
        );
    }
}

/// Without a barrier a steal takes nothing: an acquire on a full pool refuses (or would overflow) while another
/// thread's cache holds idle slots; with one it takes them.
#[test]
fn steal_needs_a_barrier() {
    let pool = cached_pool(4, 4);
    let all: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    // Released on another thread, which keeps them in its cache and then blocks.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        drop(all);
        done_tx.send(()).unwrap();
        rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    assert_eq!(pool.stats().cached, 4);
    let refused = on_thread(true, || pool.acquire().map(drop));
    assert!(refused.is_err(), "a steal without a barrier took a slot");
    assert_eq!(pool.stats().cached, 4);
    assert_eq!(pool.stats().reclaimed, 0);
    // Trim without a barrier: only the calling thread's cache (empty) is flushed.
    on_thread(true, || pool.trim());
    assert_eq!(pool.stats().cached, 4);
    // With one, the acquire takes the others' idle slots.
    let got: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    assert!(got.iter().all(|b| !b.is_overflow()));
    assert_eq!(pool.stats().reclaimed, 4);
    drop(got);
    tx.send(()).unwrap();
    holder.join().unwrap();
}

/// The fallback path with foreign code: without a barrier the pool closed elsewhere is freed by this thread's
/// sweep, inside the release of another pool's buffer. Its teardown event panics there; the released slot must
/// still reach home (found by review before reclaim existed, when this was the only way a pool was freed).
#[test]
fn teardown_event_in_a_sweep_without_a_barrier() {
    let p1 = cached_pool(16, 4);
    let b1 = p1.acquire().unwrap();
    let p2 = cached_pool(16, 4);
    let b2 = p2.acquire().unwrap();
    #[cfg(target_os = "linux")]
    tag(&b2);
    #[cfg(target_os = "linux")]
    let addr = b2.as_ptr() as usize;
    drop(b2); // an entry for p2 on this thread, with a reference
    on_thread(true, move || drop(p2)); // this thread's entry now holds p2's last reference
    #[cfg(target_os = "linux")]
    assert!(tagged(addr));
    let r = tracing::subscriber::with_default(PanickingSubscriber("unmapped pool chunks"), || {
        tracing::callsite::rebuild_interest_cache();
        catch_unwind(AssertUnwindSafe(|| drop(b1)))
    });
    // The teardown ran in the release's sweep (p2 is gone), under `foreign_quiet`: the panic stayed there.
    assert!(r.is_ok());
    #[cfg(target_os = "linux")]
    assert!(!tagged(addr));
    let s = p1.stats();
    assert_eq!((s.in_use, s.idle), (0, s.pooled_buffers), "{s:?}");
}

/// A `Wait` pool whose waiter cannot reclaim (no barrier on its thread) waits; the first waiter's flush request
/// then reaches this thread's cache at its next operation, whose owed wake check serves the waiter. That
/// operation is an acquire whose poison check's event panics (foreign code): what the sweep owes is settled all
/// the same (found by review before reclaim existed; ported from `tests/foreign_code.rs`, where the waiter now
/// reclaims instead of waiting).
#[test]
#[cfg(not(pagepool_asan))] // writes to a released buffer on purpose
fn waiter_without_a_barrier_is_served_by_the_flush_request() {
    let p = PagePool::builder()
        .capacity(2)
        .thread_cache(2)
        .max_overflow(0)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let both: Vec<_> = (0..2).map(|_| p.acquire().unwrap()).collect();
    drop(both); // both idle in this thread's cache
    assert_eq!(p.stats().cached, 2);
    // A pool whose most recently cached slot was written after its release: its next acquire's poison check
    // emits "write after release".
    let q = PagePool::builder()
        .capacity(8)
        .thread_cache(4)
        .poison_on_release(true)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let b = q.acquire().unwrap();
    let ptr = b.as_ptr() as *mut u8;
    drop(b);
    // SAFETY: a deliberate write after release: the slot stays mapped while q lives, and nothing holds it.
    unsafe { ptr.write(1) };
    std::thread::scope(|s| {
        let w = s.spawn(|| {
            fault::refuse_barrier(true);
            let a = p
                .acquire_timeout(std::time::Duration::from_secs(60))
                .map(drop);
            let b = p
                .acquire_timeout(std::time::Duration::from_secs(60))
                .map(drop);
            a.is_ok() && b.is_ok()
        });
        let start = std::time::Instant::now();
        while p.stats().waiters != 1 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "never waited"
            );
            std::thread::yield_now();
        }
        // The sweeping operation: q's acquire, whose poison event panics.
        let r =
            tracing::subscriber::with_default(PanickingSubscriber("write after release"), || {
                tracing::callsite::rebuild_interest_cache();
                catch_unwind(AssertUnwindSafe(|| q.acquire().map(drop)))
            });
        assert!(r.is_err(), "the poison check's event did not run");
        assert!(w.join().unwrap(), "the waiter was not served");
    });
    assert_eq!(p.stats().in_use, 0);
}

/// A panicking waker woken by a cache flush (a trim on the thread holding idle slots) where the waiters could
/// not reclaim (no barrier on their thread): the flushed slots' references are given back and the waiter behind
/// the panicking one is served (ported from `tests/foreign_code.rs`).
#[cfg(feature = "async")]
#[test]
fn flush_wakes_a_panicking_waker_without_a_barrier() {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct PanickingWaker(AtomicUsize);
    impl Wake for PanickingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
            std::panic::panic_any("waker panics (on purpose)");
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.clone().wake();
        }
    }
    #[derive(Default)]
    struct Counting(AtomicUsize);
    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    fn poll<F: Future + Unpin>(f: &mut F, w: &Waker) -> Poll<F::Output> {
        std::pin::Pin::new(f).poll(&mut Context::from_waker(w))
    }

    fault::refuse_barrier(true);
    let pool = PagePool::builder()
        .capacity(4)
        .thread_cache(4)
        .max_overflow(0)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let keep = pool.acquire().unwrap();
    let a: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
    let panicky_state = Arc::new(PanickingWaker(AtomicUsize::new(0)));
    std::thread::scope(|s| {
        let (to_t, rx) = std::sync::mpsc::channel::<()>();
        let (tx, from_t) = std::sync::mpsc::channel::<()>();
        let pool = &pool;
        let t = s.spawn(move || {
            drop(a); // into this thread's cache
            tx.send(()).unwrap();
            rx.recv().unwrap();
            pool.trim(); // flushes this thread's cache: the wake-ups follow
        });
        from_t.recv().unwrap();
        let panicky = Waker::from(panicky_state.clone());
        let counting = Arc::new(Counting::default());
        let good = Waker::from(counting.clone());
        let mut first = pool.acquire_async();
        let mut second = pool.acquire_async();
        assert!(poll(&mut first, &panicky).is_pending());
        assert!(poll(&mut second, &good).is_pending());
        to_t.send(()).unwrap();
        t.join().unwrap();
        assert!(
            panicky_state.0.load(SeqCst) > 0,
            "the waker was not woken by the flush"
        );
        // The second waiter was served and woken although the first waker panicked.
        assert_eq!(counting.0.load(SeqCst), 1);
        let Poll::Ready(b1) = poll(&mut first, &good) else {
            panic!("the first waiter has no grant")
        };
        let Poll::Ready(b2) = poll(&mut second, &good) else {
            panic!("the second waiter has no grant")
        };
        drop((b1.unwrap(), b2.unwrap()));
    });
    drop(keep);
    pool.trim();
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiters), (0, 0), "{s:?}");
    fault::refuse_barrier(false);
}
