//! Releases: a pooled slot back to the thread cache, a waiter or the freelist (`Inner::release` and its slow
//! paths), an overflow buffer back to a waiter, the overflow reserve or the OS, and the unmapping of reserved
//! buffers (decay, trim, close, eviction).

use crate::cache;
use crate::overflow::{Overflow, OverflowBuf};
use crate::shared::{Inner, Ref};
use crate::wait::Grant;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

impl Inner {
    /// Returns a pooled slot (and its reference) that a buffer held.
    ///
    /// # Safety
    /// The caller owns the slot and one reference, and does not touch `this` afterwards.
    #[inline]
    pub(crate) unsafe fn release(this: NonNull<Inner>, slot: u32, ptr: NonNull<u8>) {
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { this.as_ref() };
        // No `is_closing` load here: a cache refuses entries for a closing pool, and every cache operation
        // first sweeps away the entries of pools closed since its last look (`cache.rs`). The one shared word
        // read is the waiter count, written only when a waiter comes or goes, and only by `Wait` pools (the
        // flag beside `cache_size` is never written, and keeps the other pools' loom models unchanged).
        // (No `cache_size > 0` test: a pool without caches never has a cache entry, so `push` refuses.)
        if !(inner.waitable && inner.waiters.any()) {
            if let Err(c) = cache::push(this, cache::Cached { slot, ptr }) {
                // SAFETY: forwarded from our caller.
                unsafe { Inner::release_slow(this, c) };
            }
            return;
        }
        // SAFETY: forwarded from our caller.
        unsafe { Inner::release_slow(this, cache::Cached { slot, ptr }) };
    }

    /// `release` past the thread cache's hit path: to a waiter, through the full cache path (sweep, entry
    /// lookup, flush), or to the shared freelist. Out of line so that dropping a buffer inlines.
    ///
    /// # Safety
    /// As for [`Inner::release`].
    #[cold]
    #[inline(never)]
    unsafe fn release_slow(this: NonNull<Inner>, c: cache::Cached) {
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { this.as_ref() };
        if inner.waitable && inner.waiters.any() {
            // SAFETY: forwarded from our caller.
            unsafe { Inner::release_to_waiter(this, c.slot) };
            return;
        }
        let cached = inner.cache_size > 0;
        if cached && cache::release(this, c) {
            // The slot is home in the cache: settle what the cache operation owes (a flush's wake check, a
            // closed pool's entry).
            cache::settle();
            return;
        }
        // SAFETY: the buffer's reference, passed on to the guard (released even if a waker panics below).
        let r = unsafe { Ref::adopt(this) };
        inner.free.push(c.slot);
        if inner.waitable {
            // The books balance (the slot is on the freelist, its reference with `r`): foreign code may run.
            inner.after_release();
        }
        drop(r);
        if cached {
            // A cache operation that refused the slot (closing pool, a waiter seen after its sweep) may still
            // have swept and owe something.
            cache::settle();
        }
    }

    /// `release` while someone waits: bypass the thread cache and hand the slot (with its reference) to the
    /// front waiter, or, if the queue emptied meanwhile, put it on the freelist and run the wake check.
    ///
    /// # Safety
    /// As for [`Inner::release`].
    #[cold]
    #[inline(never)]
    unsafe fn release_to_waiter(this: NonNull<Inner>, slot: u32) {
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { this.as_ref() };
        // The grant carries the buffer's reference to the waiter; a waker that panics in `offer` does so after
        // the hand-off is recorded.
        if inner.waiters.offer(Grant::Slot(slot)).is_ok() {
            return;
        }
        // SAFETY: the buffer's reference, passed on to the guard (released even if a waker panics below).
        let r = unsafe { Ref::adopt(this) };
        inner.free.push(slot);
        inner.after_release();
        drop(r);
    }

    /// Takes back a released overflow buffer and drops its reference: hands it to the front waiter, keeps it
    /// in the reserve, or unmaps it.
    ///
    /// # Safety
    /// As for [`Inner::release`].
    pub(crate) unsafe fn release_overflow(this: NonNull<Inner>, b: Box<OverflowBuf>) {
        // SAFETY: the buffer's reference, passed on to the guard: released at the end, or if a waker or a
        // subscriber panics on the way.
        let r = unsafe { Ref::adopt(this) };
        r.inner().return_mapping(b, false);
        drop(r);
    }

    /// Takes back an overflow buffer's mapping with the permit and budget it holds (`scrubbed`: already scrubbed
    /// for the reserve): hands it to the front waiter or keeps it in the reserve when it is of the pool's size
    /// and the reserve is on, else unmaps it as without a reserve. Needs a caller that holds a reference.
    pub(crate) fn return_mapping(&self, mut b: Box<OverflowBuf>, scrubbed: bool) {
        if !self.overflow.reserve.enabled()
            || b.buf_size != self.arena.layout().buf_size
            || self.is_closing()
        {
            return self.unmap_overflow(b, scrubbed);
        }
        if !scrubbed {
            // Before the buffer can wait anywhere: a secret never waits in the reserve (`zero_on_release`), and
            // a write after release is caught at the next acquire (`poison_on_release`).
            if self.scrub != 0 {
                self.mem.on_release(b.ptr, b.buf_size);
            }
            crate::sys::poison(b.ptr.as_ptr(), b.buf_size);
        }
        if self.waitable && self.waiters.any() {
            // The grant carries the mapping, its permit and its budget; a waker that panics in `offer` does so
            // after the hand-off is recorded.
            match self.waiters.offer(Grant::Mapping(b)) {
                Ok(()) => return,
                Err(Grant::Mapping(m)) => b = m,
                Err(_) => unreachable!("offer gives back the grant it was given"),
            }
        }
        let mut expired = Vec::new();
        let refused = self.overflow.reserve.put(b, &mut expired).err();
        // The buffer is in the reserve (or back with us), the expired ones are out of it: no foreign code has
        // run, and none runs until every permit and byte is where the counts say.
        let kept = refused.is_none();
        if kept && self.is_closing() {
            // The last handle went while we put it: its emptying of the reserve may have come before our put
            // (the reserve's lock orders the two: if it did, this load sees CLOSING), so empty it ourselves.
            self.unmap_expired(expired, "decay");
            self.unmap_reserved(None, "close");
            return;
        }
        if let Some(b) = refused {
            // The reserve is full: the pool's own overflow bound (`max_overflow`) or `RESERVE_MAX`.
            self.unmap_overflow(b, true);
        }
        if kept && self.waitable {
            // A mapping became available: a waiter that looked before it came in must hear of it.
            self.after_release();
        }
        self.unmap_expired(expired, "decay");
    }

    /// Unmaps an overflow buffer as without a reserve: its permit and budget go to a waiter or back to the pool,
    /// then the event.
    #[allow(clippy::boxed_local)] // the buffer's box, opened here to unmap it
    fn unmap_overflow(&self, b: Box<OverflowBuf>, scrubbed: bool) {
        let (budget, reserved) =
            self.overflow
                .unmap_keep_permit(*b, &self.counters, &self.mem, scrubbed);
        self.give_back_permit(budget);
        // The mapping is gone and its permit passed on: the books balance.
        Overflow::unmapped_event(reserved);
    }

    /// Unmaps the reserved buffers idle longer than the decay at `now` (every one with `now == None`) and gives
    /// back their permits and budget, in batches of [`UNMAP_BATCH`] (no allocation that grows with the reserve).
    /// Returns the bytes unmapped. Needs a caller that holds a reference.
    ///
    /// A close (`why == "close"`) looks under the reserve's lock even when its length gauge reads 0: the close
    /// sets `CLOSING` and then looks here, a release puts its mapping here and then looks at `CLOSING`
    /// (`return_mapping`), and with a relaxed gauge on one side each could miss the other's write (loom
    /// `close_races_release_into_reserve`). The lock orders the two: the release's put comes before the close's
    /// look, or after it and so after `CLOSING`.
    pub(crate) fn unmap_reserved(&self, now: Option<Duration>, why: &'static str) -> usize {
        let close = why == "close";
        if !close && self.overflow.reserve.len() == 0 {
            return 0;
        }
        let mut batch = Vec::with_capacity(UNMAP_BATCH);
        let (mut n, mut bytes) = (0, 0);
        loop {
            self.overflow
                .reserve
                .expire(now, &mut batch, UNMAP_BATCH, close);
            if batch.is_empty() {
                break;
            }
            n += batch.len();
            bytes += self.unmap_batch(&mut batch, why);
        }
        Self::reserve_unmapped_event(n, bytes, why);
        bytes
    }

    /// Unmaps reserved buffers taken out of the reserve (`why`: "decay", "trim", "close", "evict"), then the
    /// event. Returns the bytes unmapped.
    #[allow(clippy::vec_box)] // the reserve's entries keep their buffers' boxes (a reuse allocates nothing)
    fn unmap_expired(&self, mut bufs: Vec<Box<OverflowBuf>>, why: &'static str) -> usize {
        if bufs.is_empty() {
            return 0;
        }
        let n = bufs.len();
        let bytes = self.unmap_batch(&mut bufs, why);
        Self::reserve_unmapped_event(n, bytes, why);
        bytes
    }

    /// Unmaps (and empties) `bufs`, taken out of the reserve, and gives back their permits and budget all at
    /// once, then runs the wake check: no foreign code runs while any of them is out of the reserve with its
    /// permit still counted. Returns the bytes unmapped.
    #[allow(clippy::vec_box)] // see `unmap_expired`
    fn unmap_batch(&self, bufs: &mut Vec<Box<OverflowBuf>>, why: &'static str) -> usize {
        let n = bufs.len();
        let (mut budget, mut bytes) = (0, 0);
        for b in bufs.drain(..) {
            let (bu, r) = self
                .overflow
                .unmap_keep_permit(*b, &self.counters, &self.mem, true);
            budget += bu;
            bytes += r;
        }
        if why == "decay" {
            // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
            self.counters.decay_unmaps.fetch_add(n as u64, Relaxed);
        }
        self.overflow.return_permits(n);
        self.budget.give_back(budget);
        self.overflow.reserve.unmapped(n);
        // The mappings are gone and their permits and bytes back: the books balance.
        if self.waitable {
            self.after_release();
        }
        bytes
    }

    /// The debug event of `n` reserved buffers (`bytes` reserved bytes) unmapped, emitted once the books balance.
    fn reserve_unmapped_event(n: usize, bytes: usize, why: &'static str) {
        if n == 0 {
            return;
        }
        // A buffer's release may run the decay (possibly in a thread-local destructor): quietly.
        crate::sync::foreign_quiet(
            || tracing::debug!(target: "pagepool", buffers = n, bytes, why, "unmapped reserved overflow buffers"),
        );
    }

    /// Unmaps the longest-idle reserved buffer to free its permit and budget for another mapping (a chunk or
    /// an `acquire_len` buffer above the pool's size). Returns whether there was one.
    pub(crate) fn evict_one(&self) -> bool {
        match self.overflow.reserve.take_oldest() {
            Some(b) => {
                self.unmap_expired(vec![b], "evict");
                true
            }
            None => false,
        }
    }
}

/// Reserved buffers unmapped per batch by `Inner::unmap_reserved`.
const UNMAP_BATCH: usize = 32;
