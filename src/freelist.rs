//! The shared freelist of idle slot indices.
//!
//! Invariant: every index in `0..capacity` is, at any moment, in exactly one place: in this list, in a full
//! depot magazine, held by one [`AlignedBuf`](crate::AlignedBuf), held out because a trim could not commit its
//! memory again (`uncommitted.rs`: only a successful recommit brings it back here), or not yet mapped (its chunk
//! is unmapped).
//!
//! Two Treiber stacks of slot indices, linked through side arrays of one `u32` per slot, one array per chunk,
//! allocated zeroed when the chunk is mapped ([`FreeList::add_chunk`]): nothing is allocated per slot at build,
//! and the links of a chunk cost 4 bytes per slot, in pages that are touched only once a slot of them is pushed
//! (links never live in the buffers' own memory, so a trimmed buffer stays untouched while idle).
//!
//! - `hot`: slots released by their users (their pages are resident), last in, first out.
//! - `cold`: a freshly mapped chunk's slots (pushed as one run in O(1): a zero link means "the next slot",
//!   so only the run's last link is written) and slots whose memory a trim gave back. [`FreeList::pop`] takes
//!   from `cold` only when `hot` is empty, so resident buffers are reused before memory is faulted in.
//!
//! Each head packs a 32-bit version tag with the top index plus one, so a top that was popped and pushed again
//! between a load and a compare-exchange (ABA) makes the exchange fail. Links are atomics written with `Relaxed`
//! by the slot's owner and published by the `Release` exchange of the push; the `Acquire` load of the head makes
//! them visible to the next popper. A popper reading a stale head may read the link of a slot someone else
//! now owns: any value it finds is a valid encoding, and the versioned exchange fails.
//!
//! The depot's full magazines are chains through the same links (`depot.rs`).

use crate::config::Layout;
use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
use std::io;
use std::ops::Range;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// A head with no slot (index field 0; heads store slot + 1).
const EMPTY: u64 = 0;
/// A link that ends a chain. A stored link is 0 ("the next slot", only inside a fresh run), `END`, or the
/// next slot plus one (at most `MAX_CAPACITY`, below `END`).
const END: u32 = u32::MAX;

/// A Treiber stack head: `version << 32 | (top + 1)`, or a version and 0.
pub(crate) struct Head(AtomicU64);

impl Head {
    pub(crate) fn new() -> Head {
        Head(AtomicU64::new(EMPTY))
    }
}

/// The top slot named by head value `h`, if any.
fn top(h: u64) -> Option<u32> {
    (h as u32).checked_sub(1)
}

/// Head value `h` with a new top, its version advanced.
fn retop(h: u64, top: Option<u32>) -> u64 {
    ((h >> 32).wrapping_add(1) << 32) | u64::from(top.map_or(0, |t| t + 1))
}

/// Lock-free LIFO of slot indices (see the module docs).
pub(crate) struct FreeList {
    hot: Head,
    cold: Head,
    /// Slots on both stacks: raised before a push, lowered after a pop, so it never undercounts.
    len: AtomicUsize,
    /// log2 of the slots per chunk (as `Layout::chunk_shift`).
    shift: u32,
    capacity: usize,
    /// Per chunk: its links, or null until the chunk is mapped. At most `MAX_CHUNKS` entries.
    links: Box<[AtomicPtr<AtomicU32>]>,
    /// Slots per chunk, to free the arrays (the last chunk may be short).
    layout: Layout,
}

impl FreeList {
    /// An empty list for the pool of `layout`: a table of one null pointer per chunk, nothing per slot.
    pub(crate) fn new(layout: &Layout) -> Self {
        FreeList {
            hot: Head::new(),
            cold: Head::new(),
            len: AtomicUsize::new(0),
            shift: layout.chunk_shift,
            capacity: layout.capacity,
            links: (0..layout.chunks)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            layout: *layout,
        }
    }

    /// Allocates the zeroed links of chunk `k` (no-op if it has them). Called by the one thread mapping the
    /// chunk, before any of its slots is published; an allocation failure is an `OutOfMemory` error.
    pub(crate) fn add_chunk(&self, k: usize) -> io::Result<()> {
        // Relaxed: only the thread mapping chunk `k` stores this pointer, and it stored any earlier value.
        if !self.links[k].load(Relaxed).is_null() {
            return Ok(());
        }
        let n = self.layout.chunk_slots(k);
        #[cfg(not(loom))]
        let p = {
            let layout = std::alloc::Layout::array::<AtomicU32>(n).map_err(io::Error::other)?;
            // SAFETY: `n >= 1` (every chunk has a slot), so the layout is not zero-sized.
            let p = unsafe { std::alloc::alloc_zeroed(layout) };
            if p.is_null() {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("freelist links of chunk {k}: {} bytes", layout.size()),
                ));
            }
            // Zeroed bytes are a valid `AtomicU32` (same size, alignment and bit validity as `u32`).
            p.cast::<AtomicU32>()
        };
        #[cfg(loom)]
        let p = {
            let b: Box<[AtomicU32]> = (0..n).map(|_| AtomicU32::new(0)).collect();
            Box::into_raw(b).cast::<AtomicU32>()
        };
        // Release: a thread that reaches one of the chunk's slots through a stale read sees the array or null.
        self.links[k].store(p, Release);
        Ok(())
    }

    /// The link cell of `slot`, or `None` when its chunk has no links: only a stale read (a head or link that
    /// changed since) names such a slot.
    #[inline]
    fn cell(&self, slot: u32) -> Option<&AtomicU32> {
        let i = slot as usize;
        if i >= self.capacity {
            return None;
        }
        let p = self.links[i >> self.shift].load(Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: the array of chunk `i >> shift` holds `chunk_slots` cells and `i < capacity`, so the offset
        // is in bounds; the array lives until `self` is dropped.
        Some(unsafe { &*p.add(i & ((1usize << self.shift) - 1)) })
    }

    /// The slot after `slot` on its chain: `Some(None)` at the end, `None` if the link cannot be read (stale).
    #[inline]
    pub(crate) fn next(&self, slot: u32) -> Option<Option<u32>> {
        // Relaxed: see the module docs (published by the push, acquired with the head).
        Some(match self.cell(slot)?.load(Relaxed) {
            0 => Some(slot + 1),
            END => None,
            n => Some(n - 1),
        })
    }

    /// Links `slot` to `next` (`None`: the end). The caller owns `slot`.
    #[inline]
    pub(crate) fn set_next(&self, slot: u32, next: Option<u32>) {
        match self.cell(slot) {
            // Relaxed: published by the `Release` exchange that pushes the chain.
            Some(c) => c.store(next.map_or(END, |n| n + 1), Relaxed),
            None => debug_assert!(false, "slot {slot} has no links"),
        }
    }

    /// Pushes the chain `first ..= last` (already linked from `first` to `last`, owned by the caller) onto
    /// `head`, linking `last` to the old top.
    pub(crate) fn push_chain(&self, head: &Head, first: u32, last: u32) {
        let Some(cell) = self.cell(last) else {
            // A bug: the slots leak until the pool is dropped, which is safe.
            debug_assert!(false, "slot {last} has no links");
            return;
        };
        // Relaxed load and failure ordering: the pusher reads nothing through the old top, it only links to
        // it. The links are published by the `Release` exchange.
        let mut h = head.0.load(Relaxed);
        loop {
            cell.store(top(h).map_or(END, |t| t + 1), Relaxed);
            match head
                .0
                .compare_exchange_weak(h, retop(h, Some(first)), Release, Relaxed)
            {
                Ok(_) => return,
                Err(now) => h = now,
            }
        }
    }

    /// Pops the top `n >= 1` slots of `head` as one chain: returns its first slot (walk it with
    /// [`next`](Self::next), which the caller now owns), or `None` if fewer than `n` are there.
    pub(crate) fn pop_chain(&self, head: &Head, n: usize) -> Option<u32> {
        let mut h = head.0.load(Acquire);
        'retry: loop {
            let first = top(h)?;
            let mut last = first;
            for _ in 1..n {
                match self.next(last) {
                    Some(Some(s)) => last = s,
                    // Fewer than `n` on a current head: none to take. On a stale one: look again.
                    Some(None) | None => {
                        let now = head.0.load(Acquire);
                        if now == h {
                            return None;
                        }
                        h = now;
                        continue 'retry;
                    }
                }
            }
            let Some(below) = self.next(last) else {
                h = head.0.load(Acquire);
                continue;
            };
            match head
                .0
                .compare_exchange_weak(h, retop(h, below), AcqRel, Acquire)
            {
                Ok(_) => return Some(first),
                Err(now) => h = now,
            }
        }
    }

    /// Takes an idle index, if any: the most recently released one, else a fresh or trimmed one.
    #[inline]
    pub(crate) fn pop(&self) -> Option<u32> {
        let slot = self
            .pop_chain(&self.hot, 1)
            .or_else(|| self.pop_chain(&self.cold, 1))?;
        // Relaxed: a gauge for `len()`; the slot itself moved through the exchange.
        self.len.fetch_sub(1, Relaxed);
        Some(slot)
    }

    /// Returns an index whose buffer was in use (its memory is likely resident).
    #[inline]
    pub(crate) fn push(&self, index: u32) {
        // Relaxed: see `pop`; raised first so that `len` never undercounts.
        self.len.fetch_add(1, Relaxed);
        self.push_chain(&self.hot, index, index);
    }

    /// Returns an index whose memory was just given back to the OS: it is reused after resident ones.
    pub(crate) fn push_cold(&self, index: u32) {
        // Relaxed: see `push`.
        self.len.fetch_add(1, Relaxed);
        self.push_chain(&self.cold, index, index);
    }

    /// Puts the slots of a freshly mapped chunk (`range`, within one chunk, whose links are all still zero) on
    /// the list in O(1): one link written, one exchange.
    pub(crate) fn push_fresh(&self, range: Range<u32>) {
        if range.is_empty() {
            return;
        }
        // Relaxed: see `push`.
        self.len.fetch_add(range.len(), Relaxed);
        self.push_chain(&self.cold, range.start, range.end - 1);
    }

    /// Indices in the list now (exact when no other thread is pushing or popping).
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a gauge.
        self.len.load(Relaxed)
    }
}

impl Drop for FreeList {
    fn drop(&mut self) {
        for (k, p) in self.links.iter().enumerate() {
            // Relaxed: `&mut self`, no other thread.
            let p = p.load(Relaxed);
            if p.is_null() {
                continue;
            }
            let n = self.layout.chunk_slots(k);
            #[cfg(not(loom))]
            {
                // `add_chunk` allocated with this layout, so it is valid.
                if let Ok(layout) = std::alloc::Layout::array::<AtomicU32>(n) {
                    // SAFETY: `p` was allocated by `add_chunk` with this layout and is freed once, here.
                    unsafe { std::alloc::dealloc(p.cast(), layout) };
                }
            }
            #[cfg(loom)]
            {
                // SAFETY: `p` came from `Box::into_raw` of an `n`-element boxed slice in `add_chunk`.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) });
            }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A list for `capacity` slots in chunks of `2^shift` (one-page buffers), every chunk linked.
    fn list(capacity: usize) -> (FreeList, Layout) {
        let l = crate::PoolBuilder::default()
            .capacity(capacity)
            .layout()
            .unwrap();
        let f = FreeList::new(&l);
        (0..l.chunks).for_each(|k| f.add_chunk(k).unwrap());
        (f, l)
    }

    #[test]
    fn fresh_runs_hand_out_every_slot_once_after_released_ones() {
        let (f, l) = list(5000);
        assert!(l.chunks >= 2, "{l:?}");
        let per = 1u32 << l.chunk_shift;
        f.push_fresh(0..per);
        f.push_fresh(per..5000);
        assert_eq!(f.len(), 5000);
        // The run pushed last is on top; within a run, slots come in order.
        assert_eq!((f.pop(), f.pop()), (Some(per), Some(per + 1)));
        f.push(per);
        f.push_cold(per + 1);
        assert_eq!(
            f.pop(),
            Some(per),
            "released (hot) before fresh or trimmed (cold)"
        );
        assert_eq!(f.pop(), Some(per + 1));
        let mut rest: Vec<u32> = std::iter::from_fn(|| f.pop()).collect();
        assert_eq!(rest.len(), 4998);
        rest.sort_unstable();
        let mut want: Vec<u32> = (0..5000).collect();
        want.retain(|&s| s != per && s != per + 1);
        assert_eq!(rest, want);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn chains_pop_whole_or_not_at_all() {
        let (f, _) = list(8);
        let h = Head::new();
        f.set_next(3, Some(5));
        f.push_chain(&h, 3, 5);
        assert_eq!(f.pop_chain(&h, 3), None, "two slots, three asked");
        assert_eq!(f.pop_chain(&h, 2), Some(3));
        assert_eq!(f.next(3), Some(Some(5)));
        assert_eq!(f.pop_chain(&h, 1), None);
    }

    #[test]
    fn unlinked_chunks_and_out_of_range_slots_have_no_cell() {
        let l = crate::PoolBuilder::default()
            .capacity(5000)
            .layout()
            .unwrap();
        let f = FreeList::new(&l);
        f.add_chunk(0).unwrap();
        assert!(f.next(0).is_some());
        assert_eq!(f.next(4999), None, "its chunk has no links yet");
        assert_eq!(f.next(5000), None, "past the capacity");
    }
}
