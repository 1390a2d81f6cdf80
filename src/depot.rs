//! The depot: full magazines of slot indices, so thread caches refill and flush a batch with one CAS
//! operation instead of one per slot.
//!
//! A magazine is a run of `mag` slot indices (`mag` = half a thread cache) chained through the freelist's
//! per-slot links (`freelist.rs`): a flushing cache links its `mag` oldest slots and pushes the chain with one
//! compare-exchange onto the depot's stack; a refilling cache pops the top chain with one compare-exchange (after
//! walking its `mag` links to find the chain below). The depot itself owns no memory per slot or per magazine,
//! so it costs nothing until used and never runs out of magazines. Slots that do not fill a whole magazine go
//! to the per-slot shared freelist.
//!
//! The stack is a Treiber stack whose head packs a 32-bit version tag with the top slot, so a chain that was
//! popped and pushed again between a load and a compare-exchange (ABA) makes the exchange fail; a walk that
//! read links of a chain someone else popped meanwhile ends in such a failed exchange.

use crate::freelist::{FreeList, Head};
use crate::sync::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

pub(crate) struct Depot {
    mag: usize,
    /// Full magazines: chains of `mag` slots, each chain's last slot linked to the next chain's first.
    full: Head,
    /// Magazines on `full` (for stats).
    full_count: AtomicUsize,
}

impl Depot {
    /// A depot of magazines of `mag` slots, or `None` if not even one magazine fits in `capacity`.
    pub(crate) fn new(capacity: usize, mag: usize) -> Option<Depot> {
        if mag == 0 || capacity / mag == 0 {
            return None;
        }
        Some(Depot {
            mag,
            full: Head::new(),
            full_count: AtomicUsize::new(0),
        })
    }

    /// Slots per magazine.
    pub(crate) fn mag(&self) -> usize {
        self.mag
    }

    /// Idle slots held in full magazines.
    pub(crate) fn idle(&self) -> usize {
        // Relaxed: a count for `stats()` and the idle-trim estimate; taking a magazine goes through `full`.
        self.full_count.load(Relaxed) * self.mag
    }

    /// Moves exactly `mag` slots from the front of `slots` into a full magazine. Returns `false` (leaving `slots`
    /// untouched) if `slots` is shorter than a magazine.
    #[cfg(test)]
    pub(crate) fn put(&self, free: &FreeList, slots: &mut Vec<u32>) -> bool {
        if slots.len() < self.mag {
            return false;
        }
        let mut i = 0;
        let put = self.put_with(free, || {
            i += 1;
            slots[i - 1]
        });
        slots.drain(..i);
        put
    }

    /// Moves `mag` slots produced by `next` (called exactly `mag` times; the caller owns them) into a full
    /// magazine. Returns `true` (kept for callers written against a bounded depot).
    pub(crate) fn put_with(&self, free: &FreeList, mut next: impl FnMut() -> u32) -> bool {
        let first = next();
        let mut last = first;
        for _ in 1..self.mag {
            let s = next();
            free.set_next(last, Some(s));
            last = s;
        }
        // Relaxed: the count is for `idle()` only. Raised before the push and lowered after the pop, so it
        // never goes below zero.
        self.full_count.fetch_add(1, Relaxed);
        free.push_chain(&self.full, first, last);
        true
    }

    /// Appends the `mag` slots of one full magazine to `out`, in magazine order, each mapped through `f`.
    /// Returns `false` if none is full.
    pub(crate) fn take_into<T>(
        &self,
        free: &FreeList,
        out: &mut Vec<T>,
        mut f: impl FnMut(u32) -> T,
    ) -> bool {
        let Some(mut s) = free.pop_chain(&self.full, self.mag) else {
            return false;
        };
        // Relaxed: see `put_with`.
        self.full_count.fetch_sub(1, Relaxed);
        // We own the chain now: its links stay as the pusher wrote them (published by its `Release` push, which
        // the `Acquire` pop synchronised with).
        out.push(f(s));
        for _ in 1..self.mag {
            match free.next(s) {
                Some(Some(n)) => s = n,
                _ => {
                    debug_assert!(false, "magazine shorter than {}", self.mag);
                    break;
                }
            }
            out.push(f(s));
        }
        true
    }

    /// Appends the `mag` slots of one full magazine to `slots`. Returns `false` if no magazine is full.
    pub(crate) fn take(&self, free: &FreeList, slots: &mut Vec<u32>) -> bool {
        self.take_into(free, slots, |slot| slot)
    }
}

impl std::fmt::Debug for Depot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Depot")
            .field("mag", &self.mag)
            // Relaxed: diagnostics.
            .field("full", &self.full_count.load(Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A freelist whose one chunk holds `capacity` slots, all mapped (linkable).
    fn free(capacity: usize) -> FreeList {
        let l = crate::PoolBuilder::default()
            .capacity(capacity)
            .layout()
            .unwrap();
        assert_eq!(l.chunks, 1);
        let f = FreeList::new(&l);
        f.add_chunk(0).unwrap();
        f
    }

    #[test]
    fn put_and_take_round_trip_lifo_by_magazine() {
        let f = free(16);
        let d = Depot::new(16, 4).unwrap();
        let mut v: Vec<u32> = (0..10).collect();
        assert!(d.put(&f, &mut v));
        assert!(d.put(&f, &mut v));
        assert_eq!(v, [8, 9]);
        assert!(!d.put(&f, &mut v), "shorter than a magazine");
        assert_eq!(d.idle(), 8);
        let mut out = Vec::new();
        assert!(d.take(&f, &mut out));
        assert_eq!(out, [4, 5, 6, 7]);
        assert!(d.take(&f, &mut out));
        assert!(!d.take(&f, &mut out));
        assert_eq!(out, [4, 5, 6, 7, 0, 1, 2, 3]);
        assert_eq!(d.idle(), 0);
        // The freelist was not touched: the magazines used its links only.
        assert_eq!(f.len(), 0);
        assert_eq!(f.pop(), None);
    }

    #[test]
    fn magazines_are_not_bounded_by_a_preallocated_count() {
        let f = free(12);
        let d = Depot::new(12, 4).unwrap();
        let mut v: Vec<u32> = (0..12).collect();
        assert!(d.put(&f, &mut v) && d.put(&f, &mut v) && d.put(&f, &mut v));
        assert!(v.is_empty());
        assert_eq!(d.idle(), 12);
        let mut out = Vec::new();
        while d.take(&f, &mut out) {}
        out.sort_unstable();
        assert_eq!(out, (0..12).collect::<Vec<u32>>());
    }

    #[test]
    fn degenerate_sizes_have_no_depot() {
        assert!(Depot::new(8, 0).is_none());
        assert!(Depot::new(3, 4).is_none());
    }
}
