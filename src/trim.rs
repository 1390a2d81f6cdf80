//! The trim policy: giving the physical memory of idle pooled buffers back to the OS (`PagePool::trim`, the
//! idle-trim clock of `idle_trim_after`, the overflow reserve's decay check) and retrying the recommit of
//! ranges a trim held out.

use crate::cache;
use crate::depot::Depot;
use crate::pool::PagePool;
use crate::shared::Inner;
use crate::sys::DiscardError;
use crate::LockPolicy;

impl Inner {
    /// The decay check of the slow paths: one relaxed load when the reserve is empty.
    #[inline]
    pub(crate) fn decay_tick(&self) {
        if self.overflow.reserve.len() != 0 {
            self.unmap_reserved(Some(crate::sys::coarse_clock()), "decay");
        }
    }

    /// Idle buffers in the shared pool: the freelist and the depot (not thread caches).
    fn shared_idle(&self) -> usize {
        self.free.len() + self.depot.as_ref().map_or(0, Depot::idle)
    }

    /// Feeds the idle-trim clock after the shared idle count may have dropped (a slow-path pop), and trims
    /// if a period just ended. A no-op without `idle_trim_after`.
    /// Also runs the overflow reserve's decay check.
    #[inline]
    pub(crate) fn idle_tick(&self) {
        if let Some(t) = &self.mem.idle {
            if let Some(n) = t.tick(self.shared_idle()) {
                self.trim_shared(n, "idle");
            }
        }
        self.decay_tick();
    }

    /// Gives the physical memory of up to `n` idle shared buffers back to the OS (most recently released first:
    /// the freelist is a stack) and puts them back at the freelist's cold end, where they are reused only after
    /// every resident idle buffer, so the next period's demand is served from memory that is still resident.
    /// Returns the bytes given back. Locked pools are never trimmed, nor pools whose
    /// memory is registered (the discard gate is closed; see `gate.rs`).
    ///
    /// The buffers being trimmed are out of the freelist until the trim ends (owned by this call, so nobody sees their
    /// memory change); an acquire that finds the shared pool empty in that window takes the overflow path.
    ///
    /// First, ranges that an earlier trim could not commit again are retried (even with `n == 0`: an idle-trim
    /// period that ended with nothing idle still retries them). A range whose recommit fails now is held out
    /// (`uncommitted.rs`) instead of going back to the freelist; its bytes count as given back (they were).
    fn trim_shared(&self, n: usize, why: &'static str) -> usize {
        if self.mem.lock != LockPolicy::Off {
            return 0;
        }
        // Before this trim's own discards, so a range held out below waits for the next occasion.
        self.retry_uncommitted();
        if n == 0 {
            return 0;
        }
        if self.discard_gate.is_closed() {
            // Nothing changed: the state is as consistent as it was when we were called.
            tracing::debug!(
                target: "pagepool",
                why,
                idle = n,
                "trim gave nothing back: trimming is disabled by io_uring registration (iovecs), because \
                 registered memory is never discarded"
            );
            return 0;
        }
        // Magazines in the depot count as idle too: move them to the freelist.
        if let Some(d) = &self.depot {
            let mut mag = Vec::new();
            while self.free.len() < n && d.take(self.free.links(), &mut mag) {
                mag.drain(..).for_each(|s| self.free.push(s));
            }
        }
        let l = self.arena.layout();
        let mut bytes = 0;
        let mut left = n;
        let mut batch = Vec::with_capacity(256);
        // Trimmed slots, pushed back (to the cold end of the freelist, reused after resident buffers) once the
        // trim is done: pushed earlier, a later batch would pop and count them again.
        let mut trimmed = Vec::new();
        let mut failed = None;
        // Slots held out because their recommit failed, and the first such error.
        let (mut held_out, mut uncommitted) = (0, None);
        let mut registered = false;
        while left > 0 && failed.is_none() && !registered {
            let given = bytes;
            batch.clear();
            while batch.len() < left.min(256) {
                match self.free.pop() {
                    Some(s) => batch.push(s),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            left -= batch.len();
            // The pass covers the discards of this batch only: `iovecs` closing the gate waits for it, and it
            // must not wait for the pushes and wakes below.
            match self.discard_gate.enter() {
                None => registered = true,
                Some(_pass) => {
                    batch.sort_unstable();
                    // Runs of consecutive slots of one chunk are one range when nothing (no guard) lies between
                    // them.
                    let mut i = 0;
                    while i < batch.len() {
                        let start = i;
                        let first = batch[i];
                        let mut last = first;
                        while l.lead == 0
                            && i + 1 < batch.len()
                            && batch[i + 1] == last + 1
                            && (batch[i + 1] >> l.chunk_shift) == (first >> l.chunk_shift)
                        {
                            i += 1;
                            last = batch[i];
                        }
                        i += 1;
                        let len = (last - first) as usize * l.stride + l.buf_size;
                        #[cfg(loom)]
                        self.discard_gate.count_discard();
                        match crate::sys::discard(self.arena.slot_ptr(first), len) {
                            Ok(()) => bytes += len,
                            // Still committed and usable: back to the freelist with the rest of the batch.
                            Err(DiscardError::Kept(e)) => {
                                failed = Some(e);
                                break;
                            }
                            // Given back, but unusable until recommitted: held out, never pushed below.
                            Err(DiscardError::Uncommitted(e)) => {
                                bytes += len;
                                self.uncommitted.hold(first..last + 1);
                                batch[start..i].fill(HELD_OUT);
                                held_out += i - start;
                                uncommitted.get_or_insert(e);
                            }
                        }
                    }
                }
            }
            trimmed.extend(batch.iter().filter(|&&s| s != HELD_OUT));
            if bytes > given {
                self.mem.trimmed(bytes - given);
            }
        }
        trimmed.into_iter().for_each(|s| self.free.push_cold(s));
        // Every slot is back (or held out) and counted: foreign code (a waker, a subscriber) may run from here.
        if self.waitable && n > left {
            // The batches were invisible to a waiter's look while we held them.
            self.after_release();
        }
        // Every slot is back in the freelist or held out, and counted: only now run foreign code.
        if let Some(error) = failed {
            tracing::warn!(target: "pagepool", error = %error, "trim: the OS refused to take idle memory back");
        }
        if let Some(error) = uncommitted {
            tracing::warn!(
                target: "pagepool",
                buffers = held_out,
                uncommitted = self.uncommitted.slots(),
                error = %error,
                "trim: the OS could not commit trimmed memory again; those buffers stay out of the pool until a \
                 later recommit succeeds"
            );
        }
        if bytes > 0 {
            tracing::debug!(target: "pagepool", bytes, why, "trimmed idle pooled memory");
        }
        if registered {
            tracing::debug!(
                target: "pagepool",
                why,
                bytes,
                "trim stopped: trimming is disabled by io_uring registration (iovecs), because registered \
                 memory is never discarded"
            );
        }
        bytes
    }

    /// Retries the recommit of the ranges earlier trims held out, returning those that succeed to the freelist
    /// (and to waiters). Returns how many buffers came back. One relaxed load when nothing is held out.
    ///
    /// Called at every trim (explicit or idle period) and by an acquire that found the shared pool empty, before
    /// it maps a chunk or takes the overflow path; under lasting commit pressure each such call makes one failed
    /// system call per held range.
    pub(crate) fn retry_uncommitted(&self) -> usize {
        if self.uncommitted.slots() == 0 {
            return 0;
        }
        let r = self.uncommitted.retry(&self.arena, &self.free);
        if r.returned > 0 && self.waitable {
            // The slots were invisible to a waiter's look while held out.
            self.after_release();
        }
        // The slots are in the freelist or held out again, and counted: only now run foreign code.
        if r.returned > 0 {
            tracing::info!(
                target: "pagepool",
                buffers = r.returned,
                uncommitted = r.held,
                "recommitted buffers a trim had held out; back in the pool"
            );
        }
        if let Some(error) = r.error {
            // Not a warning: this repeats on every retry while the pressure lasts; the trim that held the
            // memory out warned once.
            tracing::debug!(target: "pagepool", uncommitted = r.held, error = %error, "recommit failed again");
        }
        r.returned
    }
}

/// Marks a batch entry of `trim_shared` whose range was held out: never a slot index (`MAX_CAPACITY` keeps
/// `u32::MAX` free as a sentinel).
const HELD_OUT: u32 = u32::MAX;

impl PagePool {
    /// Gives idle memory back: takes idle buffers out of every thread's cache to the shared freelist (at once;
    /// each thread also shrinks its adaptive cache at its next pool operation; without a process-wide barrier,
    /// see [`thread_cache`](crate::PoolBuilder::thread_cache), other threads' caches flush only then), then
    /// returns the physical
    /// memory of every idle buffer in the shared pool to the OS (`MADV_DONTNEED` on unix, which lowers RSS at
    /// once; `MEM_DECOMMIT` and a fresh `MEM_COMMIT` on Windows). Returns the bytes given back.
    ///
    /// The buffers stay in the pool: the next use of one faults in fresh zeroed pages. Chunks stay mapped
    /// (address space, no memory), so the freelist never names unmapped memory. On Windows, a range whose
    /// `MEM_COMMIT` fails after the decommit (commit pressure) is held out instead of returning to the pool
    /// (counted in [`PoolStats::uncommitted`](crate::PoolStats::uncommitted), reported with a `warn!`): it is
    /// never handed out uncommitted.
    /// Each `trim` first retries the commit of buffers held out earlier and returns those that succeed. Memory
    /// locked by [`lock_memory`](crate::PoolBuilder::lock_memory) is not given back. While `trim` works, the buffers it
    /// holds are briefly unavailable: an acquire that finds the shared pool empty meanwhile overflows.
    /// `trim` also empties the overflow reserve ([`overflow_decay`](crate::PoolBuilder::overflow_decay)): every
    /// released overflow buffer kept mapped for reuse is unmapped, and its bytes count in the return value.
    ///
    /// Once the pool's buffers are registered with io_uring (`iovecs`, cargo feature `io-uring`), `trim` still
    /// flushes the thread caches but gives no memory back: registered memory is never discarded, because the
    /// kernel would keep using the old pages. It then returns 0 and logs a `debug` event (target `pagepool`)
    /// saying that trimming is disabled by registration.
    ///
    /// Use it after a burst, on short-lived worker threads, or before reading [`stats`](Self::stats) when an
    /// exact count of the shared freelist matters. [`idle_trim_after`](crate::PoolBuilder::idle_trim_after)
    /// does the same for memory idle longer than a period, without being asked.
    ///
    /// # Examples
    /// ```
    /// let pool = pagepool::PagePool::builder().capacity(64).thread_cache(8).build().unwrap();
    /// drop(pool.acquire().unwrap()); // the buffer rests in this thread's cache
    /// assert_eq!(pool.stats().cached, 1);
    /// pool.trim();
    /// assert_eq!(pool.stats().cached, 0);
    /// ```
    pub fn trim(&self) -> usize {
        if !self.handle.classes.is_empty() {
            return self.handle.classes.iter().map(PagePool::trim).sum();
        }
        let inner = self.inner();
        inner.request_trim();
        cache::flush_local(self.handle.inner);
        cache::settle();
        // The idle slots of other threads' caches too, now (their threads also shrink their caches at their
        // next pool operation, by the request above).
        cache::reclaim(inner, cache::Reclaim::Steal);
        inner.trim_shared(inner.shared_idle(), "trim") + inner.unmap_reserved(None, "trim")
    }

    /// Runs the [`idle_trim_after`](crate::PoolBuilder::idle_trim_after) check now: if a trim period has ended,
    /// gives back the memory of the buffers that stayed idle in the shared pool through all of it. Returns the
    /// bytes given back (0 if no period ended, or without `idle_trim_after`).
    ///
    /// Also unmaps the overflow buffers that have waited in the overflow reserve for longer than the
    /// [`overflow_decay`](crate::PoolBuilder::overflow_decay) (their bytes count in the return value).
    ///
    /// The pool makes this check itself on its slow paths; call this from a timer of your own when the pool
    /// may go quiet (no thread of the pool's own does). Like [`trim`](Self::trim), it gives nothing back once
    /// the pool is registered with io_uring (`iovecs`).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = pagepool::PagePool::builder()
    ///     .capacity(64)
    ///     .thread_cache(0)
    ///     .idle_trim_after(Duration::from_millis(10))
    ///     .build()
    ///     .unwrap();
    /// let bufs: Vec<_> = (0..64).map(|_| pool.acquire().unwrap()).collect();
    /// drop(bufs);
    /// std::thread::sleep(Duration::from_millis(20));
    /// pool.trim_idle(); // ends the period in which the buffers were busy
    /// std::thread::sleep(Duration::from_millis(20));
    /// // All 64 stayed idle through the next period: their memory goes back to the OS.
    /// assert_eq!(pool.trim_idle(), 64 * pool.buf_size());
    /// ```
    pub fn trim_idle(&self) -> usize {
        if !self.handle.classes.is_empty() {
            return self.handle.classes.iter().map(PagePool::trim_idle).sum();
        }
        let inner = self.inner();
        let pooled = match &inner.mem.idle {
            Some(t) => t
                .tick(inner.shared_idle())
                .map_or(0, |n| inner.trim_shared(n, "idle")),
            None => 0,
        };
        pooled + inner.unmap_reserved(Some(crate::sys::coarse_clock()), "decay")
    }
}
