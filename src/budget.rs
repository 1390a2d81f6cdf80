//! The byte budget (`max_bytes`): bytes reserved *before* each chunk or overflow `mmap` and given back after
//! the `munmap` (or a refused `mmap`), so the pool's mappings never exceed the cap, even while racing.

use crate::sync::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug)]
pub(crate) struct Budget {
    /// The cap, if one was set.
    max: Option<usize>,
    /// Bytes reserved now: mapped, or about to be mapped by a thread inside `mmap`.
    used: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(max: Option<usize>) -> Self {
        Budget {
            max,
            used: AtomicUsize::new(0),
        }
    }

    /// The cap, if one was set.
    pub(crate) fn max(&self) -> Option<usize> {
        self.max
    }

    /// Bytes reserved now (0 without a cap, which counts nothing). A snapshot for error messages: Relaxed.
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Reserves `bytes` if they fit under the cap. Relaxed is enough: the count guards nothing but itself (the
    /// mapping that follows is published through the chunk state or the buffer handle), and the
    /// compare-exchange decides on the latest value, so the cap holds under any interleaving. A waiter that
    /// must see bytes given back sees them through the `SeqCst` fences of the wake handshake (`wait.rs`).
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let Some(max) = self.max else {
            // Unlimited: nothing to count (mapped bytes are tracked by the arena and the overflow path). This
            // also keeps the loom models of budget-less pools free of one more atomic.
            return true;
        };
        let mut used = self.used.load(Relaxed);
        loop {
            let Some(new) = used.checked_add(bytes).filter(|&n| n <= max) else {
                return false;
            };
            match self.used.compare_exchange_weak(used, new, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Gives back bytes reserved with `try_reserve`. Callers that may have waiters follow it with the wake check
    /// (`Inner::after_release`).
    pub(crate) fn give_back(&self, bytes: usize) {
        if self.max.is_none() {
            return;
        }
        // Relaxed: as in `try_reserve`; the caller's wake check fences after it.
        self.used.fetch_sub(bytes, Relaxed);
    }
}
