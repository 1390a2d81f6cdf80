//! [`PagePool`]: the shared pool and its acquire/release paths.

use crate::arena::{Arena, Grow};
use crate::buf::AlignedBuf;
use crate::config::{Layout, PoolBuilder};
use crate::error::{AcquireError, ConfigError};
use crate::freelist::FreeList;
use crate::overflow::Overflow;
use crate::stats::{Counters, PoolStats};
use crate::sync::Arc;
use crate::sys::Mapping;
use crate::OverflowPolicy;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

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
    inner: Arc<Inner>,
}

/// State shared by every `PagePool` clone and every buffer out.
pub(crate) struct Inner {
    arena: Arena,
    free: FreeList,
    counters: Counters,
    overflow: Overflow,
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
    #[inline]
    pub(crate) fn release(&self, slot: u32) {
        self.free.push(slot);
    }

    pub(crate) fn release_overflow(&self, m: Mapping) {
        self.overflow.unmap(m, &self.counters);
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
        let pool = PagePool {
            inner: Arc::new(Inner {
                arena: Arena::new(layout),
                free,
                counters: Counters::new(),
                overflow: Overflow::new(b.overflow, b.max_overflow, layout.buf_size, layout.align),
            }),
        };
        if b.prealloc {
            let inner = &pool.inner;
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
        if let Some(slot) = self.inner.free.pop() {
            return Ok(self.pooled(slot));
        }
        self.acquire_slow()
    }

    #[inline]
    fn pooled(&self, slot: u32) -> AlignedBuf {
        let inner = &self.inner;
        inner.counters.hit();
        let ptr = inner.arena.slot_ptr(slot);
        AlignedBuf::pooled(Arc::clone(inner), slot, ptr, inner.arena.layout().buf_size)
    }

    #[cold]
    fn acquire_slow(&self) -> Result<AlignedBuf, AcquireError> {
        let inner = &self.inner;
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
        Ok(AlignedBuf::overflow(Arc::clone(inner), mapping))
    }

    /// A snapshot of the pool's counters and gauges. See [`PoolStats`] for when the fields add up.
    pub fn stats(&self) -> PoolStats {
        let inner = &self.inner;
        let c = &inner.counters;
        let pooled = inner.arena.mapped_slots();
        let idle = inner.free.len().min(pooled);
        let pool_hits = c.pool_hits();
        let overflow_maps = c.overflow_maps.load(Relaxed);
        let exhausted = c.exhausted.load(Relaxed);
        let os_errors = c.os_errors.load(Relaxed);
        PoolStats {
            capacity: inner.arena.layout().capacity,
            buf_size: inner.arena.layout().buf_size,
            pooled_buffers: pooled,
            idle,
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

    /// Bytes per buffer.
    pub fn buf_size(&self) -> usize {
        self.inner.arena.layout().buf_size
    }

    /// The most pooled buffers.
    pub fn capacity(&self) -> usize {
        self.inner.arena.layout().capacity
    }

    /// Alignment of every buffer's start (at least the page size).
    pub fn alignment(&self) -> usize {
        self.inner.arena.layout().align
    }

    /// The overflow policy.
    pub fn overflow_policy(&self) -> OverflowPolicy {
        self.inner.overflow.policy
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
        let l = self.inner.arena.layout();
        f.debug_struct("PagePool")
            .field("buf_size", &l.buf_size)
            .field("alignment", &l.align)
            .field("capacity", &l.capacity)
            .field("overflow", &self.inner.overflow.policy)
            .field("max_overflow", &self.inner.overflow.max)
            .field("stats", &self.stats())
            .finish()
    }
}
