//! The depot: full magazines of slot indices, so thread caches refill and flush a batch with two CAS
//! operations instead of one per slot.
//!
//! A magazine is a fixed run of `mag` slot indices (`mag` = half a thread cache). The depot owns
//! `capacity / mag` magazines up front (at most that many can ever be full, since only `capacity` slots exist)
//! and keeps each on one of two lock-free stacks: `full` (its slots are idle and available) or `empty`. A
//! flushing cache pops an empty magazine, fills it, and pushes it onto `full`; a refilling cache pops a full
//! one, empties it, and pushes it onto `empty`. Each move is two compare-exchanges for `mag` slots. When no
//! magazine is available, callers fall back to the per-slot shared freelist, so the depot only ever speeds
//! things up.
//!
//! Both stacks are Treiber stacks of magazine indices whose head packs a 32-bit version tag with the index, so a
//! head that was popped and pushed again between a load and a compare-exchange (ABA) makes the exchange fail.
//! Magazine links and contents are atomics written with `Relaxed` by the magazine's current owner and published
//! by the `Release` push; the `Acquire` pop makes them visible to the next owner.

use crate::sync::{AtomicU32, AtomicU64, AtomicUsize};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// No magazine: the stack is empty (index field 0; indices are stored plus one).
const NIL: u32 = 0;

struct Stack {
    /// `version << 32 | (index + 1)`, or version and `NIL`.
    head: AtomicU64,
}

pub(crate) struct Depot {
    mag: usize,
    /// `mag` slot indices per magazine, magazine `m` at `m * mag ..`.
    store: Box<[AtomicU32]>,
    /// Next magazine (plus one) below each magazine on whichever stack holds it.
    next: Box<[AtomicU32]>,
    full: Stack,
    empty: Stack,
    /// Magazines on `full` (for stats).
    full_count: AtomicUsize,
}

impl Stack {
    fn pop(&self, next: &[AtomicU32]) -> Option<usize> {
        let mut head = self.head.load(Acquire);
        loop {
            let top = head as u32;
            if top == NIL {
                return None;
            }
            // Relaxed: the `Acquire` load of the head (or the failed exchange) that named `top` synchronises
            // with the `Release` push that wrote this link; a link changed since fails the versioned exchange.
            let below = next[top as usize - 1].load(Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(below);
            match self.head.compare_exchange_weak(head, new, AcqRel, Acquire) {
                Ok(_) => return Some(top as usize - 1),
                Err(now) => head = now,
            }
        }
    }

    fn push(&self, next: &[AtomicU32], m: usize) {
        // Relaxed load and failure ordering: the pusher reads nothing through the old head, it only links to
        // it. The link (and the magazine's contents) are published by the `Release` exchange.
        let mut head = self.head.load(Relaxed);
        loop {
            next[m].store(head as u32, Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | (m as u64 + 1);
            match self.head.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

impl Depot {
    /// A depot of `capacity / mag` empty magazines of `mag` slots, or `None` if that is zero magazines.
    pub(crate) fn new(capacity: usize, mag: usize) -> Option<Depot> {
        if mag == 0 || capacity / mag == 0 {
            return None;
        }
        let count = capacity / mag;
        let depot = Depot {
            mag,
            store: (0..count * mag).map(|_| AtomicU32::new(0)).collect(),
            next: (0..count).map(|_| AtomicU32::new(NIL)).collect(),
            full: Stack {
                head: AtomicU64::new(u64::from(NIL)),
            },
            empty: Stack {
                head: AtomicU64::new(u64::from(NIL)),
            },
            full_count: AtomicUsize::new(0),
        };
        for m in 0..count {
            depot.empty.push(&depot.next, m);
        }
        Some(depot)
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
    /// untouched) if `slots` is shorter than a magazine or no empty magazine is available.
    #[cfg(test)]
    pub(crate) fn put(&self, slots: &mut Vec<u32>) -> bool {
        if slots.len() < self.mag {
            return false;
        }
        let mut i = 0;
        let put = self.put_with(|| {
            i += 1;
            slots[i - 1]
        });
        slots.drain(..i);
        put
    }

    /// Moves `mag` slots produced by `next` (called exactly `mag` times, only if an empty magazine is
    /// available) into a full magazine. Returns `false`, without calling `next`, if none is empty.
    pub(crate) fn put_with(&self, mut next: impl FnMut() -> u32) -> bool {
        let Some(m) = self.empty.pop(&self.next) else {
            return false;
        };
        // Relaxed: we own magazine `m` (popped from `empty`); the `Release` push onto `full` publishes its
        // contents to the `Acquire` pop of the next owner. The count is for `idle()` only.
        for cell in &self.store[m * self.mag..(m + 1) * self.mag] {
            cell.store(next(), Relaxed);
        }
        self.full_count.fetch_add(1, Relaxed);
        self.full.push(&self.next, m);
        true
    }

    /// Appends the `mag` slots of one full magazine to `out`, in magazine order, each mapped through `f`.
    /// Returns `false` if none is full.
    pub(crate) fn take_into<T>(&self, out: &mut Vec<T>, mut f: impl FnMut(u32) -> T) -> bool {
        let Some(m) = self.full.pop(&self.next) else {
            return false;
        };
        // Relaxed: the `Acquire` pop made magazine `m`'s contents visible, and we own it until the push below.
        self.full_count.fetch_sub(1, Relaxed);
        let src = &self.store[m * self.mag..(m + 1) * self.mag];
        out.extend(src.iter().map(|cell| f(cell.load(Relaxed))));
        self.empty.push(&self.next, m);
        true
    }

    /// Appends the `mag` slots of one full magazine to `slots`. Returns `false` if no magazine is full.
    pub(crate) fn take(&self, slots: &mut Vec<u32>) -> bool {
        self.take_into(slots, |slot| slot)
    }
}

impl std::fmt::Debug for Depot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Depot")
            .field("mag", &self.mag)
            .field("magazines", &self.next.len())
            // Relaxed: diagnostics.
            .field("full", &self.full_count.load(Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn put_and_take_round_trip_lifo_by_magazine() {
        let d = Depot::new(8, 4).unwrap();
        let mut v: Vec<u32> = (0..10).collect();
        assert!(d.put(&mut v));
        assert!(d.put(&mut v));
        assert_eq!(v, [8, 9]);
        assert!(!d.put(&mut v), "shorter than a magazine");
        assert_eq!(d.idle(), 8);
        let mut out = Vec::new();
        assert!(d.take(&mut out));
        assert_eq!(out, [4, 5, 6, 7]);
        assert!(d.take(&mut out));
        assert!(!d.take(&mut out));
        assert_eq!(out, [4, 5, 6, 7, 0, 1, 2, 3]);
        assert_eq!(d.idle(), 0);
    }

    #[test]
    fn no_more_full_magazines_than_exist() {
        let d = Depot::new(9, 4).unwrap(); // two magazines
        let mut v: Vec<u32> = (0..12).collect();
        assert!(d.put(&mut v) && d.put(&mut v));
        assert!(!d.put(&mut v), "no empty magazine left");
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn degenerate_sizes_have_no_depot() {
        assert!(Depot::new(8, 0).is_none());
        assert!(Depot::new(3, 4).is_none());
    }
}
