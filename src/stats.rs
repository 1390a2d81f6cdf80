//! Counters and the [`PoolStats`] snapshot.
//!
//! The only counter written on the pooled hot path (`pool_hits`) is striped: each thread adds to one of
//! [`STRIPES`] cache-line-padded cells, and [`Counters::snapshot`] sums them. Counters of the slow paths
//! (overflow, exhaustion, OS errors) are single relaxed atomics: those paths make system calls anyway.
//! Gauges (`idle`, `in_use`, `mapped_bytes`, ...) are derived from the pool's state, not counted twice.

use crate::sync::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// Number of stripes of the hot counter: a power of two comfortably above common core counts.
const STRIPES: usize = 16;

/// One value on its own cache line (128 bytes covers adjacent-line prefetch on x86).
#[repr(align(128))]
#[derive(Debug)]
struct Padded<T>(T);

/// Monotonic event counters of one pool.
#[derive(Debug)]
pub(crate) struct Counters {
    hits: [Padded<AtomicU64>; STRIPES],
    pub(crate) overflow_maps: AtomicU64,
    pub(crate) overflow_unmaps: AtomicU64,
    pub(crate) overflow_reuses: AtomicU64,
    pub(crate) decay_unmaps: AtomicU64,
    pub(crate) exhausted: AtomicU64,
    pub(crate) os_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) reclaimed: AtomicU64,
}

#[cfg(not(loom))]
fn stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        // Relaxed: only spreads threads over stripes; any value is correct.
        let v = NEXT.fetch_add(1, Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

#[cfg(loom)]
fn stripe() -> usize {
    0
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            hits: std::array::from_fn(|_| Padded(AtomicU64::new(0))),
            overflow_maps: AtomicU64::new(0),
            overflow_unmaps: AtomicU64::new(0),
            overflow_reuses: AtomicU64::new(0),
            decay_unmaps: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            os_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
        }
    }

    /// Counts one acquire served from pooled memory.
    #[inline]
    pub(crate) fn hit(&self) {
        // Relaxed (as every counter here): a statistic; the read-modify-write loses no count, and no other
        // memory is read on the strength of a counter.
        self.hits[stripe()].0.fetch_add(1, Relaxed);
    }

    pub(crate) fn pool_hits(&self) -> u64 {
        // Relaxed: a snapshot, exact once the pool is quiet (`PoolStats`).
        self.hits.iter().map(|c| c.0.load(Relaxed)).sum()
    }
}

/// A point-in-time snapshot of a pool's state, from [`PagePool::stats`](crate::PagePool::stats).
///
/// Counters are read one by one without stopping other threads, so while buffers are moving the fields may
/// disagree by the operations in flight; once the pool is quiet they add up exactly:
/// `idle + in_use + uncommitted == pooled_buffers` and
/// `acquires == pool_hits + overflow_maps + overflow_reuses + exhausted + os_errors + timeouts` and
/// `overflow_maps == overflow_unmaps + overflow_in_use + reserve_buffers`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Configured capacity: the most pooled buffers.
    pub capacity: usize,
    /// Bytes per buffer.
    pub buf_size: usize,
    /// Pooled buffers mapped so far (grows chunk by chunk up to `capacity`).
    pub pooled_buffers: usize,
    /// Pooled buffers idle: in the shared freelist or in a thread cache.
    pub idle: usize,
    /// Of the idle buffers, those resting in thread caches.
    pub cached: usize,
    /// Pooled buffers held by callers.
    pub in_use: usize,
    /// Pooled buffers (not bytes) held out of the pool because the OS could not commit their memory again
    /// after a trim gave it back (Windows, under commit pressure; always 0 on unix, where trimming cannot leave
    /// memory unusable). Neither idle nor in use: they are never handed out while their memory is not
    /// committed. The pool retries the commit at every [`trim`](crate::PagePool::trim) and idle-trim period and
    /// whenever an acquire finds the shared pool empty, and puts them back as soon as it succeeds; a `warn!`
    /// event (target `pagepool`) reports each trim that held buffers out.
    pub uncommitted: usize,
    /// Overflow buffers held by callers.
    pub overflow_in_use: usize,
    /// Released overflow buffers kept mapped in the overflow reserve for the next overflow acquire
    /// ([`overflow_decay`](crate::PoolBuilder::overflow_decay)). Each still holds its overflow permit and its
    /// bytes of `max_bytes`, and counts in `mapped_bytes` (and `locked_bytes`) until it is unmapped.
    pub reserve_buffers: usize,
    /// Bytes the reserved buffers reserve from the OS (their mappings plus alignment slack, as in
    /// `mapped_bytes`).
    pub reserve_bytes: usize,
    /// `acquire`, `acquire_timeout` and `acquire_async` calls so far, successful or not (a call that waited
    /// counts once; an `acquire_async` future dropped while waiting counts nothing).
    pub acquires: u64,
    /// Acquires served from pooled memory.
    pub pool_hits: u64,
    /// Overflow buffers mapped (fresh `mmap`s only: an acquire served from the reserve counts in
    /// `overflow_reuses` instead).
    pub overflow_maps: u64,
    /// Overflow buffers unmapped: on release (no reserve, or the reserve full), and reserved buffers unmapped by
    /// decay, [`trim`](crate::PagePool::trim), to make room for another mapping, or when the pool closes.
    pub overflow_unmaps: u64,
    /// Overflow acquires served from the reserve: a buffer mapped earlier, no system call.
    pub overflow_reuses: u64,
    /// Of `overflow_unmaps`, reserved buffers unmapped because they stayed idle longer than the
    /// [`overflow_decay`](crate::PoolBuilder::overflow_decay).
    pub decay_unmaps: u64,
    /// Acquires refused with `AcquireError::Exhausted`.
    pub exhausted: u64,
    /// Acquires that failed because the OS refused memory (`AcquireError::Os`).
    pub os_errors: u64,
    /// `acquire_timeout` calls that ended with `AcquireError::Timeout`.
    pub timeouts: u64,
    /// Idle slots taken back from thread caches by [`PagePool::trim`](crate::PagePool::trim) and by acquires
    /// that found the shared pool empty (each such slot then served some thread instead of an overflow buffer
    /// or a refusal). See [`thread_cache`](crate::PoolBuilder::thread_cache).
    pub reclaimed: u64,
    /// Callers waiting now at the pool's limit (`OverflowPolicy::Wait`).
    pub waiters: usize,
    /// Chunks (mappings) of pooled memory mapped now.
    pub chunks: usize,
    /// Bytes currently mapped by the pool: pooled chunks plus overflow buffers, out or reserved (including
    /// alignment slack). Never more than `max_bytes` when one is set.
    pub mapped_bytes: usize,
    /// Bytes locked in RAM by [`lock_memory`](crate::PoolBuilder::lock_memory): pooled chunks mapped so far and
    /// overflow buffers out or reserved. Below `mapped_bytes` under [`LockPolicy::BestEffort`](crate::LockPolicy) when the
    /// limit was reached.
    pub locked_bytes: usize,
    /// Released buffers found modified on their next acquire by
    /// [`poison_on_release`](crate::PoolBuilder::poison_on_release): writes after release.
    pub poison_violations: u64,
    /// Bytes of idle pooled memory given back to the OS by [`trim`](crate::PagePool::trim) and idle trimming
    /// so far (memory trimmed twice counts twice).
    pub trimmed_bytes: u64,
    /// One row per size class, smallest first, for a pool built with
    /// [`size_classes`](crate::PoolBuilder::size_classes) (empty otherwise). The fields above are then the
    /// sums over the classes, except `buf_size`, which is the default class's.
    pub classes: Vec<PoolStats>,
}

impl PoolStats {
    /// Field-by-field sum (the rows' own `classes` are not carried over).
    pub(crate) fn add(self, r: &PoolStats) -> PoolStats {
        PoolStats {
            capacity: self.capacity + r.capacity,
            buf_size: self.buf_size,
            pooled_buffers: self.pooled_buffers + r.pooled_buffers,
            idle: self.idle + r.idle,
            cached: self.cached + r.cached,
            in_use: self.in_use + r.in_use,
            uncommitted: self.uncommitted + r.uncommitted,
            overflow_in_use: self.overflow_in_use + r.overflow_in_use,
            acquires: self.acquires + r.acquires,
            pool_hits: self.pool_hits + r.pool_hits,
            overflow_maps: self.overflow_maps + r.overflow_maps,
            overflow_unmaps: self.overflow_unmaps + r.overflow_unmaps,
            overflow_reuses: self.overflow_reuses + r.overflow_reuses,
            decay_unmaps: self.decay_unmaps + r.decay_unmaps,
            reserve_buffers: self.reserve_buffers + r.reserve_buffers,
            reserve_bytes: self.reserve_bytes + r.reserve_bytes,
            exhausted: self.exhausted + r.exhausted,
            os_errors: self.os_errors + r.os_errors,
            chunks: self.chunks + r.chunks,
            mapped_bytes: self.mapped_bytes + r.mapped_bytes,
            locked_bytes: self.locked_bytes + r.locked_bytes,
            poison_violations: self.poison_violations + r.poison_violations,
            trimmed_bytes: self.trimmed_bytes + r.trimmed_bytes,
            timeouts: self.timeouts + r.timeouts,
            reclaimed: self.reclaimed + r.reclaimed,
            waiters: self.waiters + r.waiters,
            classes: Vec::new(),
        }
    }
}
