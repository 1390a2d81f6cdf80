//! [`PagePool`]: the shared pool and its acquire/release paths.

use crate::arena::{Arena, Grow};
use crate::buf::AlignedBuf;
use crate::cache::{self, CacheStats};
use crate::config::{Layout, PoolBuilder};
use crate::depot::Depot;
use crate::error::{AcquireError, ConfigError};
use crate::freelist::FreeList;
use crate::overflow::{Overflow, OverflowBuf};
use crate::policy::MemPolicy;
use crate::stats::{Counters, PoolStats};
use crate::sync::{Arc, AtomicUsize};
use crate::{HugePages, LockPolicy, OverflowPolicy};
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
    /// `mem.scrub`, beside `cache_size` so the release path reads one line: non-zero when released buffers
    /// are zeroed or poisoned.
    pub(crate) scrub: u8,
    /// Zeroing, poisoning, locking, advice, guard pages, trimming.
    pub(crate) mem: MemPolicy,
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
    pub(crate) unsafe fn release(this: NonNull<Inner>, slot: u32, ptr: NonNull<u8>) {
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { this.as_ref() };
        // No `is_closing` load here: a cache refuses entries for a closing pool, and every cache operation
        // first sweeps away the entries of pools closed since its last look (`cache.rs`), so the release
        // path reads no line that other threads write.
        if inner.cache_size > 0 && cache::release(this, cache::Cached { slot, ptr }) {
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
    pub(crate) unsafe fn release_overflow(this: NonNull<Inner>, b: OverflowBuf) {
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { this.as_ref() };
        inner.overflow.unmap(b, &inner.counters, &inner.mem);
        // SAFETY: the mapping is gone; this is the buffer's reference.
        unsafe { Inner::release_refs(this, 1) };
    }
}

impl Inner {
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
    #[inline]
    pub(crate) fn idle_tick(&self) {
        if let Some(t) = &self.mem.idle {
            if let Some(n) = t.tick(self.shared_idle()) {
                self.trim_shared(n, "idle");
            }
        }
    }

    /// Gives the physical memory of up to `n` idle shared buffers back to the OS, longest idle first, and puts
    /// them back in the freelist. Returns the bytes given back. Locked pools are never trimmed.
    ///
    /// The buffers being trimmed are out of the freelist meanwhile (owned by this call, so nobody sees their
    /// memory change); an acquire that finds the shared pool empty in that window takes the overflow path.
    fn trim_shared(&self, n: usize, why: &'static str) -> usize {
        if n == 0 || self.mem.lock != LockPolicy::Off {
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
        while left > 0 && failed.is_none() {
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
            batch.sort_unstable();
            // Runs of consecutive slots of one chunk are one range when nothing (no guard) lies between them.
            let mut i = 0;
            while i < batch.len() {
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
                if let Err(e) = crate::sys::discard(self.arena.slot_ptr(first), len) {
                    failed = Some(e);
                    break;
                }
                bytes += len;
            }
            batch.iter().for_each(|&s| self.free.push(s));
        }
        if let Some(error) = failed {
            tracing::warn!(target: "pagepool", error = %error, "trim: the OS refused to take idle memory back");
        }
        if bytes > 0 {
            self.mem.trimmed(bytes);
            tracing::debug!(target: "pagepool", bytes, why, "trimmed idle pooled memory");
        }
        bytes
    }
}

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
            overflow: Overflow::new(b.overflow, b.max_overflow, &layout),
            state: AtomicUsize::new(REF),
            cache_size: layout.thread_cache,
            scrub: mem.scrub,
            mem,
            depot: Depot::new(layout.capacity, layout.thread_cache / 2),
            trim_epoch: StdAtomicU64::new(0),
            caches: Registry::default(),
            retired_hits: StdAtomicU64::new(0),
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
                match inner.arena.grow(true, &inner.mem) {
                    Ok(Grow::Grew(range)) => range.for_each(|i| inner.free.push(i)),
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
            if let Some(c) = cache::acquire(self.handle.inner) {
                return Ok(self.buf_at(c.slot, c.ptr));
            }
        }
        self.acquire_slow()
    }

    /// Takes a buffer of at least `len` bytes: from the smallest size class that fits (its `len()` is the class
    /// size; see [`PoolBuilder::size_classes`]), or, above the largest class (or above `buf_size` in a
    /// single-size pool), from the overflow path: a mapping of `len` rounded up to the page size, unmapped on
    /// drop, under the largest class's overflow policy and `max_overflow`. `acquire_len(0)` is the smallest
    /// class. Never blocks.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), for the chosen class; [`AcquireError::Os`] also when `len` rounded up to
    /// the page size does not fit in the address space.
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
            inner.counters.os_errors.fetch_add(1, Relaxed);
            return Err(AcquireError::Os {
                bytes: len,
                source: std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    "requested length overflows the address space",
                ),
            });
        };
        let b = inner.overflow.map_sized(
            &inner.counters,
            inner.arena.layout().capacity,
            &inner.mem,
            bytes,
        )?;
        inner.add_refs(1);
        Ok(AlignedBuf::overflow(self.handle.inner, b))
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

    #[inline]
    fn inner(&self) -> &Inner {
        // SAFETY: the handle holds a reference on Inner for as long as `self` lives.
        unsafe { self.handle.inner.as_ref() }
    }

    /// Wraps a slot that already carries its reference.
    #[inline]
    fn buf(&self, slot: u32) -> AlignedBuf {
        self.buf_at(slot, self.inner().arena.slot_ptr(slot))
    }

    /// [`buf`](Self::buf) with the slot's address already known.
    #[inline]
    fn buf_at(&self, slot: u32, ptr: NonNull<u8>) -> AlignedBuf {
        let inner = self.inner();
        let len = inner.arena.layout().buf_size;
        crate::sys::unpoison(ptr.as_ptr(), len);
        if inner.scrub != 0 {
            inner.mem.on_acquire(ptr, len, slot);
        }
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
            inner.idle_tick();
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
            match inner.arena.grow(false, &inner.mem) {
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
                    let bytes = l.chunk_len(0);
                    tracing::error!(target: "pagepool", bytes, error = %source, "chunk mmap failed");
                    return Err(AcquireError::Os { bytes, source });
                }
            }
        }
        // Every chunk is mapped: a release may have refilled the freelist since our first look.
        if let Some(slot) = inner.free.pop() {
            return Ok(self.pooled(slot));
        }
        let b = inner
            .overflow
            .map(&inner.counters, inner.arena.layout().capacity, &inner.mem)?;
        inner.add_refs(1);
        Ok(AlignedBuf::overflow(self.handle.inner, b))
    }

    /// Gives idle memory back: flushes idle buffers out of thread caches to the shared freelist (this thread's
    /// cache now, every other thread's cache at that thread's next pool operation), then returns the physical
    /// memory of every idle buffer in the shared pool to the OS (`MADV_DONTNEED` on unix, which lowers RSS at
    /// once; `MEM_DECOMMIT` and a fresh `MEM_COMMIT` on Windows). Returns the bytes given back.
    ///
    /// The buffers stay in the pool: the next use of one faults in fresh zeroed pages. Chunks stay mapped
    /// (address space, no memory), so the freelist never names unmapped memory. Memory locked by
    /// [`lock_memory`](crate::PoolBuilder::lock_memory) is not given back. While `trim` works, the buffers it
    /// holds are briefly unavailable: an acquire that finds the shared pool empty meanwhile overflows.
    /// Overflow buffers need no trimming: they are unmapped when released.
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
        inner.trim_epoch.fetch_add(1, Relaxed);
        cache::bump_sweep_epoch();
        cache::flush_local(self.handle.inner);
        inner.trim_shared(inner.shared_idle(), "trim")
    }

    /// Runs the [`idle_trim_after`](crate::PoolBuilder::idle_trim_after) check now: if a trim period has ended,
    /// gives back the memory of the buffers that stayed idle in the shared pool through all of it. Returns the
    /// bytes given back (0 if no period ended, or without `idle_trim_after`).
    ///
    /// The pool makes this check itself on its slow paths; call this from a timer of your own when the pool
    /// may go quiet (no thread of the pool's own does).
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
        match &inner.mem.idle {
            Some(t) => t
                .tick(inner.shared_idle())
                .map_or(0, |n| inner.trim_shared(n, "idle")),
            None => 0,
        }
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
            locked_bytes: inner.mem.locked_bytes(),
            poison_violations: inner.mem.poison_violations.load(Relaxed),
            trimmed_bytes: inner.mem.trimmed_bytes.load(Relaxed),
            classes: Vec::new(),
        }
    }

    /// Maps every chunk not mapped yet (faulting its pages in, as `prealloc` does at build) and puts its slots on
    /// the freelist; returns once every chunk is mapped. For `iovecs` (`uring.rs`).
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn map_all_chunks(&self) -> std::io::Result<()> {
        let inner = self.inner();
        loop {
            match inner.arena.grow(true, &inner.mem)? {
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

    /// Slots each thread's cache holds at most (0: caching off), per class with size classes (of the default
    /// class here).
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
