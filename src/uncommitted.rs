//! Pooled slots held out of the freelist because a trim could not commit their memory again.
//!
//! Trimming gives a range of idle slots back to the OS with `sys::discard`. On Windows that is `MEM_DECOMMIT`
//! then `MEM_COMMIT`, and the commit can fail under commit pressure, which is exactly when trimming runs. The
//! range is then reserved but not committed: handing it out would give a caller a `&mut [u8]` that faults on its
//! first touch. Such a range is parked here instead of going back to the freelist, counted
//! ([`PoolStats::uncommitted`](crate::PoolStats::uncommitted), in buffers), reported (a `warn!` from the trim),
//! and recommitted later: at the next trim or idle-trim period, and whenever an acquire finds the shared pool
//! empty, before a new chunk is mapped or an overflow buffer taken. Only a range whose recommit succeeded goes to
//! the freelist. On unix the discard cannot leave memory unusable; the test shim (`sys::fault`) makes it report
//! so, which drives this same path.
//!
//! Invariant: a slot is here only while its commit state is unknown or known bad; it reaches the freelist only
//! through `Uncommitted::retry` after a successful `sys::recommit`. `slots` is the number of slots in
//! `ranges`, plus those of ranges a retry has taken out and not yet settled: it only changes when a slot
//! enters (`hold`) or reaches the freelist (`retry`), so `stats` never counts a slot twice.
//!
//! Dropping the pool unmaps these ranges with the rest of their chunks (`MEM_RELEASE` frees a reservation
//! whatever the commit state of its pages; `munmap` likewise): nothing leaks.

use crate::arena::Arena;
use crate::numa::NodeFree;
use crate::sync::{lock, Mutex};
use crate::sys;
use std::io;
use std::ops::Range;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

/// The held-out ranges of one pool.
pub(crate) struct Uncommitted {
    /// Runs of consecutive slots of one chunk, each discarded as one range whose recommit failed.
    ranges: Mutex<Vec<Range<u32>>>,
    /// Slots held out (see the module invariant). Written under `ranges`' lock; read without it only as a
    /// hint (`stats`, and the "anything to retry?" test on the acquire path), so `Relaxed` is enough: a stale
    /// zero only defers a retry to its next occasion, and the ranges themselves are only read under the lock.
    slots: AtomicUsize,
}

/// What [`Uncommitted::retry`] did.
#[derive(Debug, Default)]
pub(crate) struct Retried {
    /// Slots recommitted and pushed to the freelist.
    pub(crate) returned: usize,
    /// Slots still held out afterwards (by this pool, not only those this retry tried).
    pub(crate) held: usize,
    /// The first recommit error, if any range failed again.
    pub(crate) error: Option<io::Error>,
}

impl Uncommitted {
    pub(crate) fn new() -> Self {
        Uncommitted {
            ranges: Mutex::new(Vec::new()),
            slots: AtomicUsize::new(0),
        }
    }

    /// Slots held out now (a snapshot; exact when no trim or retry runs).
    #[inline]
    pub(crate) fn slots(&self) -> usize {
        self.slots.load(Relaxed)
    }

    /// Takes `range`, which the caller owns (out of the freelist) and whose recommit just failed, out of
    /// circulation until a retry succeeds.
    pub(crate) fn hold(&self, range: Range<u32>) {
        let mut ranges = lock(&self.ranges);
        self.slots.fetch_add(range.len(), Relaxed);
        ranges.push(range);
    }

    /// Recommits every held range (one `sys::recommit` per range) and pushes the slots of those that succeed to
    /// `free`; the others stay held. Emits nothing, wakes no one: the caller does, once this returns and the
    /// books agree.
    pub(crate) fn retry(&self, arena: &Arena, free: &NodeFree) -> Retried {
        // Out of the list while their system calls run, so `hold` and `stats` never wait for them; another
        // retry meanwhile finds nothing to do. `slots` still counts them: they are not usable yet.
        let taken = std::mem::take(&mut *lock(&self.ranges));
        let mut r = Retried::default();
        if taken.is_empty() {
            r.held = self.slots();
            return r;
        }
        let l = arena.layout();
        let mut failed = Vec::new();
        for range in taken {
            // A run of one chunk without guard pages (as `trim_shared` builds them): one contiguous range.
            let len = (range.end - 1 - range.start) as usize * l.stride + l.buf_size;
            match sys::recommit(arena.slot_ptr(range.start), len) {
                Ok(()) => {
                    // Out of the count first, then into the freelist: a slot is never counted in both.
                    self.slots.fetch_sub(range.len(), Relaxed);
                    r.returned += range.len();
                    range.for_each(|s| free.push(s));
                }
                Err(e) => {
                    r.error.get_or_insert(e);
                    failed.push(range);
                }
            }
        }
        let mut ranges = lock(&self.ranges);
        ranges.extend(failed);
        r.held = self.slots();
        r
    }
}

impl std::fmt::Debug for Uncommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uncommitted")
            .field("slots", &self.slots())
            .finish()
    }
}
