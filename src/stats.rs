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
    pub(crate) exhausted: AtomicU64,
    pub(crate) os_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
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
            exhausted: AtomicU64::new(0),
            os_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// Counts one acquire served from pooled memory.
    #[inline]
    pub(crate) fn hit(&self) {
        self.hits[stripe()].0.fetch_add(1, Relaxed);
    }

    pub(crate) fn pool_hits(&self) -> u64 {
        self.hits.iter().map(|c| c.0.load(Relaxed)).sum()
    }
}

/// A point-in-time snapshot of a pool's state, from [`PagePool::stats`](crate::PagePool::stats).
///
/// Counters are read one by one without stopping other threads, so while buffers are moving the fields may
/// disagree by the operations in flight; once the pool is quiet they add up exactly:
/// `idle + in_use == pooled_buffers` and
/// `acquires == pool_hits + overflow_maps + exhausted + os_errors + timeouts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// Overflow buffers held by callers.
    pub overflow_in_use: usize,
    /// `acquire`, `acquire_timeout` and `acquire_async` calls so far, successful or not (a call that waited
    /// counts once; an `acquire_async` future dropped while waiting counts nothing).
    pub acquires: u64,
    /// Acquires served from pooled memory.
    pub pool_hits: u64,
    /// Overflow buffers mapped.
    pub overflow_maps: u64,
    /// Overflow buffers unmapped.
    pub overflow_unmaps: u64,
    /// Acquires refused with `AcquireError::Exhausted`.
    pub exhausted: u64,
    /// Acquires that failed because the OS refused memory (`AcquireError::Os`).
    pub os_errors: u64,
    /// `acquire_timeout` calls that ended with `AcquireError::Timeout`.
    pub timeouts: u64,
    /// Callers waiting now at the pool's limit (`OverflowPolicy::Wait`).
    pub waiters: usize,
    /// Chunks (mappings) of pooled memory mapped now.
    pub chunks: usize,
    /// Bytes currently mapped by the pool: pooled chunks plus overflow buffers (including alignment slack).
    /// Never more than `max_bytes` when one is set.
    pub mapped_bytes: usize,
}
