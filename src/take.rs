//! The acquire ladder of [`PagePool`]: the thread cache, the shared freelist and the depot, a new chunk, the
//! overflow reserve and a fresh overflow mapping; waiting at the limit (`acquire_timeout`, the waiter's half of
//! the wake handshake) and turning grants into buffers.

use crate::arena::Grow;
use crate::buf::AlignedBuf;
use crate::cache;
use crate::error::AcquireError;
use crate::overflow::{Overflow, OverflowBuf};
use crate::pool::PagePool;
use crate::shared::Inner;
use crate::wait::{Grant, Wake};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

impl PagePool {
    /// Takes a buffer. Never blocks.
    ///
    /// Served from the freelist when a pooled buffer is idle (one lock-free pop, no system call, no allocation);
    /// otherwise by mapping the next chunk of pooled memory if the pool has not reached its capacity; otherwise by the
    /// overflow policy: [`OverflowPolicy::Map`](crate::OverflowPolicy::Map) takes a buffer from the overflow reserve or
    /// maps a buffer's pages directly (kept for reuse or unmapped on drop, see
    /// [`overflow_decay`](crate::PoolBuilder::overflow_decay)), [`OverflowPolicy::Fail`](crate::OverflowPolicy::Fail)
    /// refuses.
    ///
    /// # Errors
    /// - [`AcquireError::Exhausted`] when every pooled buffer is out and the policy is `Fail`, or
    ///   `max_overflow` overflow buffers are already out. Nothing changes but the `exhausted` counter.
    /// - [`AcquireError::Os`] when the OS refuses to map a chunk or an overflow buffer. The pool stays
    ///   consistent and usable.
    ///
    /// # Examples
    /// ```
    /// use pagepool::{AcquireError, OverflowPolicy, PagePool};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PagePool::builder().capacity(1).overflow(OverflowPolicy::Fail).build()?;
    /// let held = pool.acquire()?;
    /// assert!(matches!(pool.acquire(), Err(AcquireError::Exhausted { .. })));
    /// drop(held);
    /// assert!(pool.acquire().is_ok());
    /// # Ok(()) }
    /// ```
    #[inline]
    #[must_use = "an unused acquire takes a buffer (or fails) and gives it straight back"]
    pub fn acquire(&self) -> Result<AlignedBuf, AcquireError> {
        if let Some(c) = cache::pop(self.handle.inner) {
            return Ok(self.buf_at(c.slot, c.ptr));
        }
        self.acquire_cached_miss()
    }

    /// `acquire` when the thread cache's hit path did not serve: the full cache path (sweep, entry lookup,
    /// refill), then the shared freelist and beyond.
    #[cold]
    #[inline(never)]
    fn acquire_cached_miss(&self) -> Result<AlignedBuf, AcquireError> {
        let inner = self.inner();
        if inner.cache_size > 0 {
            if let Some(c) = cache::acquire(self.handle.inner) {
                return Ok(self.cached_buf(c));
            }
            // Nothing cached: what the cache operation's sweep owes is settled before going on.
            cache::settle();
        }
        self.acquire_slow()
    }

    /// Takes a buffer of at least `len` bytes: from the smallest size class that fits (its `len()` and `capacity()` are
    /// the class size: it starts full, like `acquire`'s; see
    /// [`PoolBuilder::size_classes`](crate::PoolBuilder::size_classes)), or, above the largest class (or above
    /// `buf_size` in a single-size pool), from the overflow path: a mapping of `len` rounded up to the page size (its
    /// `len()` and `capacity()`), unmapped on drop, under the largest class's overflow policy and `max_overflow`.
    /// `acquire_len(0)` is the smallest class. Never blocks.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), for the chosen class; [`AcquireError::Os`] also when `len` rounded up to
    /// the page size overflows `usize` (its source is of kind `InvalidInput`: no OS call was made), and when the
    /// OS cannot map that many bytes (a length that fits in `usize` but not in the address space: the OS
    /// error's kind, `OutOfMemory` for `ENOMEM`).
    ///
    /// # Examples
    /// ```
    /// use pagepool::PagePool;
    /// let pool = PagePool::builder().size_class_ladder(4096, 65536).capacity(8).build().unwrap();
    /// assert_eq!(pool.acquire_len(1).unwrap().len(), 4096);
    /// assert_eq!(pool.acquire_len(4097).unwrap().len(), 8192);
    /// let big = pool.acquire_len(100_000).unwrap();
    /// assert!(big.is_overflow() && big.len() >= 100_000);
    /// ```
    #[must_use = "an unused acquire takes a buffer (or fails) and gives it straight back"]
    pub fn acquire_len(&self, len: usize) -> Result<AlignedBuf, AcquireError> {
        let classes = &self.handle.classes;
        if classes.is_empty() {
            return if len <= self.buf_size() {
                self.acquire()
            } else {
                self.acquire_oversize(len)
            };
        }
        match classes.iter().find(|c| c.buf_size() >= len) {
            Some(c) => c.acquire(),
            None => classes[classes.len() - 1].acquire_oversize(len),
        }
    }

    /// The overflow path for a request above every pooled size.
    #[cold]
    fn acquire_oversize(&self, len: usize) -> Result<AlignedBuf, AcquireError> {
        let inner = self.inner();
        let Some(bytes) = len.checked_next_multiple_of(crate::sys::page_size()) else {
            // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
            inner.counters.os_errors.fetch_add(1, Relaxed);
            return Err(AcquireError::Os {
                bytes: len,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "requested length overflows the address space",
                ),
            });
        };
        let Some(reserve) = inner.overflow.reserve_bytes_for(bytes) else {
            // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
            inner.counters.os_errors.fetch_add(1, Relaxed);
            return Err(AcquireError::Os {
                bytes,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "requested length overflows the address space",
                ),
            });
        };
        // A permit and the buffer's bytes of budget, both or neither (as `Inner::reserve_overflow`). Reserved
        // buffers (of the pool's size, never this one's) hold permits and budget of their own: while the pool
        // is at its limit, they are unmapped, longest idle first, to make room.
        let mut mark = inner.overflow.reserve.unmapped_mark();
        let before = loop {
            let Some(before) = inner.overflow.take_permit() else {
                if inner.evict_one() || inner.overflow.reserve.settling(&mut mark) {
                    crate::sync::yield_now();
                    continue;
                }
                return Err(self.exhausted());
            };
            if inner.budget.try_reserve(reserve) {
                break before;
            }
            inner.overflow.return_permit();
            if inner.waitable {
                // Our brief hold of the permit may have hidden it from a waiter's look.
                inner.after_release();
            }
            // Evicting helps only if the reserve holds enough of the budget: a request that would not fit with
            // the reserve empty leaves it alone (found by review).
            let hopeless = inner.budget.max().is_some_and(|max| {
                let others = inner
                    .budget
                    .used()
                    .saturating_sub(inner.overflow.reserve_bytes());
                reserve > max.saturating_sub(others)
            });
            if hopeless || (!inner.evict_one() && !inner.overflow.reserve.settling(&mut mark)) {
                return Err(self.exhausted());
            }
            crate::sync::yield_now();
        };
        let b = self.map_overflow(bytes, reserve);
        // After the permit is in a buffer (or given back): the warning and the decay's event run foreign code.
        if before == 0 {
            inner.overflow.warn_started(self.capacity());
        }
        inner.decay_tick();
        b
    }

    #[cold]
    fn acquire_slow(&self) -> Result<AlignedBuf, AcquireError> {
        // The shared freelist first, as in `take_slow`, but without its `Option` layer: this is the whole
        // acquire path of a pool without thread caches.
        let inner = self.inner();
        if let Some(slot) = inner.free.pop() {
            let b = self.pooled(slot);
            // After the slot is wrapped: a trim's event or wake-up may run foreign code.
            inner.idle_tick();
            return Ok(b);
        }
        match self.take_past_freelist()? {
            Some(b) => Ok(b),
            None => Err(self.exhausted()),
        }
    }

    /// Counts and builds the `Exhausted` error.
    fn exhausted(&self) -> AcquireError {
        let inner = self.inner();
        // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
        inner.counters.exhausted.fetch_add(1, Relaxed);
        inner.overflow.exhausted(inner.arena.layout().capacity)
    }

    /// Takes a buffer like `acquire` without counting a refusal: `Ok(None)` at the limit.
    fn take(&self) -> Result<Option<AlignedBuf>, AcquireError> {
        let inner = self.inner();
        if inner.cache_size > 0 {
            if let Some(c) = cache::acquire(self.handle.inner) {
                return Ok(Some(self.cached_buf(c)));
            }
            cache::settle();
        }
        self.take_slow()
    }

    /// Takes a buffer, waiting at most `timeout` for one to be released when the pool is at its limit under
    /// [`OverflowPolicy::Wait`](crate::OverflowPolicy::Wait).
    ///
    /// Below the limit this is [`acquire`](Self::acquire) (pooled buffer, new chunk, or overflow buffer within
    /// `max_overflow` and `max_bytes`). At the limit it queues the calling thread and parks it; every release while
    /// anyone waits (a pooled buffer dropped on any thread, an overflow buffer unmapped, a thread cache flushed) hands
    /// its buffer, or its overflow permit and bytes, straight to the longest-waiting caller, so a waiter is never
    /// overtaken once woken. Before it waits, it takes back the buffers idle in other threads' caches; releases skip
    /// thread caches while anyone waits, and the first waiter also asks every thread cache to flush at its thread's
    /// next pool operation (the fallback where the OS has no process-wide barrier, see
    /// [`thread_cache`](crate::PoolBuilder::thread_cache)). Under
    /// [`OverflowPolicy::Map`](crate::OverflowPolicy::Map) and [`OverflowPolicy::Fail`](crate::OverflowPolicy::Fail) it
    /// never waits and returns what `acquire` returns.
    ///
    /// # Errors
    /// - [`AcquireError::Timeout`] when `timeout` passed with nothing released to this caller (a debug event is
    ///   logged). Nothing changed but the `timeouts` counter; a zero timeout never parks.
    /// - [`AcquireError::Exhausted`] at the limit under `Map` or `Fail` (not `Wait`).
    /// - [`AcquireError::Os`] when the OS refuses to map a chunk or an overflow buffer.
    ///
    /// # Examples
    /// ```
    /// use pagepool::{AcquireError, OverflowPolicy, PagePool};
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PagePool::builder()
    ///     .capacity(1)
    ///     .max_overflow(0)
    ///     .overflow(OverflowPolicy::Wait)
    ///     .build()?;
    /// let held = pool.acquire()?;
    /// // At the limit: plain acquire never blocks, acquire_timeout waits.
    /// assert!(matches!(pool.acquire(), Err(AcquireError::Exhausted { .. })));
    /// assert!(matches!(
    ///     pool.acquire_timeout(Duration::from_millis(10)),
    ///     Err(AcquireError::Timeout { .. })
    /// ));
    /// std::thread::scope(|s| {
    ///     s.spawn(move || drop(held)); // released on another thread: wakes the waiter
    ///     let buf = pool.acquire_timeout(Duration::from_secs(60)).unwrap();
    ///     assert!(!buf.is_overflow());
    /// });
    /// # Ok(()) }
    /// ```
    #[must_use = "an unused acquire takes a buffer (or fails) and gives it straight back"]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<AlignedBuf, AcquireError> {
        let start = Instant::now();
        let inner = self.inner();
        if let Some(b) = self.take_or_exhausted()? {
            return Ok(b);
        }
        // `None`: a timeout too large to represent is no deadline at all.
        let deadline = start.checked_add(timeout);
        let id = match self.register(Wake::Thread(crate::sync::current()))? {
            Ok(b) => return Ok(b),
            Err(id) => id,
        };
        loop {
            if let Some(g) = inner.waiters.poll(id, None) {
                return self.grant_to_buf(g);
            }
            #[cfg(not(loom))]
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // A grant that raced the deadline is used rather than passed on.
                if let Some(g) = inner.waiters.cancel(id) {
                    return self.grant_to_buf(g);
                }
                let waited = start.elapsed();
                // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
                inner.counters.timeouts.fetch_add(1, Relaxed);
                tracing::debug!(target: "pagepool", ?waited, waiters = inner.waiters.len(), "waiter timed out");
                return Err(AcquireError::Timeout { waited });
            }
            crate::sync::park_until(deadline);
        }
    }

    /// `take`, but a refusal outside `OverflowPolicy::Wait` is the counted `Exhausted` error: `Ok(None)` means
    /// "at the limit, wait".
    pub(crate) fn take_or_exhausted(&self) -> Result<Option<AlignedBuf>, AcquireError> {
        match self.take()? {
            Some(b) => Ok(Some(b)),
            None if self.inner().waitable => Ok(None),
            None => Err(self.exhausted()),
        }
    }

    /// Queues a waiter after a failed `take`, and looks once more (the waiter's half of the wake handshake).
    /// `Ok(Ok(buf))`: that look found one (the registration is withdrawn, and a grant that raced in is passed
    /// on); `Ok(Err(id))`: queued as `id`.
    pub(crate) fn register(&self, wake: Wake) -> Result<Result<AlignedBuf, u64>, AcquireError> {
        let inner = self.inner();
        let (id, first) = inner.waiters.register(wake);
        // From here until the caller owns the registration, a panic (foreign code in `take`'s events or
        // wake-ups, or in the trace below) withdraws it: a queued waiter nobody polls would swallow grants.
        let registered = Registered { pool: self, id };
        if first && inner.cache_size > 0 {
            // Idle buffers resting in thread caches: flush them at each thread's next pool operation.
            inner.request_trim();
        }
        let found = match self.take() {
            Ok(None) => {
                tracing::trace!(target: "pagepool", waiters = inner.waiters.len(), "waiting at the pool's limit");
                std::mem::forget(registered);
                return Ok(Err(id));
            }
            Ok(Some(b)) => Ok(b),
            Err(e) => Err(e),
        };
        drop(registered);
        found.map(Ok)
    }

    /// Turns a grant into a buffer (mapping the overflow buffer a permit stands for).
    pub(crate) fn grant_to_buf(&self, g: Grant) -> Result<AlignedBuf, AcquireError> {
        let inner = self.inner();
        match g {
            Grant::Slot(slot) => {
                inner.counters.hit();
                Ok(self.buf(slot))
            }
            Grant::Permit => self.map_overflow(
                inner.arena.layout().buf_size,
                inner.overflow.reserve_bytes(),
            ),
            Grant::Mapping(b) => Ok(self.reuse(b)),
        }
    }

    /// Wraps a buffer taken from the reserve (or granted from it): counts the reuse, takes its reference, and
    /// runs the acquire-side scrub check (poison check, zeroing) once it is wrapped.
    fn reuse(&self, b: Box<OverflowBuf>) -> AlignedBuf {
        let inner = self.inner();
        // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
        inner.counters.overflow_reuses.fetch_add(1, Relaxed);
        inner.add_refs(1);
        crate::sys::unpoison(b.ptr.as_ptr(), b.buf_size);
        self.checked(AlignedBuf::overflow_boxed(self.handle.inner, b))
    }

    /// Maps an overflow buffer of `bytes` bytes for a permit and `reserve` bytes of budget the caller holds;
    /// on an OS refusal both go back (to a waiter, if any).
    fn map_overflow(&self, bytes: usize, reserve: usize) -> Result<AlignedBuf, AcquireError> {
        let inner = self.inner();
        match inner
            .overflow
            .map_with_permit(&inner.counters, &inner.mem, bytes)
        {
            Ok(b) => {
                inner.add_refs(1);
                let reserved = b.mapping.reserved();
                let buf = AlignedBuf::overflow(self.handle.inner, b);
                // The mapping is in a buffer: the events may run foreign code now.
                Overflow::mapped_event(reserved);
                inner.mem.emit_deferred();
                Ok(buf)
            }
            Err(e) => {
                inner.give_back_permit(reserve);
                Overflow::map_failed_event(&e);
                Err(e)
            }
        }
    }

    /// Releases a grant its waiter will not use (cancelled), which passes it to the next waiter.
    pub(crate) fn give_back(&self, g: Grant) {
        match g {
            // SAFETY: a slot grant carries one reference, like a buffer; we hold a handle besides.
            Grant::Slot(slot) => unsafe {
                Inner::release(self.handle.inner, slot, self.inner().slot_ptr(slot))
            },
            Grant::Permit => {
                let inner = self.inner();
                inner.give_back_permit(inner.overflow.reserve_bytes());
            }
            // Scrubbed when it was first released: back to the next waiter or the reserve.
            Grant::Mapping(b) => self.inner().return_mapping(b, true),
        }
    }

    /// Wraps a slot that already carries its reference.
    #[inline]
    fn buf(&self, slot: u32) -> AlignedBuf {
        self.buf_at(slot, self.inner().slot_ptr(slot))
    }

    /// [`buf`](Self::buf) with the slot's address already known.
    #[inline]
    fn buf_at(&self, slot: u32, ptr: NonNull<u8>) -> AlignedBuf {
        let inner = self.inner();
        let len = inner.arena.layout().buf_size;
        crate::sys::unpoison(ptr.as_ptr(), len);
        if inner.scrub != 0 {
            self.scrub_check(slot, ptr, len);
        }
        AlignedBuf::pooled(self.handle.inner, slot, ptr, len)
    }

    /// The acquire-side scrub check of [`buf_at`](Self::buf_at) (poison check, zeroing), for a pool with a memory
    /// policy. If the violation event's subscriber panics, the slot goes home in a buffer and the panic goes on.
    /// Out of line and returning nothing, so that the hit path inlined into callers carries neither the check's
    /// unwinding (a landing pad that drops a buffer, then `resume_unwind`) nor a returned buffer: with them
    /// inline, `acquire` was no longer inlined into a caller's loop, and criterion's `hot_path/pagepool` went
    /// from 2.6 ns to 8-12 ns at 8a358d6 with the same 87 instructions per operation in `scripts/callgrind.sh`.
    #[cold]
    #[inline(never)]
    fn scrub_check(&self, slot: u32, ptr: NonNull<u8>, len: usize) {
        if let Err(panic) = self.inner().mem.on_acquire(ptr, len, slot) {
            drop(AlignedBuf::pooled(self.handle.inner, slot, ptr, len));
            std::panic::resume_unwind(panic);
        }
    }

    /// Wraps a slot from `cache::acquire`; after a refill, runs the idle-trim clock (once the slot is wrapped:
    /// a trim's event or wake-up runs foreign code).
    fn cached_buf(&self, (c, refilled): (cache::Cached, bool)) -> AlignedBuf {
        // Once the slot is in a buffer, settle what the cache operation owes (its sweep's flushes and closes):
        // also if the poison check resumes a subscriber's panic (the guard's drop, after the buffer's).
        let b = {
            let _settle = Settle;
            self.buf_at(c.slot, c.ptr)
        };
        if refilled {
            self.inner().idle_tick();
        }
        b
    }

    /// Wraps a slot that already carries its reference, without the acquire-side scrub check.
    #[inline]
    fn wrap(&self, slot: u32, ptr: NonNull<u8>) -> AlignedBuf {
        let len = self.inner().arena.layout().buf_size;
        crate::sys::unpoison(ptr.as_ptr(), len);
        AlignedBuf::pooled(self.handle.inner, slot, ptr, len)
    }

    /// The acquire-side scrub check of a wrapped buffer (poison check, zeroing). It may emit an event, so it
    /// runs on a buffer that already owns its slot: if the subscriber panics, dropping the buffer releases it.
    #[inline]
    fn checked(&self, buf: AlignedBuf) -> AlignedBuf {
        let inner = self.inner();
        if inner.scrub != 0 {
            let (ptr, len, slot) = buf.parts();
            if let Err(panic) = inner.mem.on_acquire(ptr, len, slot) {
                drop(buf);
                std::panic::resume_unwind(panic);
            }
        }
        buf
    }

    /// Counts the hit of a slot taken from the shared freelist, a magazine or a new chunk, takes its reference,
    /// and wraps it (unchecked: the caller finishes its own bookkeeping first, then calls `checked`).
    fn pooled_unchecked(&self, slot: u32) -> AlignedBuf {
        let inner = self.inner();
        inner.counters.hit();
        inner.add_refs(1);
        self.wrap(slot, inner.slot_ptr(slot))
    }

    /// [`pooled_unchecked`](Self::pooled_unchecked), then `checked`.
    fn pooled(&self, slot: u32) -> AlignedBuf {
        self.checked(self.pooled_unchecked(slot))
    }

    /// Everything `acquire` does past the thread cache; `Ok(None)` at the limit, nothing counted.
    #[cold]
    fn take_slow(&self) -> Result<Option<AlignedBuf>, AcquireError> {
        let inner = self.inner();
        if let Some(slot) = inner.free.pop() {
            let b = self.pooled(slot);
            // After the slot is wrapped: a trim's event or wake-up may run foreign code.
            inner.idle_tick();
            return Ok(Some(b));
        }
        self.take_past_freelist()
    }

    /// Takes a full magazine from the depot, if any: keeps a slot and leaves the rest on the freelist.
    fn take_from_depot(&self) -> Option<AlignedBuf> {
        let inner = self.inner();
        let d = inner.depot.as_ref()?;
        let mut slots = Vec::new();
        if !d.take(inner.free.links(), &mut slots) {
            return None;
        }
        let first = slots.pop().map(|s| self.pooled_unchecked(s));
        let rest = !slots.is_empty();
        slots.into_iter().for_each(|s| inner.free.push(s));
        // Every slot of the magazine is in a buffer or on the freelist: foreign code may run now.
        if rest && inner.waitable {
            // Slots in transit from the depot were invisible to a waiter's look meanwhile.
            inner.after_release();
        }
        first.map(|b| self.checked(b))
    }

    /// `take_slow` after its look at the shared freelist found it empty.
    fn take_past_freelist(&self) -> Result<Option<AlignedBuf>, AcquireError> {
        let inner = self.inner();
        // The thread cache was unavailable (thread exit) or empty and the freelist is empty: idle slots may
        // still sit in full magazines.
        if let Some(b) = self.take_from_depot() {
            return Ok(Some(b));
        }
        // Buffers a trim could not commit again: memory the pool already has beats a new mapping.
        if inner.retry_uncommitted() > 0 {
            if let Some(slot) = inner.free.pop() {
                return Ok(Some(self.pooled(slot)));
            }
        }
        loop {
            match inner
                .arena
                .grow(false, &inner.mem, &inner.budget, &inner.free)
            {
                Ok(Grow::Grew(range)) => {
                    let b = self.pooled_unchecked(range.start);
                    inner.free.push_fresh(range.start + 1..range.end);
                    // Every slot of the chunk is in `b` or on the freelist: foreign code may run now.
                    if range.len() > 1 && inner.waitable {
                        inner.after_release();
                    }
                    inner.arena.grew_event(&range);
                    inner.mem.emit_deferred();
                    return Ok(Some(self.checked(b)));
                }
                // The next chunk is over budget while reserved buffers hold part of it: a chunk serves the
                // pool's capacity, a reserved buffer only overflow, so evict (the oldest first) and try again.
                // Without this the reserve, reused by the same overflow, never decays and keeps the pool below
                // its capacity (found by review, `tests/review_reserve.rs`).
                Ok(Grow::Full) if !inner.arena.all_mapped() && inner.evict_one() => {}
                Ok(Grow::Full) => break,
                // Another thread is inside mmap for the last unclaimed chunk. Capacity is not reached, so
                // waiting for that one system call to finish beats a spurious overflow or `Exhausted`.
                Ok(Grow::Busy) => {
                    if let Some(slot) = inner.free.pop() {
                        return Ok(Some(self.pooled(slot)));
                    }
                    crate::sync::yield_now();
                }
                Err(source) => {
                    if inner.waitable {
                        // The chunk's budget came back.
                        inner.after_release();
                    }
                    // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
                    inner.counters.os_errors.fetch_add(1, Relaxed);
                    let l = inner.arena.layout();
                    let bytes = l.chunk_len(0);
                    tracing::error!(target: "pagepool", bytes, error = %source, "chunk mmap failed");
                    return Err(AcquireError::Os { bytes, source });
                }
            }
        }
        // Every chunk is mapped (or the next one is over budget): a release may have refilled the freelist
        // since our first look.
        if let Some(slot) = inner.free.pop() {
            return Ok(Some(self.pooled(slot)));
        }
        // Idle slots resting in other threads' caches beat an overflow buffer, a refusal or a wait: fetch them
        // to the freelist (`cache.rs`, "Reclaim"), then look again, also when this reclaim took nothing: a
        // cache it waited for may have flushed meanwhile, to the freelist or to the depot.
        if inner.cache_size > 0 {
            cache::reclaim(inner, cache::Reclaim::Steal);
            if let Some(slot) = inner.free.pop() {
                return Ok(Some(self.pooled(slot)));
            }
            if let Some(b) = self.take_from_depot() {
                return Ok(Some(b));
            }
        }
        let mut mark = inner.overflow.reserve.unmapped_mark();
        let before = loop {
            // A buffer mapped earlier and kept in the reserve beats a fresh mapping.
            if let Some(b) = inner.overflow.reserve.take() {
                return Ok(Some(self.reuse(b)));
            }
            match inner.reserve_overflow() {
                Ok(before) => break before,
                Err(rolled_back) => {
                    if rolled_back && inner.waitable {
                        // Found by loom (`waiter_races_overflow_release`): our brief hold of the permit can make
                        // a registered waiter's look fail while the releaser's wake check finds no permit.
                        inner.after_release();
                    }
                    // The permits may have gone into the reserve since our look at it.
                    if let Some(b) = inner.overflow.reserve.take_locked() {
                        return Ok(Some(self.reuse(b)));
                    }
                    // Or be on their way back from reserved buffers being unmapped.
                    if inner.overflow.reserve.settling(&mut mark) {
                        crate::sync::yield_now();
                        continue;
                    }
                    return Ok(None);
                }
            }
        };
        let b = self.grant_to_buf(Grant::Permit);
        // After the permit is in a buffer (or given back): the warning runs foreign code.
        if before == 0 {
            inner.overflow.warn_started(self.capacity());
        }
        // Reserved buffers idle past the decay go while we pay for a mapping anyway (their event is foreign
        // code too).
        inner.decay_tick();
        b.map(Some)
    }
}

/// Runs `cache::settle` when dropped, on unwind too.
struct Settle;

impl Drop for Settle {
    fn drop(&mut self) {
        cache::settle();
    }
}

/// A waiter registration not yet handed to its caller: dropping it (normally, or on unwind) withdraws it, and
/// passes on a grant that raced in.
struct Registered<'a> {
    pool: &'a PagePool,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.pool.inner().waiters.cancel(self.id) {
            self.pool.give_back(g);
        }
    }
}
