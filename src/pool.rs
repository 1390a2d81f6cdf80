//! [`PagePool`]: the public handle (dropping its last clone closes the pool), building, stats and accessors. The
//! acquire ladder is in `take.rs`, trimming in `trim.rs`, releases in `release.rs`, and the shared state with its
//! lifetime protocol in `shared.rs`.

use crate::arena::{Arena, Grow};
use crate::budget::Budget;
use crate::cache;
use crate::config::{Layout, PoolBuilder};
use crate::depot::Depot;
use crate::error::ConfigError;
use crate::gate::DiscardGate;
use crate::numa::{NodeFree, Placement};
use crate::overflow::Overflow;
use crate::policy::MemPolicy;
use crate::shared::{bump_sweep_epoch, Inner, Registry, CLOSING, REF};
use crate::stats::{Counters, PoolStats};
use crate::sync::{Arc, AtomicU64, AtomicUsize};
use crate::uncommitted::Uncommitted;
use crate::wait::Waiters;
use crate::{HugePages, OverflowPolicy};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

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
    pub(crate) handle: Arc<Handle>,
}

/// The one reference all `PagePool` clones share; dropping the last clone closes the pool.
pub(crate) struct Handle {
    /// The pool's shared state; with size classes, the default class's, owned by that class's own handle.
    pub(crate) inner: NonNull<Inner>,
    /// Size classes, smallest first, each a single-size pool of its own; empty for a single-size pool.
    pub(crate) classes: Box<[PagePool]>,
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
        // Every other thread's cache of this pool ends now, with its idle slots and its reference: a thread
        // that used the pool and then never touches it again (blocked, or busy elsewhere) no longer keeps the
        // memory mapped until it exits (`cache.rs`, "Reclaim"). No cache registers after this.
        cache::reclaim(inner, cache::Reclaim::Kill);
        // Drop the handles' reference.
        let prev = inner.state.fetch_sub(REF, AcqRel);
        // Tell other threads' caches to let go of this pool at their next operation.
        bump_sweep_epoch();
        if prev == REF | CLOSING {
            // SAFETY: the count was exactly our reference and CLOSING is now set: nobody else holds a
            // reference, and nobody can take one (that needs a handle or a buffer). We free exactly once.
            unsafe { Inner::free(self.inner) };
        }
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
        let placement = Placement::new(b, &layout);
        let free = NodeFree::new(&layout, &placement);
        let by_node = free.by_node();
        let mem = MemPolicy::new(b, placement);
        let inner = Box::new(Inner {
            arena: Arena::new(layout),
            free,
            counters: Counters::new(),
            overflow: Overflow::new(b.overflow, b.max_overflow, b.overflow_decay, &layout),
            state: AtomicUsize::new(REF),
            cache_size: layout.thread_cache,
            scrub: mem.scrub,
            mem,
            // No depot when slots are sorted by node (`NodeFree::by_node`): refills and flushes then go through
            // the per-node lists, so a thread's cache refills from its own node first.
            depot: if by_node {
                None
            } else {
                Depot::new(layout.capacity, layout.thread_cache / 2)
            },
            trim_epoch: AtomicU64::new(0),
            cache_max: layout.thread_cache_max,
            cache_room: AtomicUsize::new(if layout.thread_cache_max > layout.thread_cache {
                layout.capacity
            } else {
                0
            }),
            caches: Registry::default(),
            reclaim_lock: crate::sync::Mutex::new(()),
            reclaim: b.reclaim,
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
                match inner
                    .arena
                    .grow(true, &inner.mem, &inner.budget, &inner.free)
                {
                    Ok(Grow::Grew(range)) => {
                        inner.free.push_fresh(range.clone());
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

    /// The buffer sizes this pool serves from pooled memory, smallest first: the size classes, or just
    /// `buf_size`.
    pub fn size_classes(&self) -> Vec<usize> {
        if self.handle.classes.is_empty() {
            vec![self.buf_size()]
        } else {
            self.handle.classes.iter().map(PagePool::buf_size).collect()
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
    pub(crate) fn inner(&self) -> &Inner {
        // SAFETY: the handle holds a reference on Inner for as long as `self` lives.
        unsafe { self.handle.inner.as_ref() }
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
            let cached: usize = caches.live.iter().map(|s| s.cached.load(Acquire)).sum();
            let hits: u64 = caches.live.iter().map(|s| s.hits.load(Relaxed)).sum();
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
            reclaimed: c.reclaimed.load(Relaxed),
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
            match inner
                .arena
                .grow(true, &inner.mem, &inner.budget, &inner.free)
            {
                Ok(Grow::Grew(range)) => {
                    inner.free.push_fresh(range.clone());
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
