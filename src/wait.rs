//! Waiting at the pool's limit (`OverflowPolicy::Wait`): the waiter queue and the hand-off protocol.
//!
//! ```text
//!  waiter (acquire_timeout / Acquire future)        releaser (buffer drop, cache flush, overflow unmap)
//!  ─────────────────────────────────────────        ─────────────────────────────────────────────────────
//!  take() fails: at the limit                       count.load(Relaxed) != 0 ?
//!  lock list; push {id, waker}; count += 1            yes: offer(): lock list, pop front waiter,
//!  unlock; fence(SeqCst)                                   granted.push((id, buffer)), unlock, wake it
//!  take() again ── ok: cancel(id) (give back a             (the buffer never becomes visible to others)
//!                  grant that raced in) and return     no / queue already empty:
//!  loop: grant for id? ── yes: turn it into a buffer       make it available (freelist push, depot put,
//!        deadline? ── cancel(id): a grant that raced       permit + budget given back); fence(SeqCst);
//!                     in is used, else Timeout              count.load() != 0 ? serve(): under the lock,
//!        park / Pending                                     take what is available for each front waiter
//! ```
//!
//! The two `SeqCst` fences make the pair "waiter: count += 1, fence, look at the pool" / "releaser: make
//! available, fence, look at count" a Dekker handshake: whatever the interleaving, either the waiter's second
//! look finds the buffer or the releaser's look finds the waiter, which it then serves. So no release is lost
//! while someone waits. A hand-off gives the buffer itself (a slot with its reference, or an overflow permit
//! with its bytes of budget still reserved) to the front waiter under the list lock, so a woken waiter already
//! owns what it was woken for and nobody can overtake it. Cancelling (timeout, future dropped) removes the
//! entry under the same lock; if a grant got there first, a timed-out thread uses it, and a dropped future
//! releases it again, which hands it to the next waiter: a cancelled waiter never swallows a wake-up meant for
//! another one.

use crate::sync::{lock, AtomicUsize, Mutex, Thread};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::task::Waker;

/// What a releaser hands a waiter.
#[derive(Debug)]
pub(crate) enum Grant {
    /// A pooled slot, carrying one reference on `Inner` (like a buffer).
    Slot(u32),
    /// One overflow permit with one overflow buffer's bytes of budget, both still reserved: the waiter maps it.
    Permit,
    /// A mapped overflow buffer of the pool's size (released, or from the reserve), already scrubbed, with its
    /// permit and budget: the waiter wraps it (no system call). No reference: the waiter takes its own.
    Mapping(Box<crate::overflow::OverflowBuf>),
}

/// How to wake a waiter.
#[derive(Debug)]
pub(crate) enum Wake {
    /// A thread parked in `acquire_timeout`.
    Thread(Thread),
    /// A task awaiting an `Acquire` future.
    Task(Waker),
}

impl Wake {
    /// Wakes the waiter. A task's waker is foreign code, reached from buffer drops too: its panic is caught
    /// and dropped ([`crate::sync::foreign_quiet`]), and the grant it was woken for is already recorded.
    fn wake(self) {
        match self {
            Wake::Thread(t) => t.unpark(),
            Wake::Task(w) => crate::sync::foreign_quiet(|| w.wake()),
        }
    }
}

#[derive(Debug)]
struct Queued {
    id: u64,
    wake: Wake,
}

#[derive(Debug, Default)]
struct List {
    next_id: u64,
    /// Waiters in arrival order; the front one is served first.
    queue: VecDeque<Queued>,
    /// Grants handed to waiters that have not collected them yet.
    granted: Vec<(u64, Grant)>,
}

/// The waiter queue of one pool. Only `count` is read outside the lock (by every release, `Relaxed`); the list
/// is touched only while someone waits.
#[derive(Debug)]
pub(crate) struct Waiters {
    /// Entries in `list.queue`; changed only under the lock.
    count: AtomicUsize,
    list: Mutex<List>,
}

impl Waiters {
    pub(crate) fn new() -> Self {
        Waiters {
            count: AtomicUsize::new(0),
            list: Mutex::new(List::default()),
        }
    }

    /// Whether anyone is queued (a hint, exact only after a `SeqCst` fence that follows the caller's release).
    ///
    /// Relaxed: the releaser's `SeqCst` fence (`Inner::after_release`) comes between making a buffer available
    /// and this load, and the waiter's fence between its `SeqCst` increment and its second look; of two `SeqCst`
    /// fences one precedes the other, so either this load sees the waiter or the waiter's look sees the buffer.
    /// On the release fast path (no fence yet) a zero sends the buffer the usual way: to the freelist, which is
    /// followed by that fenced check, or into this thread's cache, which the first waiter asks every thread to
    /// flush (`Inner::request_trim`: trim epoch, then the `Release` sweep-epoch bump). A thread whose sweep
    /// reads that request also sees this waiter counted (or already gone), so its later releases bypass the
    /// cache; the release that ran the sweep looks again after it (`cache::release`). A non-zero value is
    /// re-checked under the list lock.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Relaxed) != 0
    }

    /// Waiters queued now. Relaxed: a gauge for `stats()`.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// Queues a waiter and fences; the caller must look at the pool once more afterwards. Returns its id and
    /// whether it is the only waiter (so the caller asks thread caches to flush).
    pub(crate) fn register(&self, wake: Wake) -> (u64, bool) {
        let mut l = lock(&self.list);
        let id = l.next_id;
        l.next_id += 1;
        l.queue.push_back(Queued { id, wake });
        let before = self.count.fetch_add(1, SeqCst);
        drop(l);
        // The waiter's half of the handshake: the count is visible before the pool is looked at again.
        crate::sync::fence(SeqCst);
        (id, before == 0)
    }

    /// The grant for `id`, if one arrived; otherwise records `waker` (when given) as the one to wake.
    pub(crate) fn poll(&self, id: u64, waker: Option<&Waker>) -> Option<Grant> {
        let mut l = lock(&self.list);
        if let Some(p) = l.granted.iter().position(|(g, _)| *g == id) {
            return Some(l.granted.swap_remove(p).1);
        }
        let w = waker?;
        // `will_wake` compares pointers; cloning and dropping a waker run foreign code (which may even release a
        // buffer into this pool, whose hand-off takes this lock): both happen outside the lock.
        let stale = l
            .queue
            .iter()
            .any(|q| q.id == id && !matches!(&q.wake, Wake::Task(cur) if cur.will_wake(w)));
        drop(l);
        if !stale {
            return None;
        }
        let new = w.clone();
        let mut l = lock(&self.list);
        if let Some(p) = l.granted.iter().position(|(g, _)| *g == id) {
            let g = l.granted.swap_remove(p).1;
            drop(l);
            crate::sync::foreign_quiet(|| drop(new));
            return Some(g);
        }
        let old = l
            .queue
            .iter_mut()
            .find(|q| q.id == id)
            .map(|q| std::mem::replace(&mut q.wake, Wake::Task(new)));
        drop(l);
        crate::sync::foreign_quiet(|| drop(old));
        None
    }

    /// Withdraws waiter `id`. Returns the grant that reached it first, if any: the caller uses it or releases it
    /// again (which hands it to the next waiter).
    pub(crate) fn cancel(&self, id: u64) -> Option<Grant> {
        let mut l = lock(&self.list);
        if let Some(p) = l.queue.iter().position(|q| q.id == id) {
            let entry = l.queue.remove(p);
            // Relaxed (as in `offer` and `serve`): changed under the list lock, which orders the writers. A
            // reader outside the lock that still sees the old value finds a waiter that has left: it takes the
            // lock, finds the queue empty and falls back to the freelist and the fenced check. Only the
            // increment (`register`, `SeqCst`) is part of the handshake.
            self.count.fetch_sub(1, Relaxed);
            drop(l);
            // Its waker is dropped outside the lock, as in `poll` (and may run in a drop: quietly).
            crate::sync::foreign_quiet(|| drop(entry));
            return None;
        }
        let p = l.granted.iter().position(|(g, _)| *g == id)?;
        Some(l.granted.swap_remove(p).1)
    }

    /// Hands `grant` to the front waiter and wakes it, or gives it back if nobody is queued.
    pub(crate) fn offer(&self, grant: Grant) -> Result<(), Grant> {
        let mut l = lock(&self.list);
        let Some(q) = l.queue.pop_front() else {
            return Err(grant);
        };
        // Relaxed: under the list lock; see `cancel`.
        self.count.fetch_sub(1, Relaxed);
        l.granted.push((q.id, grant));
        drop(l);
        q.wake.wake();
        Ok(())
    }

    /// Serves queued waiters, front first, with whatever `take` finds available (called under the list lock,
    /// so `take` must not block or call the OS), until the queue or the supply runs out.
    ///
    /// Each grant is recorded before its waiter is woken, outside the lock. A waker is foreign code: its panic
    /// is caught and dropped in `Wake::wake`, so the others are still served and woken (a panic in the middle
    /// would leave what is available on the pool while later waiters wait on).
    pub(crate) fn serve(&self, mut take: impl FnMut() -> Option<Grant>) {
        loop {
            let mut l = lock(&self.list);
            let Some(q) = l.queue.pop_front() else {
                break;
            };
            let Some(grant) = take() else {
                l.queue.push_front(q);
                break;
            };
            // Relaxed: under the list lock; see `cancel`.
            self.count.fetch_sub(1, Relaxed);
            l.granted.push((q.id, grant));
            drop(l);
            // A waker's panic never escapes `wake` (it is caught there), so every served waiter is woken.
            q.wake.wake();
        }
    }
}
