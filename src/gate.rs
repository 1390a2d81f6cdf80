//! The discard gate: once the pool's memory is registered with the kernel (io_uring, `PagePool::iovecs`),
//! nothing may discard it again.
//!
//! `MADV_DONTNEED` (trim, idle trim) replaces the pages behind a range while the kernel keeps the pinned old
//! ones of a registration: `READ_FIXED` would then write where the program no longer looks and `WRITE_FIXED`
//! would send stale bytes. So every discard of pooled memory happens inside a [`DiscardPass`], and registration
//! [`close`](DiscardGate::close)s the gate for good before it hands out an address.
//!
//! One word holds both halves, so the close and every entry are ordered by that word's modification order
//! (no `SeqCst` Dekker pair is needed): `CLOSED | passes in flight`.
//! - A discarder enters with a compare-exchange that refuses once `CLOSED` is set; it leaves with a `Release`
//!   decrement after its last discard.
//! - `close` sets `CLOSED` (`fetch_or`), then waits until the count is zero with `Acquire` loads, which read
//!   the last decrement (or a later value in its release sequence) and so see every discard of every pass
//!   that entered before the close as done. A pass that had not entered by then is refused.
//!
//! Hence: once `close` returns, no discard is in flight and none will start. The wait is short: a pass covers
//! at most one trim batch (256 buffers, a few `madvise` calls) and runs no foreign code (no events, no wakes).

use crate::sync::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// The `CLOSED` bit; the bits below count passes in flight.
const CLOSED: usize = 1 << (usize::BITS - 1);

#[derive(Debug)]
pub(crate) struct DiscardGate {
    state: AtomicUsize,
    /// Discards started (loom only): a modelled operation at the start of each discard, so that the models
    /// can interleave the other thread between a pass's entry and its first discard.
    #[cfg(loom)]
    discards: AtomicUsize,
}

/// Permission to discard pooled memory, held across the discard calls; leaving (drop) lets `close` return.
#[derive(Debug)]
pub(crate) struct DiscardPass<'a>(&'a DiscardGate);

impl DiscardGate {
    pub(crate) fn new() -> Self {
        DiscardGate {
            state: AtomicUsize::new(0),
            #[cfg(loom)]
            discards: AtomicUsize::new(0),
        }
    }

    /// Counts a discard about to start (loom only; called inside a pass).
    #[cfg(loom)]
    pub(crate) fn count_discard(&self) {
        self.discards.fetch_add(1, Relaxed);
    }

    /// Discards started so far (loom models only).
    #[cfg(all(loom, test))]
    pub(crate) fn discards(&self) -> usize {
        self.discards.load(Relaxed)
    }

    /// A pass to discard pooled memory, or `None` once the gate is closed.
    pub(crate) fn enter(&self) -> Option<DiscardPass<'_>> {
        // Relaxed: the compare-exchange reads the latest value of the word, so a pass is refused once `CLOSED`
        // precedes it in the word's modification order; a pass that gets in is waited for by `close`, whose
        // Acquire load pairs with our Release decrement. The pass orders nothing else.
        let mut cur = self.state.load(Relaxed);
        loop {
            if cur & CLOSED != 0 {
                return None;
            }
            debug_assert!(cur + 1 < CLOSED, "discard passes overflow the gate");
            match self
                .state
                .compare_exchange_weak(cur, cur + 1, Relaxed, Relaxed)
            {
                Ok(_) => return Some(DiscardPass(self)),
                Err(now) => cur = now,
            }
        }
    }

    /// Closes the gate for good: returns once no pass is in flight, and from then on every `enter` is refused.
    pub(crate) fn close(&self) {
        // Relaxed: the RMW puts `CLOSED` in the modification order; what the caller needs to see (the discards
        // of passes already in) comes from the Acquire loads below.
        self.state.fetch_or(CLOSED, Relaxed);
        while self.state.load(Acquire) != CLOSED {
            crate::sync::yield_now();
        }
    }

    /// Whether [`close`](Self::close) has been called (for skipping a trim early; `enter` is the real check).
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Relaxed) & CLOSED != 0
    }
}

impl Drop for DiscardPass<'_> {
    fn drop(&mut self) {
        // Release: everything this pass discarded happens before a `close` that reads this decrement.
        self.0.state.fetch_sub(1, Release);
    }
}
