//! [`PagePool`]: the shared pool and its acquire/release paths.

use crate::arena::{Arena, Grow};
use crate::budget::Budget;
use crate::buf::AlignedBuf;
use crate::cache::{self, CacheStats};
use crate::config::{Layout, PoolBuilder};
use crate::depot::Depot;
use crate::error::{AcquireError, ConfigError};
use crate::freelist::FreeList;
use crate::gate::DiscardGate;
use crate::overflow::{Overflow, OverflowBuf};
use crate::policy::MemPolicy;
use crate::stats::{Counters, PoolStats};
use crate::sync::{Arc, AtomicU64, AtomicUsize};
use crate::sys::DiscardError;
use crate::uncommitted::Uncommitted;
use crate::wait::{Grant, Waiters, Wake};
use crate::{HugePages, LockPolicy, OverflowPolicy};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

/// Why [`PagePool::map_all_chunks`] could not map every chunk.
#[derive(Debug)]
#[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
pub(crate) enum MapAllError {
    /// The OS refused a chunk.
    Os(std::io::Error),
    /// `max_bytes` is below what all chunks together reserve (`needed`): nothing was mapped.
    OverBudget { max_bytes: usize, needed: usize },
    /// All chunks fit in `max_bytes`, but one did not fit now: `held` bytes of the budget were held by other
    /// mappings (overflow buffers) when it was refused.
    BudgetHeld {
        max_bytes: usize,
        needed: usize,
        held: usize,
    },
}

/// `Inner::state` bit set once the last `PagePool` handle is gone.
const CLOSING: usize = 1;
/// One reference in `Inner::state`.
const REF: usize = 2;

/// A pool of page-aligned buffers taken straight from the OS.
///
/// Cheap to clone: clones share one pool. See the [crate docs](crate) for the design and
/// [`PagePool::builder`] for the settings.
///
/// # Examples
/// ```
/// use pagepool::{OverflowPolicy, PagePool};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PagePool::builder()
///     .buf_size(8192)
///     .capacity(16)
///     .overflow(OverflowPolicy::Map)
///     .build()?;
/// let mut buf = pool.acquire()?;
/// buf[..4].copy_from_slice(b"page");
/// assert_eq!(buf.len(), 8192);
/// assert_eq!(buf.as_ptr() as usize % pagepool::page_size(), 0);
/// drop(buf);
/// assert_eq!(pool.stats().idle, pool.stats().pooled_buffers);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PagePool {
    handle: Arc<Handle>,
}

/// The one reference all `PagePool` clones share; dropping the last clone closes the pool.
struct Handle {
    /// The pool's shared state; with size classes, the default class's, owned by that class's own handle.
    inner: NonNull<Inner>,
    /// Size classes, smallest first, each a single-size pool of its own; empty for a single-size pool.
    classes: Box<[PagePool]>,
}

// SAFETY: Handle is a counted reference to Inner, which is Send + Sync (all shared state is atomic or locked).
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.classes.is_empty() {
            // `inner` belongs to a class; each class pool closes itself when `classes` is dropped next.
            return;
        }
        // A single-threaded program gets its memory back right here: flush our own cache first, and give back
        // its entry's reference before the handles' one (so a thread whose sweep honours this close's epoch
        // meets a count that its own entry's reference ends). Settling runs no foreign code that panics out,
        // and cannot free Inner: the handles' reference is still held.
        cache::close_local(self.inner);
        cache::settle();
        // SAFETY: the handles' reference is still held, so Inner is alive.
        let inner = unsafe { self.inner.as_ref() };
        // CLOSING first, still holding the handles' reference: from here on a release keeps no mapping in the
        // reserve (`return_mapping`), and the reserve's mappings go now, not when the last buffer comes home.
        // A release that put one there before seeing CLOSING looks again after its put, under the same lock
        // order (found by review: the mapping otherwise stayed until the last buffer came home).
        let closing = inner.state.fetch_or(CLOSING, AcqRel);
        debug_assert_eq!(closing & CLOSING, 0, "a pool closes once");
        inner.unmap_reserved(None, "close");
        // Drop the handles' reference.
        let prev = inner.state.fetch_sub(REF, AcqRel);
        // Tell other threads' caches to let go of this pool at their next operation.
        cache::bump_sweep_epoch();
        if prev == REF | CLOSING {
            // SAFETY: the count was exactly our reference and CLOSING is now set: nobody else holds a
            // reference, and nobody can take one (that needs a handle or a buffer). We free exactly once.
            unsafe { Inner::free(self.inner) };
        }
    }
}

/// The registry of thread-cache stats, behind a small lock built on an atomic of our own: std's `Mutex` is
/// precompiled (uninstrumented) code, so ThreadSanitizer cannot see it order the accesses it protects. Only
/// cold paths take it (a thread's first use of a pool, thread exit, `stats()`), and the closures run under it
/// do nothing but walk, push to or retain a `Vec`.
#[derive(Default)]
struct Registry {
    locked: std::sync::atomic::AtomicBool,
    caches: std::cell::UnsafeCell<Vec<StdArc<CacheStats>>>,
}

// SAFETY: `caches` is only reached through `with`, which holds `locked` (Acquire on taking it, Release on
// giving it back), so accesses from different threads never overlap and are ordered.
unsafe impl Sync for Registry {}

impl Registry {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<StdArc<CacheStats>>) -> R) -> R {
        // The failure ordering is Relaxed: a failed attempt reads nothing under the lock, it only retries.
        while self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        // SAFETY: we hold the lock, so no other reference to the vector exists until we release it below.
        let r = f(unsafe { &mut *self.caches.get() });
        self.locked
            .store(false, std::sync::atomic::Ordering::Release);
        r
    }
}

/// State shared by every `PagePool` clone, every buffer out and every thread cache of this pool.
///
/// Freed when `state` reaches "no references, CLOSING" (see `cache.rs` for the protocol).
pub(crate) struct Inner {
    arena: Arena,
    pub(crate) free: FreeList,
    counters: Counters,
    overflow: Overflow,
    /// `references * REF | CLOSING`.
    state: AtomicUsize,
    /// Slots a thread cache starts with room for (0: no caches).
    pub(crate) cache_size: usize,
    /// `mem.scrub`, beside `cache_size` so the release path reads one line: non-zero when released buffers
    /// are zeroed or poisoned.
    pub(crate) scrub: u8,
    /// Zeroing, poisoning, locking, advice, guard pages, trimming.
    pub(crate) mem: MemPolicy,
    /// Full magazines of half a cache each, for batch refills and flushes (none without caches).
    pub(crate) depot: Option<Depot>,
    /// Trim requests (`request_trim`: `trim()` and the first waiter): caches flush when they see a new value.
    trim_epoch: AtomicU64,
    /// The most slots an adaptive cache grows to (`cache_size` for fixed caches).
    pub(crate) cache_max: usize,
    /// Room left for caches to grow beyond `cache_size`, all threads together (`cache::Entry::grow`).
    pub(crate) cache_room: AtomicUsize,
    /// Stats of live thread caches (registration is once per thread per pool).
    caches: Registry,
    /// Cache hits of caches that have gone.
    retired_hits: StdAtomicU64,
    /// The byte budget (`max_bytes`) of chunks and overflow buffers.
    budget: Budget,
    /// `OverflowPolicy::Wait`: only such a pool ever has waiters, so only its releases run the wake check.
    pub(crate) waitable: bool,
    /// Threads and tasks waiting at the limit. `waiters.any()` is the one word every release reads.
    pub(crate) waiters: Waiters,
    /// Slots a trim gave back but could not commit again: out of the freelist until a retry recommits them.
    uncommitted: Uncommitted,
    /// Every discard of pooled memory (trim, idle trim) passes it; closed for good by io_uring registration
    /// (`iovecs`), after which nothing discards the pool's memory (see `gate.rs`).
    discard_gate: DiscardGate,
}

#[cfg(loom)]
thread_local! {
    /// Times an `Inner` was torn down on this OS thread (loom runs a whole model on one OS thread).
    pub(crate) static TEARDOWNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(loom)]
impl Drop for Inner {
    fn drop(&mut self) {
        TEARDOWNS.with(|t| t.set(t.get() + 1));
    }
}

/// One counted reference on `Inner`, given back when dropped: also when foreign code (a tracing subscriber,
/// a waker) panics while the owner still needs `Inner`, so an unwinding path never keeps a reference (which
/// would pin the pool's memory for good).
pub(crate) struct Ref(NonNull<Inner>);

impl Ref {
    /// Takes ownership of one reference the caller owns.
    ///
    /// # Safety
    /// The caller owns one reference on `this` and passes it on: it no longer releases it itself.
    pub(crate) unsafe fn adopt(this: NonNull<Inner>) -> Ref {
        Ref(this)
    }

    /// Takes one more reference on the pool of `inner`, which the caller keeps alive with one of its own.
    pub(crate) fn take(inner: &Inner) -> Ref {
        inner.add_refs(1);
        Ref(NonNull::from(inner))
    }

    pub(crate) fn inner(&self) -> &Inner {
        // SAFETY: this guard owns a reference, so Inner is alive while the guard is.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Ref {
    fn drop(&mut self) {
        // SAFETY: the guard owns one reference (see `adopt`/`take`) and nothing uses it after this.
        unsafe { Inner::release_refs(self.0, 1) }
    }
}

impl Inner {
    /// Takes `n` more references. The caller must already hold one (so the count cannot be zero).
    #[inline]
    pub(crate) fn add_refs(&self, n: usize) {
        // Relaxed, as `Arc::clone`: the caller's reference keeps the count above zero, so this increment cannot
        // race the teardown, and it publishes nothing (the slots it counts were taken by their own atomics).
        self.state.fetch_add(n * REF, Relaxed);
    }

    /// Drops `n` references, freeing `Inner` if they were the last and the pool is closing.
    ///
    /// # Safety
    /// The caller owns `n` references on `this`, has finished every access to `*this` that needed them
    /// (e.g. pushing slots to the freelist), and does not touch `this` afterwards.
    #[inline]
    pub(crate) unsafe fn release_refs(this: NonNull<Inner>, n: usize) {
        // SAFETY: the caller's references keep Inner alive until this decrement.
        let prev = unsafe { this.as_ref() }.state.fetch_sub(n * REF, AcqRel);
        if prev == n * REF + CLOSING {
            // SAFETY: the count is now zero and CLOSING is set: no handle, buffer or cache refers to Inner,
            // and no new reference can be taken. Only the thread whose decrement reached zero gets here.
            unsafe { Inner::free(this) };
        }
    }

    /// # Safety
    /// `this` came from `Box::into_raw` in `from_builder` and no reference to it remains.
    unsafe fn free(this: NonNull<Inner>) {
        // SAFETY: per the contract, we own the allocation exclusively.
        let inner = unsafe { Box::from_raw(this.as_ptr()) };
        let chunks = inner.arena.mapped_chunks();
        drop(inner);
        // After the memory is gone: nothing of the pool is left for a panicking subscriber to strand.
        if chunks > 0 {
            // Reached from drops (a buffer, a handle, a thread's exit flush in a thread-local destructor).
            crate::sync::foreign_quiet(
                || tracing::debug!(target: "pagepool", chunks, "unmapped pool chunks"),
            );
        }
    }

    /// Whether the last handle is gone. Relaxed: the sweep calls it after its `Acquire` load of the sweep epoch,
    /// which orders it after the close that set `CLOSING` and then bumped the epoch with `Release` (`cache.rs`,
    /// `bump_sweep_epoch`), and `CLOSING` is never cleared. `Local::new_entry` may call it before its thread
    /// has read the close's bump: a stale answer makes an entry that the first sweep reading that bump removes
    /// (loom `close_races_new_entry`).
    pub(crate) fn is_closing(&self) -> bool {
        self.state.load(Relaxed) & CLOSING != 0
    }

    /// Trim requests so far (`trim()`, and the first waiter asking caches to flush).
    ///
    /// Every request increments it, then bumps the sweep epoch (`Release`), so a sweep that reads the bump
    /// (`Acquire`) reads this request's value or a later one. That alone is not enough: this load can also
    /// return a request still in flight (incremented, not bumped yet), and the entry then records it as
    /// honoured and skips it when its bump arrives. So the increment is `Release` and this load `Acquire`: an
    /// entry that records a request has seen everything the requester did before it, in particular the
    /// waiter's registration, and from then on its thread's releases see that waiter and bypass the cache
    /// (loom `sweep_races_waiter_flush_request`).
    pub(crate) fn trim_epoch(&self) -> u64 {
        self.trim_epoch.load(Acquire)
    }

    /// Records a trim request (see [`trim_epoch`](Self::trim_epoch)) and makes every thread re-examine its
    /// caches at its next operation.
    pub(crate) fn request_trim(&self) {
        self.trim_epoch.fetch_add(1, Release);
        cache::bump_sweep_epoch();
    }

    pub(crate) fn register_cache(&self) -> StdArc<CacheStats> {
        let stats = StdArc::new(CacheStats::default());
        self.caches.with(|c| c.push(stats.clone()));
        stats
    }

    pub(crate) fn unregister_cache(&self, stats: &StdArc<CacheStats>, hits: u64) {
        self.caches.with(|caches| {
            caches.retain(|c| !StdArc::ptr_eq(c, stats));
            // Fold under the lock so a concurrent `stats()` never counts these hits twice or not at all. Relaxed:
            // the registry lock orders it against `stats()`, and it is a statistic.
            self.retired_hits.fetch_add(hits, Relaxed);
        });
    }

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

    /// The releaser's half of the wake handshake (`wait.rs`), after making a buffer, a permit or budget
    /// available: fence, then serve waiters if there are any. Needs a caller that holds a reference.
    #[cold]
    #[inline(never)]
    pub(crate) fn after_release(&self) {
        crate::sync::fence(SeqCst);
        if self.waiters.any() {
            self.serve();
        }
    }

    /// Hands whatever is available to queued waiters, front first.
    fn serve(&self) {
        self.waiters.serve(|| self.take_for_waiter());
    }

    /// One grant for a waiter, without blocking or calling the OS: an idle slot (freelist, then a depot
    /// magazine, whose other slots go to the freelist) with a reference taken for it, or an overflow permit
    /// with its budget.
    fn take_for_waiter(&self) -> Option<Grant> {
        let slot = self.free.pop().or_else(|| {
            let d = self.depot.as_ref()?;
            let mut slots = Vec::new();
            if !d.take(&mut slots) {
                return None;
            }
            let first = slots.pop();
            slots.into_iter().for_each(|s| self.free.push(s));
            first
        });
        if let Some(slot) = slot {
            // A waiter holds a handle, so the count cannot be zero here.
            self.add_refs(1);
            return Some(Grant::Slot(slot));
        }
        // A reserved mapping beats a permit: no system call for the waiter. (No lock is held but the list's:
        // the reserve's own lock is always taken inside it, never the other way round.)
        if let Some(b) = self.overflow.reserve.take() {
            return Some(Grant::Mapping(b));
        }
        // Under the list lock: a permit rolled back here needs no wake check, since any waiter that could
        // want it registers (under the same lock) after this serve and looks again.
        self.reserve_overflow().ok().map(|_| Grant::Permit)
    }

    /// Takes an overflow permit and its bytes of budget, both or neither: `Ok(overflow buffers out before)`.
    /// `Err(true)`: a permit was taken and given back because the budget refused, so a waiter that looked
    /// meanwhile may have missed it; callers outside the list lock then run the wake check.
    fn reserve_overflow(&self) -> Result<usize, bool> {
        let before = self.overflow.take_permit().ok_or(false)?;
        if self.budget.try_reserve(self.overflow.reserve_bytes()) {
            return Ok(before);
        }
        self.overflow.return_permit();
        Err(true)
    }

    /// Gives back an overflow permit and the `bytes` of budget it held: to the front waiter if there is one
    /// (a permit grant stands for one buffer of the pool's size, so the bytes of a larger buffer from
    /// `acquire_len` above that go back to the budget first), else to the pool (then the wake check). Needs a
    /// caller that holds a reference.
    fn give_back_permit(&self, bytes: usize) {
        if self.waitable && self.waiters.any() {
            let own = self.overflow.reserve_bytes();
            let extra = bytes.saturating_sub(own);
            if extra > 0 {
                self.budget.give_back(extra);
            }
            if self.waiters.offer(Grant::Permit).is_ok() {
                return;
            }
            self.overflow.return_permit();
            self.budget.give_back(bytes - extra);
            self.after_release();
            return;
        }
        self.overflow.return_permit();
        self.budget.give_back(bytes);
        if self.waitable {
            self.after_release();
        }
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
    fn return_mapping(&self, mut b: Box<OverflowBuf>, scrubbed: bool) {
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
    pub(crate) fn unmap_reserved(&self, now: Option<Duration>, why: &'static str) -> usize {
        if self.overflow.reserve.len() == 0 {
            return 0;
        }
        let mut batch = Vec::with_capacity(UNMAP_BATCH);
        let (mut n, mut bytes) = (0, 0);
        loop {
            self.overflow.reserve.expire(now, &mut batch, UNMAP_BATCH);
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
    fn evict_one(&self) -> bool {
        match self.overflow.reserve.take_oldest() {
            Some(b) => {
                self.unmap_expired(vec![b], "evict");
                true
            }
            None => false,
        }
    }

    /// The decay check of the slow paths: one relaxed load when the reserve is empty.
    #[inline]
    fn decay_tick(&self) {
        if self.overflow.reserve.len() != 0 {
            self.unmap_reserved(Some(crate::sys::coarse_clock()), "decay");
        }
    }
}

impl Inner {
    /// The size of every pooled buffer of this pool (of this size class): a pooled buffer's capacity.
    #[inline]
    pub(crate) fn buf_size(&self) -> usize {
        self.arena.layout().buf_size
    }

    /// Address of pooled slot `slot` (see `Arena::slot_ptr`).
    #[inline]
    pub(crate) fn slot_ptr(&self, slot: u32) -> NonNull<u8> {
        self.arena.slot_ptr(slot)
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

    /// Gives the physical memory of up to `n` idle shared buffers back to the OS, longest idle first, and puts
    /// them back in the freelist. Returns the bytes given back. Locked pools are never trimmed, nor pools whose
    /// memory is registered (the discard gate is closed; see `gate.rs`).
    ///
    /// The buffers being trimmed are out of the freelist meanwhile (owned by this call, so nobody sees their
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
        // Magazines in the depot count as idle too: move them to the freelist's tail, behind older slots.
        if let Some(d) = &self.depot {
            let mut mag = Vec::new();
            while self.free.len() < n && d.take(&mut mag) {
                mag.drain(..).for_each(|s| self.free.push(s));
            }
        }
        let l = self.arena.layout();
        let mut bytes = 0;
        let mut left = n;
        let mut batch = Vec::with_capacity(256);
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
            batch
                .iter()
                .filter(|&&s| s != HELD_OUT)
                .for_each(|&s| self.free.push(s));
            if bytes > given {
                self.mem.trimmed(bytes - given);
            }
        }
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
    fn retry_uncommitted(&self) -> usize {
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

/// Reserved buffers unmapped per batch by `Inner::unmap_reserved`.
const UNMAP_BATCH: usize = 32;

/// Marks a batch entry of `trim_shared` whose range was held out: never a slot index (`MAX_CAPACITY` keeps
/// `u32::MAX` free as a sentinel).
const HELD_OUT: u32 = u32::MAX;

impl PagePool {
    /// Starts configuring a pool. See [`PoolBuilder`] for the settings and their defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    pub(crate) fn from_builder(b: &PoolBuilder) -> Result<PagePool, ConfigError> {
        if let Some((builders, default)) = b.class_builders()? {
            let classes = builders
                .iter()
                .map(PagePool::from_builder)
                .collect::<Result<Vec<_>, _>>()?
                .into_boxed_slice();
            let inner = classes[default].handle.inner;
            tracing::debug!(
                target: "pagepool",
                classes = ?classes.iter().map(PagePool::buf_size).collect::<Vec<_>>(),
                default = classes[default].buf_size(),
                "size-class pool built"
            );
            return Ok(PagePool {
                handle: Arc::new(Handle { inner, classes }),
            });
        }
        let layout: Layout = b.layout()?;
        if b.huge_pages == HugePages::Explicit {
            // No fallback: find out now, not at the first acquire, whether the kernel has huge pages for us.
            crate::sys::map_with(crate::sys::HUGE_PAGE, crate::sys::HUGE_PAGE, false, true)
                .map_err(|source| ConfigError::HugePagesUnavailable { source })?;
        }
        let free = FreeList::new(layout.capacity)?;
        let mem = MemPolicy::new(b);
        let inner = Box::new(Inner {
            arena: Arena::new(layout),
            free,
            counters: Counters::new(),
            overflow: Overflow::new(b.overflow, b.max_overflow, b.overflow_decay, &layout),
            state: AtomicUsize::new(REF),
            cache_size: layout.thread_cache,
            scrub: mem.scrub,
            mem,
            depot: Depot::new(layout.capacity, layout.thread_cache / 2),
            trim_epoch: AtomicU64::new(0),
            cache_max: layout.thread_cache_max,
            cache_room: AtomicUsize::new(if layout.thread_cache_max > layout.thread_cache {
                layout.capacity
            } else {
                0
            }),
            caches: Registry::default(),
            retired_hits: StdAtomicU64::new(0),
            budget: Budget::new(b.max_bytes),
            waitable: b.overflow == OverflowPolicy::Wait,
            waiters: Waiters::new(),
            uncommitted: Uncommitted::new(),
            discard_gate: DiscardGate::new(),
        });
        let pool = PagePool {
            handle: Arc::new(Handle {
                inner: NonNull::from(Box::leak(inner)),
                classes: Box::new([]),
            }),
        };
        if b.prealloc {
            let inner = pool.inner();
            loop {
                match inner.arena.grow(true, &inner.mem, &inner.budget) {
                    Ok(Grow::Grew(range)) => {
                        range.clone().for_each(|i| inner.free.push(i));
                        inner.arena.grew_event(&range);
                        inner.mem.emit_deferred();
                    }
                    Ok(Grow::Busy | Grow::Full) => break,
                    Err(source) => {
                        let bytes = layout.chunk_len(0);
                        tracing::error!(target: "pagepool", bytes, error = %source, "prealloc mmap failed");
                        // Dropping `pool` unmaps every chunk mapped so far.
                        return Err(ConfigError::Os { bytes, source });
                    }
                }
            }
        }
        tracing::debug!(
            target: "pagepool",
            buf_size = layout.buf_size,
            capacity = layout.capacity,
            chunks = layout.chunks,
            prealloc = b.prealloc,
            "pool built"
        );
        Ok(pool)
    }

    /// Takes a buffer. Never blocks.
    ///
    /// Served from the freelist when a pooled buffer is idle (one lock-free pop, no system call, no
    /// allocation); otherwise by mapping the next chunk of pooled memory if the pool has not reached its
    /// capacity; otherwise by the overflow policy: [`OverflowPolicy::Map`] takes a buffer from the overflow
    /// reserve or maps a buffer's pages directly (kept for reuse or unmapped on drop, see
    /// [`overflow_decay`](crate::PoolBuilder::overflow_decay)), [`OverflowPolicy::Fail`] refuses.
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

    /// Takes a buffer of at least `len` bytes: from the smallest size class that fits (its `len()` and
    /// `capacity()` are the class size: it starts full, like `acquire`'s; see [`PoolBuilder::size_classes`]),
    /// or, above the largest class (or above `buf_size` in a single-size pool), from the overflow path: a
    /// mapping of `len` rounded up to the page size (its `len()` and `capacity()`), unmapped on drop, under the
    /// largest class's overflow policy and `max_overflow`. `acquire_len(0)` is the smallest class. Never
    /// blocks.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), for the chosen class; [`AcquireError::Os`] also when `len` rounded up to
    /// the page size does not fit in the address space (its source is of kind `InvalidInput`: no OS call was
    /// made).
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

    /// The buffer sizes this pool serves from pooled memory, smallest first: the size classes, or just
    /// `buf_size`.
    pub fn size_classes(&self) -> Vec<usize> {
        if self.handle.classes.is_empty() {
            vec![self.buf_size()]
        } else {
            self.handle.classes.iter().map(PagePool::buf_size).collect()
        }
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
    /// [`OverflowPolicy::Wait`].
    ///
    /// Below the limit this is [`acquire`](Self::acquire) (pooled buffer, new chunk, or overflow buffer within
    /// `max_overflow` and `max_bytes`). At the limit it queues the calling thread and parks it; every release
    /// while anyone waits (a pooled buffer dropped on any thread, an overflow buffer unmapped, a thread cache
    /// flushed) hands its buffer, or its overflow permit and bytes, straight to the longest-waiting caller, so a
    /// waiter is never overtaken once woken. Releases skip thread caches while anyone waits, and the first
    /// waiter asks every thread cache to flush at its thread's next pool operation (buffers resting in the cache
    /// of a thread that makes no further pool operation stay there until that thread exits, as with
    /// [`trim`](Self::trim)). Under [`OverflowPolicy::Map`] and [`OverflowPolicy::Fail`] it never waits and
    /// returns what `acquire` returns.
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

    #[cfg(any(feature = "async", loom))]
    pub(crate) fn waiters(&self) -> &Waiters {
        &self.inner().waiters
    }

    /// Takes a buffer, waiting without a thread when the pool is at its limit under [`OverflowPolicy::Wait`]
    /// (cargo feature `async`). Runtime-agnostic: the returned [`Acquire`](crate::Acquire) future only uses
    /// the task's `Waker`, so it runs on any executor.
    ///
    /// Behaves like [`acquire_timeout`](Self::acquire_timeout) without a deadline: the same queue, hand-off
    /// and cache bypass. Wrap it in your runtime's timeout to bound the wait; dropping the future cancels it
    /// safely (a buffer handed to it meanwhile goes to the next waiter).
    ///
    /// # Errors
    /// - [`AcquireError::Exhausted`] at the limit under `Map` or `Fail` (it waits only under `Wait`).
    /// - [`AcquireError::Os`] when the OS refuses to map a chunk or an overflow buffer.
    ///
    /// # Examples
    /// ```
    /// use pagepool::{OverflowPolicy, PagePool};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PagePool::builder()
    ///     .capacity(1)
    ///     .max_overflow(0)
    ///     .overflow(OverflowPolicy::Wait)
    ///     .build()?;
    /// let held = pool.acquire()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(move || drop(held)); // wakes the task below
    ///     let buf = futures::executor::block_on(pool.acquire_async()).unwrap();
    ///     assert_eq!(buf.len(), pool.buf_size());
    /// });
    /// # Ok(()) }
    /// ```
    #[cfg(any(feature = "async", loom))]
    #[must_use = "the future does nothing unless awaited or polled"]
    pub fn acquire_async(&self) -> crate::acquire::Acquire<'_> {
        crate::acquire::Acquire::new(self)
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

    /// For the loom models: the room adaptive caches may still grow into (`Inner::cache_room`).
    #[cfg(all(loom, test))]
    pub(crate) fn loom_cache_room(&self) -> usize {
        self.inner().cache_room.load(Relaxed)
    }

    /// The address of the pool's shared state, naming the pool to `cache::loom_view` (loom models only).
    #[cfg(all(loom, test))]
    pub(crate) fn inner_addr(&self) -> usize {
        self.handle.inner.as_ptr() as usize
    }

    #[inline]
    fn inner(&self) -> &Inner {
        // SAFETY: the handle holds a reference on Inner for as long as `self` lives.
        unsafe { self.handle.inner.as_ref() }
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
            if let Err(panic) = inner.mem.on_acquire(ptr, len, slot) {
                // The violation event's subscriber panicked: the slot goes home in a buffer, then the panic
                // goes on.
                drop(AlignedBuf::pooled(self.handle.inner, slot, ptr, len));
                std::panic::resume_unwind(panic);
            }
        }
        AlignedBuf::pooled(self.handle.inner, slot, ptr, len)
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

    /// `take_slow` after its look at the shared freelist found it empty.
    fn take_past_freelist(&self) -> Result<Option<AlignedBuf>, AcquireError> {
        let inner = self.inner();
        // The thread cache was unavailable (thread exit) or empty and the freelist is empty: idle slots may
        // still sit in full magazines. Take one, keep a slot, and leave the rest on the freelist.
        if let Some(d) = &inner.depot {
            let mut slots = Vec::new();
            if d.take(&mut slots) {
                let first = slots.pop().map(|s| self.pooled_unchecked(s));
                let rest = !slots.is_empty();
                slots.into_iter().for_each(|s| inner.free.push(s));
                // Every slot of the magazine is in a buffer or on the freelist: foreign code may run now.
                if rest && inner.waitable {
                    // Slots in transit from the depot were invisible to a waiter's look meanwhile.
                    inner.after_release();
                }
                if let Some(b) = first {
                    return Ok(Some(self.checked(b)));
                }
            }
        }
        // Buffers a trim could not commit again: memory the pool already has beats a new mapping.
        if inner.retry_uncommitted() > 0 {
            if let Some(slot) = inner.free.pop() {
                return Ok(Some(self.pooled(slot)));
            }
        }
        loop {
            match inner.arena.grow(false, &inner.mem, &inner.budget) {
                Ok(Grow::Grew(range)) => {
                    let b = self.pooled_unchecked(range.start);
                    (range.start + 1..range.end).for_each(|i| inner.free.push(i));
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

    /// Gives idle memory back: flushes idle buffers out of thread caches to the shared freelist (this thread's
    /// cache now, every other thread's cache at that thread's next pool operation), then returns the physical
    /// memory of every idle buffer in the shared pool to the OS (`MADV_DONTNEED` on unix, which lowers RSS at
    /// once; `MEM_DECOMMIT` and a fresh `MEM_COMMIT` on Windows). Returns the bytes given back.
    ///
    /// The buffers stay in the pool: the next use of one faults in fresh zeroed pages. Chunks stay mapped
    /// (address space, no memory), so the freelist never names unmapped memory. On Windows, a range whose
    /// `MEM_COMMIT` fails after the decommit (commit pressure) is held out instead of returning to the pool
    /// (counted in [`PoolStats::uncommitted`], reported with a `warn!`): it is never handed out uncommitted.
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

    /// A snapshot of the pool's counters and gauges. See [`PoolStats`] for when the fields add up.
    pub fn stats(&self) -> PoolStats {
        if !self.handle.classes.is_empty() {
            let rows: Vec<PoolStats> = self.handle.classes.iter().map(PagePool::stats).collect();
            let mut total = rows.iter().fold(PoolStats::default(), |t, r| t.add(r));
            total.buf_size = self.buf_size();
            total.classes = rows;
            return total;
        }
        let inner = self.inner();
        let c = &inner.counters;
        // The Relaxed loads below read statistics and gauges: nothing is dereferenced on their strength, and the
        // snapshot is documented as exact only once the pool is quiet (`PoolStats`).
        let (cached, cache_hits) = inner.caches.with(|caches| {
            let cached: usize = caches.iter().map(|s| s.cached.load(Acquire)).sum();
            let hits: u64 = caches.iter().map(|s| s.hits.load(Relaxed)).sum();
            (cached, hits + inner.retired_hits.load(Relaxed))
        });
        let pooled = inner.arena.mapped_slots();
        let in_depot = inner.depot.as_ref().map_or(0, Depot::idle);
        let idle = (inner.free.len() + in_depot + cached).min(pooled);
        let uncommitted = inner.uncommitted.slots().min(pooled - idle);
        let pool_hits = c.pool_hits() + cache_hits;
        let overflow_maps = c.overflow_maps.load(Relaxed);
        let overflow_reuses = c.overflow_reuses.load(Relaxed);
        let exhausted = c.exhausted.load(Relaxed);
        let os_errors = c.os_errors.load(Relaxed);
        let timeouts = c.timeouts.load(Relaxed);
        // One look at the reserve for both figures: with two, a release into the reserve between them counted
        // its buffer twice, and the two no longer summed to the permits taken (found by
        // `tests/overflow_reserve.rs::budget_never_exceeded_under_concurrency`, 1 run in 32).
        let reserve_buffers = inner.overflow.reserve.len();
        PoolStats {
            capacity: inner.arena.layout().capacity,
            buf_size: inner.arena.layout().buf_size,
            pooled_buffers: pooled,
            idle,
            cached: cached.min(idle),
            in_use: pooled - idle - uncommitted,
            uncommitted,
            overflow_in_use: inner.overflow.in_use_given(reserve_buffers),
            reserve_buffers,
            reserve_bytes: inner.overflow.reserve.bytes(),
            acquires: pool_hits
                + overflow_maps
                + overflow_reuses
                + exhausted
                + os_errors
                + timeouts,
            pool_hits,
            overflow_maps,
            overflow_unmaps: c.overflow_unmaps.load(Relaxed),
            overflow_reuses,
            decay_unmaps: c.decay_unmaps.load(Relaxed),
            exhausted,
            os_errors,
            timeouts,
            waiters: inner.waiters.len(),
            chunks: inner.arena.mapped_chunks(),
            mapped_bytes: inner.arena.mapped_bytes() + inner.overflow.mapped_bytes(),
            locked_bytes: inner.mem.locked_bytes(),
            poison_violations: inner.mem.poison_violations.load(Relaxed),
            trimmed_bytes: inner.mem.trimmed_bytes.load(Relaxed),
            classes: Vec::new(),
        }
    }

    /// Maps every chunk not mapped yet (faulting its pages in, as `prealloc` does at build) and puts its slots on
    /// the freelist; returns once every chunk is mapped, or with the reason it cannot be. Never spins on a chunk
    /// the budget refuses: `max_bytes` below the whole capacity is refused before anything is mapped, and a
    /// chunk refused because overflow buffers hold part of the budget ends the call. For `iovecs` (`uring.rs`).
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn map_all_chunks(&self) -> Result<(), MapAllError> {
        let inner = self.inner();
        let l = inner.arena.layout();
        // Cannot overflow: `layout` checked that the whole capacity with its slack fits in `isize::MAX`.
        let needed: usize = (0..l.chunks).map(|k| l.chunk_reserved(k)).sum();
        if let Some(max_bytes) = inner.budget.max() {
            if needed > max_bytes {
                return Err(MapAllError::OverBudget { max_bytes, needed });
            }
        }
        loop {
            match inner.arena.grow(true, &inner.mem, &inner.budget) {
                Ok(Grow::Grew(range)) => {
                    range.clone().for_each(|i| inner.free.push(i));
                    inner.arena.grew_event(&range);
                    inner.mem.emit_deferred();
                }
                // Full means every chunk is MAPPED; the Acquire loads make their bases visible here.
                Ok(Grow::Full) if inner.arena.all_mapped() => return Ok(()),
                // A chunk did not fit in the budget. All chunks together fit (checked above), so other
                // mappings hold part of it: reserved overflow buffers, which go first (registration is for
                // the pooled memory), then overflow buffers out, which come back only when their holders drop
                // them.
                Ok(Grow::Full) if inner.evict_one() => {}
                Ok(Grow::Full) => {
                    let held = inner
                        .budget
                        .used()
                        .saturating_sub(inner.arena.mapped_bytes());
                    return Err(MapAllError::BudgetHeld {
                        max_bytes: inner.budget.max().unwrap_or(usize::MAX),
                        needed,
                        held,
                    });
                }
                // Another thread is mapping a chunk: wait for its system call (it ends in MAPPED, or EMPTY
                // again, which we then claim ourselves).
                Ok(Grow::Busy) => crate::sync::yield_now(),
                Err(source) => {
                    if inner.waitable {
                        // The chunk's budget came back.
                        inner.after_release();
                    }
                    return Err(MapAllError::Os(source));
                }
            }
        }
    }

    /// Closes the pool's discard gate for good (io_uring registration: `iovecs`): returns once no trim is
    /// discarding pooled memory, and no trim discards any afterwards (see `gate.rs`).
    #[cfg_attr(
        not(any(all(feature = "io-uring", target_os = "linux"), all(loom, test))),
        allow(dead_code)
    )]
    pub(crate) fn close_discard_gate(&self) {
        self.inner().discard_gate.close();
    }

    /// Discards started so far (a loom-visible count, for the discard-gate model).
    #[cfg(all(loom, test))]
    pub(crate) fn discards(&self) -> usize {
        self.inner().discard_gate.discards()
    }

    /// Address of pooled slot `slot`, whose chunk must be mapped. For `iovecs` (`uring.rs`).
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn slot_ptr(&self, slot: u32) -> NonNull<u8> {
        self.inner().slot_ptr(slot)
    }

    /// Bytes per buffer of [`acquire`](Self::acquire) (the default class's, with size classes).
    pub fn buf_size(&self) -> usize {
        self.inner().arena.layout().buf_size
    }

    /// The most pooled buffers (of the default class, with size classes; [`stats`](Self::stats) has every
    /// class's).
    pub fn capacity(&self) -> usize {
        self.inner().arena.layout().capacity
    }

    /// Alignment of every buffer's start (at least the page size).
    pub fn alignment(&self) -> usize {
        self.inner().arena.layout().align
    }

    /// Slots each thread's cache starts with room for (0: caching off), per class with size classes (of the
    /// default class here). See [`PoolBuilder::thread_cache`](crate::PoolBuilder::thread_cache).
    pub fn thread_cache(&self) -> usize {
        self.inner().cache_size
    }

    /// Slots an adaptive thread cache may grow to (equal to [`thread_cache`](Self::thread_cache) for a fixed
    /// cache), per class with size classes (of the default class here). See
    /// [`PoolBuilder::max_thread_cache`](crate::PoolBuilder::max_thread_cache).
    pub fn max_thread_cache(&self) -> usize {
        self.inner().cache_max
    }

    /// The overflow policy.
    pub fn overflow_policy(&self) -> OverflowPolicy {
        self.inner().overflow.policy
    }

    /// The byte budget set with [`PoolBuilder::max_bytes`], if any.
    ///
    /// # Examples
    /// ```
    /// let pool = pagepool::PagePool::builder().capacity(4).build().unwrap();
    /// assert_eq!(pool.max_bytes(), None);
    /// let pool = pagepool::PagePool::builder().capacity(4).max_bytes(64 << 20).build().unwrap();
    /// assert_eq!(pool.max_bytes(), Some(64 << 20));
    /// ```
    pub fn max_bytes(&self) -> Option<usize> {
        self.inner().budget.max()
    }
}

impl PoolBuilder {
    /// Checks the settings and creates the pool (mapping all of its memory now if [`prealloc`](Self::prealloc)
    /// is set).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting to change: zero or non-page-multiple `buf_size`, bad `alignment` (or
    /// one above the huge page size with explicit huge pages: [`ConfigError::HugePageAlignment`]),
    /// zero or too large `capacity`, a total size past `isize::MAX`, a `max_bytes` that cannot hold one mapping
    /// ([`ConfigError::BudgetTooSmall`]) or the preallocated capacity ([`ConfigError::PreallocOverBudget`]),
    /// [`OverflowPolicy::Wait`] without a limit ([`ConfigError::WaitWithoutLimit`]), or [`ConfigError::Os`]
    /// when the OS refuses the preallocated memory (nothing stays mapped then).
    ///
    /// # Examples
    /// ```
    /// use pagepool::{ConfigError, PagePool};
    /// assert!(matches!(PagePool::builder().buf_size(0).build(), Err(ConfigError::ZeroBufSize { .. })));
    /// let pool = PagePool::builder().buf_size(8192).capacity(4).prealloc(true).build().unwrap();
    /// assert_eq!(pool.stats().idle, 4);
    /// ```
    pub fn build(self) -> Result<PagePool, ConfigError> {
        PagePool::from_builder(&self)
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

impl fmt::Debug for PagePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.inner().arena.layout();
        f.debug_struct("PagePool")
            .field("buf_size", &l.buf_size)
            .field("alignment", &l.align)
            .field("capacity", &l.capacity)
            .field("overflow", &self.inner().overflow.policy)
            .field("max_overflow", &self.inner().overflow.max)
            .field("max_bytes", &self.max_bytes())
            .field("thread_cache", &self.inner().cache_size)
            .field("max_thread_cache", &self.inner().cache_max)
            .field("stats", &self.stats())
            .finish()
    }
}
