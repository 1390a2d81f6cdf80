//! The shared freelist of idle slot indices.
//!
//! Invariant: every index in `0..capacity` is, at any moment, in exactly one place: in this list, held by one
//! [`AlignedBuf`](crate::AlignedBuf), held out because a trim could not commit its memory again
//! (`uncommitted.rs`: only a successful recommit brings it back here), or not yet mapped (its chunk is
//! unmapped). So at most `capacity` indices
//! are ever in the list at once and [`FreeList::push`] cannot find it full.
//!
//! Normal builds use `crossbeam_queue::ArrayQueue<u32>`: a bounded lock-free queue, one CAS per push or pop, no
//! allocation after construction. crossbeam's atomics are invisible to loom, so under `cfg(loom)` the same
//! interface is backed by a loom `Mutex<VecDeque<u32>>` with the same FIFO order and bound; the models then
//! check the pool's own protocol (growth, overflow accounting, teardown) around it.

use crate::error::ConfigError;

/// Lock-free bounded FIFO of slot indices.
pub(crate) struct FreeList {
    #[cfg(not(loom))]
    q: crossbeam_queue::ArrayQueue<u32>,
    #[cfg(loom)]
    q: crate::sync::Mutex<std::collections::VecDeque<u32>>,
    #[cfg(loom)]
    cap: usize,
}

/// Heap bytes one queue slot takes (a stamp word plus the value, padded).
const BYTES_PER_SLOT: usize = 2 * std::mem::size_of::<usize>();

impl FreeList {
    /// An empty list able to hold `capacity` indices.
    ///
    /// The heap for the queue is probed first with a fallible reservation, so an absurd capacity gives
    /// [`ConfigError::FreelistAlloc`] instead of aborting the process on allocation failure.
    pub(crate) fn new(capacity: usize) -> Result<Self, ConfigError> {
        let bytes = capacity.saturating_mul(BYTES_PER_SLOT);
        let mut probe: Vec<u8> = Vec::new();
        probe
            .try_reserve_exact(bytes)
            .map_err(|_| ConfigError::FreelistAlloc { capacity, bytes })?;
        drop(probe);
        Ok(FreeList {
            #[cfg(not(loom))]
            q: crossbeam_queue::ArrayQueue::new(capacity),
            #[cfg(loom)]
            q: crate::sync::Mutex::new(std::collections::VecDeque::with_capacity(capacity)),
            #[cfg(loom)]
            cap: capacity,
        })
    }

    /// Takes an idle index, if any.
    #[inline]
    pub(crate) fn pop(&self) -> Option<u32> {
        #[cfg(not(loom))]
        {
            self.q.pop()
        }
        #[cfg(loom)]
        {
            crate::sync::lock(&self.q).pop_front()
        }
    }

    /// Returns an index. By the module invariant the list is never full here; if it ever were (a bug), the index
    /// is dropped: its buffer leaks until the pool is torn down, which is safe, and a debug build panics.
    #[inline]
    pub(crate) fn push(&self, index: u32) {
        #[cfg(not(loom))]
        {
            let pushed = self.q.push(index);
            debug_assert!(
                pushed.is_ok(),
                "freelist overfull: slot {index} returned twice"
            );
        }
        #[cfg(loom)]
        {
            let mut q = crate::sync::lock(&self.q);
            assert!(
                q.len() < self.cap,
                "freelist overfull: slot {index} returned twice"
            );
            assert!(!q.contains(&index), "slot {index} returned twice");
            q.push_back(index);
        }
    }

    /// Indices in the list now (exact when no other thread is pushing or popping).
    pub(crate) fn len(&self) -> usize {
        #[cfg(not(loom))]
        {
            self.q.len()
        }
        #[cfg(loom)]
        {
            crate::sync::lock(&self.q).len()
        }
    }
}

impl std::fmt::Debug for FreeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreeList")
            .field("len", &self.len())
            .finish()
    }
}
