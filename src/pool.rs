//! [`PagePool`]: the shared pool and its acquire/release paths.

use crate::arena::{Arena, Grow};
use crate::buf::AlignedBuf;
use crate::cache::{self, CacheStats};
use crate::config::{Layout, PoolBuilder};
use crate::depot::Depot;
use crate::error::{AcquireError, ConfigError};
use crate::freelist::FreeList;
use crate::overflow::Overflow;
use crate::stats::{Counters, PoolStats};
use crate::sync::{Arc, AtomicUsize};
use crate::sys::Mapping;
use crate::OverflowPolicy;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::Arc as StdArc;

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
    inner: NonNull<Inner>,
}

// SAFETY: Handle is a counted reference to Inner, which is Send + Sync (all shared state is atomic or locked).
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // A single-threaded program gets its memory back right here: flush our own cache first.
        cache::close_local(self.inner);
        // SAFETY: the handles' reference is still held, so Inner is alive.
        let inner = unsafe { self.inner.as_ref() };
        // Drop the handles' reference and set CLOSING in one step: REF - CLOSING = 1.
        let prev = inner.state.fetch_sub(REF - CLOSING, AcqRel);
        // Tell other threads' caches to let go of this pool at their next operation.
        cache::bump_sweep_epoch();
        if prev == REF {
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
    /// Slots a thread cache holds at most (0: no caches).
    pub(crate) cache_size: usize,
    /// Full magazines of half a cache each, for batch refills and flushes (none without caches).
    pub(crate) depot: Option<Depot>,
    /// Bumped by `trim`: caches flush when they see a new value.
    trim_epoch: StdAtomicU64,
    /// Stats of live thread caches (registration is once per thread per pool).
    caches: Registry,
    /// Cache hits of caches that have gone.
    retired_hits: StdAtomicU64,
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

impl Inner {
    /// Takes `n` more references. The caller must already hold one (so the count cannot be zero).
    #[inline]
    pub(crate) fn add_refs(&self, n: usize) {
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
        drop(unsafe { Box::from_raw(this.as_ptr()) });
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.state.load(Relaxed) & CLOSING != 0
    }

    pub(crate) fn trim_epoch(&self) -> u64 {
        self.trim_epoch.load(Relaxed)
    }

    pub(crate) fn register_cache(&self) -> StdArc<CacheStats> {
        let stats = StdArc::new(CacheStats::default());
        self.caches.with(|c| c.push(stats.clone()));
        stats
    }

    pub(crate) fn unregister_cache(&self, stats: &StdArc<CacheStats>, hits: u64) {
        self.caches.with(|caches| {
            caches.retain(|c| !StdArc::ptr_eq(c, stats));
            // Fold under the lock so a concurrent `stats()` never counts these hits twice or not at all.
            self.retired_hits.fetch_add(hits, Relaxed);
        });
    }

    /// Returns a pooled slot (and its reference) that a buffer held.
    ///
    /// # Safety
    /// The caller owns the slot and one reference, and does not touch `this` afterwards.
    #[inline]
    pub(crate) unsafe fn release(this: NonNull<Inner>, slot: u32) {
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { this.as_ref() };
        // No `is_closing` load here: a cache refuses entries for a closing pool, and every cache operation
        // first sweeps away the entries of pools closed since its last look (`cache.rs`), so the release
        // path reads no line that other threads write.
        if inner.cache_size > 0 && cache::release(this, slot) {
            return;
        }
        inner.free.push(slot);
        // SAFETY: the slot is back in the freelist; this is the buffer's reference.
        unsafe { Inner::release_refs(this, 1) };
    }

    /// Unmaps an overflow buffer and drops its reference.
    ///
    /// # Safety
    /// As for [`Inner::release`].
    pub(crate) unsafe fn release_overflow(this: NonNull<Inner>, m: Mapping) {
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { this.as_ref() };
        inner.overflow.unmap(m, &inner.counters);
        // SAFETY: the mapping is gone; this is the buffer's reference.
        unsafe { Inner::release_refs(this, 1) };
    }
}

impl PagePool {
    /// Starts configuring a pool. See [`PoolBuilder`] for the settings and their defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    pub(crate) fn from_builder(b: &PoolBuilder) -> Result<PagePool, ConfigError> {
        let layout: Layout = b.layout()?;
        let free = FreeList::new(layout.capacity)?;
        let inner = Box::new(Inner {
            arena: Arena::new(layout),
            free,
            counters: Counters::new(),
            overflow: Overflow::new(b.overflow, b.max_overflow, layout.buf_size, layout.align),
            state: AtomicUsize::new(REF),
            cache_size: layout.thread_cache,
            depot: Depot::new(layout.capacity, layout.thread_cache / 2),
            trim_epoch: StdAtomicU64::new(0),
            caches: Registry::default(),
            retired_hits: StdAtomicU64::new(0),
        });
        let pool = PagePool {
            handle: Arc::new(Handle {
                inner: NonNull::from(Box::leak(inner)),
            }),
        };
        if b.prealloc {
            let inner = pool.inner();
            loop {
                match inner.arena.grow(true) {
                    Ok(Grow::Grew(range)) => range.for_each(|i| inner.free.push(i)),
                    Ok(Grow::Busy | Grow::Full) => break,
                    Err(source) => {
                        let bytes = layout.chunk_slots(0) * layout.stride;
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
    /// capacity; otherwise by the overflow policy: [`OverflowPolicy::Map`] maps a buffer's pages directly
    /// (unmapped again on drop), [`OverflowPolicy::Fail`] refuses.
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
    pub fn acquire(&self) -> Result<AlignedBuf, AcquireError> {
        let inner = self.inner();
        if inner.cache_size > 0 {
            if let Some(slot) = cache::acquire(self.handle.inner) {
                return Ok(self.buf(slot));
            }
        }
        self.acquire_slow()
    }

    #[inline]
    fn inner(&self) -> &Inner {
        // SAFETY: the handle holds a reference on Inner for as long as `self` lives.
        unsafe { self.handle.inner.as_ref() }
    }

    /// Wraps a slot that already carries its reference.
    #[inline]
    fn buf(&self, slot: u32) -> AlignedBuf {
        let inner = self.inner();
        let ptr = inner.arena.slot_ptr(slot);
        let len = inner.arena.layout().buf_size;
        crate::sys::unpoison(ptr.as_ptr(), len);
        AlignedBuf::pooled(self.handle.inner, slot, ptr, len)
    }

    /// Wraps a slot taken from the shared freelist or a new chunk: counts the hit and takes its reference.
    fn pooled(&self, slot: u32) -> AlignedBuf {
        let inner = self.inner();
        inner.counters.hit();
        inner.add_refs(1);
        self.buf(slot)
    }

    #[cold]
    fn acquire_slow(&self) -> Result<AlignedBuf, AcquireError> {
        let inner = self.inner();
        if let Some(slot) = inner.free.pop() {
            return Ok(self.pooled(slot));
        }
        // The thread cache was unavailable (thread exit) or empty and the freelist is empty: idle slots may
        // still sit in full magazines. Take one, keep a slot, and leave the rest on the freelist.
        if let Some(d) = &inner.depot {
            let mut slots = Vec::new();
            if d.take(&mut slots) {
                let first = slots.pop();
                slots.into_iter().for_each(|s| inner.free.push(s));
                if let Some(first) = first {
                    return Ok(self.pooled(first));
                }
            }
        }
        loop {
            match inner.arena.grow(false) {
                Ok(Grow::Grew(range)) => {
                    let first = range.start;
                    (first + 1..range.end).for_each(|i| inner.free.push(i));
                    return Ok(self.pooled(first));
                }
                Ok(Grow::Full) => break,
                // Another thread is inside mmap for the last unclaimed chunk. Capacity is not reached, so
                // waiting for that one system call to finish beats a spurious overflow or `Exhausted`.
                Ok(Grow::Busy) => {
                    if let Some(slot) = inner.free.pop() {
                        return Ok(self.pooled(slot));
                    }
                    crate::sync::yield_now();
                }
                Err(source) => {
                    inner.counters.os_errors.fetch_add(1, Relaxed);
                    let l = inner.arena.layout();
                    let bytes = l.chunk_slots(0) * l.stride;
                    tracing::error!(target: "pagepool", bytes, error = %source, "chunk mmap failed");
                    return Err(AcquireError::Os { bytes, source });
                }
            }
        }
        // Every chunk is mapped: a release may have refilled the freelist since our first look.
        if let Some(slot) = inner.free.pop() {
            return Ok(self.pooled(slot));
        }
        let mapping = inner
            .overflow
            .map(&inner.counters, inner.arena.layout().capacity)?;
        inner.add_refs(1);
        Ok(AlignedBuf::overflow(self.handle.inner, mapping))
    }

    /// Flushes idle buffers out of thread caches back to the shared freelist: this thread's cache now, every
    /// other thread's cache at that thread's next pool operation.
    ///
    /// Use it after a burst on short-lived worker threads, or before reading [`stats`](Self::stats) when an
    /// exact count of the shared freelist matters.
    ///
    /// # Examples
    /// ```
    /// let pool = pagepool::PagePool::builder().capacity(64).thread_cache(8).build().unwrap();
    /// drop(pool.acquire().unwrap()); // the buffer rests in this thread's cache
    /// assert_eq!(pool.stats().cached, 1);
    /// pool.trim();
    /// assert_eq!(pool.stats().cached, 0);
    /// ```
    pub fn trim(&self) {
        let inner = self.inner();
        inner.trim_epoch.fetch_add(1, Relaxed);
        cache::bump_sweep_epoch();
        cache::flush_local(self.handle.inner);
    }

    /// A snapshot of the pool's counters and gauges. See [`PoolStats`] for when the fields add up.
    pub fn stats(&self) -> PoolStats {
        let inner = self.inner();
        let c = &inner.counters;
        let (cached, cache_hits) = inner.caches.with(|caches| {
            let cached: usize = caches.iter().map(|s| s.cached.load(Acquire)).sum();
            let hits: u64 = caches.iter().map(|s| s.hits.load(Relaxed)).sum();
            (cached, hits + inner.retired_hits.load(Relaxed))
        });
        let pooled = inner.arena.mapped_slots();
        let in_depot = inner.depot.as_ref().map_or(0, Depot::idle);
        let idle = (inner.free.len() + in_depot + cached).min(pooled);
        let pool_hits = c.pool_hits() + cache_hits;
        let overflow_maps = c.overflow_maps.load(Relaxed);
        let exhausted = c.exhausted.load(Relaxed);
        let os_errors = c.os_errors.load(Relaxed);
        PoolStats {
            capacity: inner.arena.layout().capacity,
            buf_size: inner.arena.layout().buf_size,
            pooled_buffers: pooled,
            idle,
            cached: cached.min(idle),
            in_use: pooled - idle,
            overflow_in_use: inner.overflow.in_use(),
            acquires: pool_hits + overflow_maps + exhausted + os_errors,
            pool_hits,
            overflow_maps,
            overflow_unmaps: c.overflow_unmaps.load(Relaxed),
            exhausted,
            os_errors,
            chunks: inner.arena.mapped_chunks(),
            mapped_bytes: inner.arena.mapped_bytes() + inner.overflow.mapped_bytes(),
        }
    }

    /// Maps every chunk not mapped yet (faulting its pages in, as `prealloc` does at build) and puts its slots on
    /// the freelist; returns once every chunk is mapped. For `iovecs` (`uring.rs`).
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn map_all_chunks(&self) -> std::io::Result<()> {
        let inner = self.inner();
        loop {
            match inner.arena.grow(true)? {
                Grow::Grew(range) => range.for_each(|i| inner.free.push(i)),
                // Full means every chunk is MAPPED; the Acquire loads make their bases visible here.
                Grow::Full if inner.arena.all_mapped() => return Ok(()),
                Grow::Full => crate::sync::yield_now(),
                // Another thread is mapping the last chunk: wait for its system call.
                Grow::Busy => crate::sync::yield_now(),
            }
        }
    }

    /// Address of pooled slot `slot`, whose chunk must be mapped. For `iovecs` (`uring.rs`).
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn slot_ptr(&self, slot: u32) -> NonNull<u8> {
        self.inner().arena.slot_ptr(slot)
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> usize {
        self.inner().arena.layout().buf_size
    }

    /// The most pooled buffers.
    pub fn capacity(&self) -> usize {
        self.inner().arena.layout().capacity
    }

    /// Alignment of every buffer's start (at least the page size).
    pub fn alignment(&self) -> usize {
        self.inner().arena.layout().align
    }

    /// Slots each thread's cache holds at most (0: caching off).
    pub fn thread_cache(&self) -> usize {
        self.inner().cache_size
    }

    /// The overflow policy.
    pub fn overflow_policy(&self) -> OverflowPolicy {
        self.inner().overflow.policy
    }
}

impl PoolBuilder {
    /// Checks the settings and creates the pool (mapping all of its memory now if [`prealloc`](Self::prealloc)
    /// is set).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting to change: zero or non-page-multiple `buf_size`, bad `alignment`,
    /// zero or too large `capacity`, a total size past `isize::MAX`, or [`ConfigError::Os`] when the OS refuses
    /// the preallocated memory (nothing stays mapped then).
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

impl fmt::Debug for PagePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.inner().arena.layout();
        f.debug_struct("PagePool")
            .field("buf_size", &l.buf_size)
            .field("alignment", &l.align)
            .field("capacity", &l.capacity)
            .field("overflow", &self.inner().overflow.policy)
            .field("max_overflow", &self.inner().overflow.max)
            .field("thread_cache", &self.inner().cache_size)
            .field("stats", &self.stats())
            .finish()
    }
}
