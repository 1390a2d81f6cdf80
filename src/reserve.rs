//! The overflow reserve: released overflow buffers of the pool's own size, kept mapped for a while
//! ([`PoolBuilder::overflow_decay`](crate::PoolBuilder::overflow_decay)) and handed to the next overflow acquire
//! instead of a fresh `mmap`, then unmapped once they have been idle for longer than the decay.
//!
//! A reserved mapping keeps what it held as a buffer: its overflow permit (so buffers out plus reserved
//! mappings never exceed `max_overflow`), its bytes of budget (`max_bytes`), its locked bytes
//! (`lock_memory`) and the advice and guard pages applied when it was mapped. It holds no reference on the
//! pool: the pool's teardown drops what is left here (dropping an [`OverflowBuf`] unmaps it), and the last
//! handle's drop empties the reserve first (`pool.rs`).
//!
//! Entries are kept in the order they came in: taken newest first (its pages are the likeliest to be warm),
//! unmapped oldest first, so the front is always the longest idle. The list is behind a small spin lock on a
//! `crate::sync` atomic, visible to both loom and ThreadSanitizer (std's `Mutex` is precompiled, so TSan cannot
//! see it order anything); every critical section is a push or pop on a `VecDeque` and no system call or
//! foreign code runs under it.

use crate::overflow::OverflowBuf;
use crate::sync::{AtomicU8, AtomicUsize};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

/// The most mappings one pool's reserve keeps, whatever `max_overflow` allows. A reserve of pool-sized buffers
/// never holds more mappings than the most overflow buffers that were out at once (a mapping enters it only
/// when a buffer is released, and an overflow acquire takes from it before it maps), so this bounds the list
/// and the memory kept, not the mappings the pool uses: `vm.max_map_count` use is what the overflow path
/// already used at its peak.
pub(crate) const RESERVE_MAX: usize = 4096;

#[derive(Debug)]
struct Entry {
    buf: OverflowBuf,
    /// When the buffer came in.
    since: Instant,
}

#[derive(Debug)]
pub(crate) struct Reserve {
    /// The most entries (0: no reserve, released overflow buffers are unmapped at once).
    cap: usize,
    /// How long an entry may stay idle.
    decay: Duration,
    /// The spin lock of `list`: 1 while held.
    locked: AtomicU8,
    list: UnsafeCell<VecDeque<Entry>>,
    /// Entries in `list`; written under the lock.
    len: AtomicUsize,
    /// Bytes the entries reserve from the OS (`Mapping::reserved`); written under the lock.
    bytes: AtomicUsize,
}

// SAFETY: `list` is only reached through `with`, which holds `locked` (Acquire on taking it, Release on giving
// it back), so accesses from different threads never overlap and are ordered. `OverflowBuf` is Send (it owns
// its mapping outright, see `buf.rs`).
unsafe impl Sync for Reserve {}

impl Reserve {
    /// A reserve of at most `cap` entries idle at most `decay` each (`cap == 0` turns it off).
    pub(crate) fn new(cap: usize, decay: Duration) -> Self {
        Reserve {
            cap: if decay.is_zero() { 0 } else { cap },
            decay,
            locked: AtomicU8::new(0),
            list: UnsafeCell::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Whether released buffers are kept at all.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// Entries now. Relaxed: a gauge for `stats()`, and a hint that lets empty-reserve paths skip the lock. A
    /// stale zero there skips a mapping that just came in: the acquire maps a fresh one (and looks again under
    /// the lock if the permits ran out), and the decay check runs again at the next slow path. Waiters do not
    /// depend on it alone: the releaser that puts a mapping here runs the fenced wake check afterwards, and a
    /// waiter's second look comes after its own `SeqCst` fence, which orders this load after the store it must
    /// see (`wait.rs`).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Bytes the entries reserve from the OS. Relaxed: a gauge for `stats()`.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    fn with<R>(&self, f: impl FnOnce(&mut VecDeque<Entry>) -> R) -> R {
        // The failure ordering is Relaxed: a failed attempt reads nothing under the lock, it only retries.
        while self
            .locked
            .compare_exchange_weak(0, 1, Acquire, Relaxed)
            .is_err()
        {
            crate::sync::yield_now();
        }
        // SAFETY: we hold the lock, so no other reference to the list exists until we give it back below.
        let list = unsafe { &mut *self.list.get() };
        let r = f(list);
        // Relaxed: under the lock, which orders the writers; readers outside it use them as gauges and hints
        // (see `len`).
        self.len.store(list.len(), Relaxed);
        self.locked.store(0, Release);
        r
    }

    /// Keeps `buf` (already scrubbed by the caller), or gives it back when the reserve is full. Entries that
    /// have now been idle longer than the decay are moved to `expired`, for the caller to unmap once the lock
    /// is given back.
    pub(crate) fn put(
        &self,
        buf: OverflowBuf,
        expired: &mut Vec<OverflowBuf>,
    ) -> Result<(), OverflowBuf> {
        let reserved = buf.mapping.reserved();
        self.with(|list| {
            let now = Instant::now();
            self.pop_expired(list, Some(now), expired, usize::MAX);
            if list.len() >= self.cap {
                return Err(buf);
            }
            list.push_back(Entry { buf, since: now });
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_add(reserved, Relaxed);
            Ok(())
        })
    }

    /// The most recently reserved buffer, if any.
    pub(crate) fn take(&self) -> Option<OverflowBuf> {
        if self.len() == 0 {
            return None;
        }
        self.with(|list| {
            let e = list.pop_back()?;
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_sub(e.buf.mapping.reserved(), Relaxed);
            Some(e.buf)
        })
    }

    /// The longest-idle buffer, if any (to unmap it for its permit and budget).
    pub(crate) fn take_oldest(&self) -> Option<OverflowBuf> {
        if self.len() == 0 {
            return None;
        }
        self.with(|list| {
            let e = list.pop_front()?;
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_sub(e.buf.mapping.reserved(), Relaxed);
            Some(e.buf)
        })
    }

    /// Moves to `out` the entries idle longer than the decay at `now`, or every entry (`now == None`), until
    /// `out` holds `batch` buffers. An emptied list gives its memory back.
    pub(crate) fn expire(&self, now: Option<Instant>, out: &mut Vec<OverflowBuf>, batch: usize) {
        if self.len() == 0 {
            return;
        }
        self.with(|list| {
            self.pop_expired(list, now, out, batch);
            if list.is_empty() {
                // A burst's list (up to `RESERVE_MAX` entries) is not kept once the burst is over.
                list.shrink_to_fit();
            }
        });
    }

    fn pop_expired(
        &self,
        list: &mut VecDeque<Entry>,
        now: Option<Instant>,
        out: &mut Vec<OverflowBuf>,
        batch: usize,
    ) {
        while out.len() < batch {
            let Some(front) = list.front() else {
                break;
            };
            if now.is_some_and(|n| n.saturating_duration_since(front.since) <= self.decay) {
                break;
            }
            let e = list.pop_front().expect("front exists");
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_sub(e.buf.mapping.reserved(), Relaxed);
            out.push(e.buf);
        }
    }
}

impl Drop for Reserve {
    /// The pool's teardown: the entries' mappings are unmapped as they drop. Idle entries are ASan-poisoned
    /// (`pool.rs`); the shadow is cleaned first, so a later mapping at the same addresses starts clean.
    fn drop(&mut self) {
        for e in self.list.get_mut().iter() {
            crate::sys::unpoison(e.buf.ptr.as_ptr(), e.buf.buf_size);
        }
    }
}
