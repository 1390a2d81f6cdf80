//! Pooled memory: a fixed table of chunks, each one OS mapping carved into equal slots.
//!
//! Slot `i` lives in chunk `i >> chunk_shift` at byte offset `(i & mask) * stride`. Chunks are mapped on demand
//! (or all at build with `prealloc`) and unmapped only when the arena is dropped, so an index popped from the
//! freelist always names mapped memory.
//!
//! Each chunk moves `EMPTY -> MAPPING -> MAPPED`, or back `MAPPING -> EMPTY` if the OS refuses the memory. The
//! thread that wins the `EMPTY -> MAPPING` compare-exchange is the only one that maps and publishes that chunk,
//! and it does the system call while holding nothing: other threads that find the freelist empty meanwhile grow
//! another chunk or take the overflow path.

use crate::budget::Budget;
use crate::config::{HugePages, Layout};
use crate::numa::NodeFree;
use crate::policy::{MemPolicy, Region};
use crate::sync::{lock, AtomicPtr, AtomicU8, AtomicUsize, Mutex};
use crate::sys::{self, Mapping};
use std::io;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// What [`Arena::grow`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Grow {
    /// Mapped a chunk; these are its slots, all owned by the caller until pushed to the freelist.
    Grew(Range<u32>),
    /// No chunk is left to claim, but another thread is mapping one: its slots will reach the freelist soon.
    Busy,
    /// Every chunk is mapped.
    Full,
}

const EMPTY: u8 = 0;
const MAPPING: u8 = 1;
const MAPPED: u8 = 2;

struct Chunk {
    state: AtomicU8,
    /// Start of the chunk's first slot once `MAPPED` (published with `Release` before the slots are freed).
    base: AtomicPtr<u8>,
    /// The mapping itself, stored once by the thread that mapped it and dropped with the arena.
    mapping: Mutex<Option<Mapping>>,
}

/// The pool's chunks.
pub(crate) struct Arena {
    layout: Layout,
    chunks: Box<[Chunk]>,
    /// Chunks in state `MAPPED`.
    mapped_chunks: AtomicUsize,
    /// Slots in `MAPPED` chunks.
    mapped_slots: AtomicUsize,
    /// Bytes reserved by `MAPPED` chunks.
    mapped_bytes: AtomicUsize,
}

impl Arena {
    pub(crate) fn new(layout: Layout) -> Self {
        let chunks = (0..layout.chunks)
            .map(|_| Chunk {
                state: AtomicU8::new(EMPTY),
                base: AtomicPtr::new(std::ptr::null_mut()),
                mapping: Mutex::new(None),
            })
            .collect();
        Arena {
            layout,
            chunks,
            mapped_chunks: AtomicUsize::new(0),
            mapped_slots: AtomicUsize::new(0),
            mapped_bytes: AtomicUsize::new(0),
        }
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Address of slot `index`.
    ///
    /// `index` must belong to a `MAPPED` chunk, which holds for every index taken from the freelist: a chunk's
    /// indices enter the freelist only after its base is published.
    #[inline]
    pub(crate) fn slot_ptr(&self, index: u32) -> NonNull<u8> {
        let i = index as usize;
        let chunk = &self.chunks[i >> self.layout.chunk_shift];
        let base = chunk.base.load(Acquire);
        debug_assert!(!base.is_null(), "slot {index} of an unmapped chunk");
        let offset = (i & ((1usize << self.layout.chunk_shift) - 1)) * self.layout.stride;
        // SAFETY: the chunk is mapped (see above) and `offset + stride <= chunk length` because the slot lies in
        // this chunk; `wrapping_add` keeps provenance and the result is non-null because `base` is.
        unsafe { NonNull::new_unchecked(base.wrapping_add(offset)) }
    }

    /// Maps one more chunk if one is still unmapped, nobody else is mapping it, and its bytes fit in `budget`
    /// (reserved before the `mmap`, given back if the OS refuses or the policy fails), and applies the memory
    /// policy to it (see `policy.rs`) before any slot of it is published. A chunk over budget is left unmapped
    /// and reported like the end of the table (`Full`, or `Busy` while another chunk is being mapped).
    /// The chunk's freelist links are allocated (`free.add_chunk`) before it is published; if the heap refuses
    /// them, the chunk is unmapped again and the error returned.
    pub(crate) fn grow(
        &self,
        populate: bool,
        policy: &MemPolicy,
        budget: &Budget,
        free: &NodeFree,
    ) -> io::Result<Grow> {
        // Relaxed: a shortcut only. `Full` reads no chunk (callers that need the bases check `all_mapped`,
        // with `Acquire`), and a stale count just walks the table below.
        if self.mapped_chunks.load(Relaxed) == self.chunks.len() {
            return Ok(Grow::Full);
        }
        let mut busy = false;
        for (k, chunk) in self.chunks.iter().enumerate() {
            // Relaxed: a first look that skips claimed chunks without reading their base; the claim is the
            // compare-exchange below (its failure ordering is Relaxed for the same reason).
            match chunk.state.load(Relaxed) {
                EMPTY => {}
                MAPPING => {
                    busy = true;
                    continue;
                }
                _ => continue,
            }
            if chunk
                .state
                .compare_exchange(EMPTY, MAPPING, Acquire, Relaxed)
                .is_err()
            {
                busy = true;
                continue;
            }
            let l = &self.layout;
            let slots = l.chunk_slots(k);
            let len = l.chunk_len(k);
            let reserve = l.chunk_reserved(k);
            if !budget.try_reserve(reserve) {
                chunk.state.store(EMPTY, Release);
                tracing::trace!(target: "pagepool", chunk = k, bytes = reserve, "chunk does not fit max_bytes");
                return Ok(if busy { Grow::Busy } else { Grow::Full });
            }
            let early = populate && !policy.advise_before_touch();
            let hugetlb = policy.huge == HugePages::Explicit;
            let prepared = sys::map_with(len, l.chunk_align, early, hugetlb).and_then(|m| {
                // Before the policy, which counts what it locks: on error `m` is unmapped and nothing counted.
                // Links allocated for a chunk that then fails stay (all zero) for its next attempt.
                free.add_chunk(k)?;
                let region = Region {
                    start: m.ptr(),
                    len,
                    lead: l.lead,
                    slots,
                    stride: l.stride,
                    buf_size: l.buf_size,
                    chunk: true,
                    index: k,
                };
                // On error `m` is dropped here: the chunk is unmapped and nothing was counted.
                policy.prepare(region)?;
                if populate && !early {
                    for i in 0..slots {
                        // SAFETY: slot `i` lies inside the fresh mapping: lead + i * stride + buf_size <= len.
                        let p = unsafe { m.ptr().as_ptr().add(l.lead + i * l.stride) };
                        // SAFETY: `p` is derived from the mapping's non-null start by an in-bounds offset.
                        sys::populate(unsafe { NonNull::new_unchecked(p) }, l.buf_size);
                    }
                }
                Ok(m)
            });
            let mapping = match prepared {
                Ok(m) => m,
                Err(e) => {
                    chunk.state.store(EMPTY, Release);
                    budget.give_back(reserve);
                    return Err(e);
                }
            };
            debug_assert_eq!(mapping.reserved(), reserve);
            let reserved = mapping.reserved();
            // The first slot starts after the chunk's leading guard.
            chunk
                .base
                .store(mapping.ptr().as_ptr().wrapping_add(l.lead), Release);
            *lock(&chunk.mapping) = Some(mapping);
            chunk.state.store(MAPPED, Release);
            // Relaxed: gauges for `stats()` and the `Full` shortcut above; the chunk itself is published by the
            // `Release` stores of its base and state.
            self.mapped_bytes.fetch_add(reserved, Relaxed);
            self.mapped_slots.fetch_add(slots, Relaxed);
            self.mapped_chunks.fetch_add(1, Relaxed);
            // No event here: the caller owns the slots until they reach the freelist, and emits
            // `grew_event` then (a subscriber may panic, which must not strand the chunk).
            let first = (k << self.layout.chunk_shift) as u32;
            return Ok(Grow::Grew(first..first + slots as u32));
        }
        Ok(if busy { Grow::Busy } else { Grow::Full })
    }

    /// The event of a chunk mapped by [`grow`](Self::grow) (`range`: its slots), emitted by the caller once
    /// those slots are on the freelist or in a buffer.
    pub(crate) fn grew_event(&self, range: &Range<u32>) {
        let k = (range.start as usize) >> self.layout.chunk_shift;
        let bytes = self.layout.chunk_reserved(k);
        tracing::debug!(target: "pagepool", chunk = k, slots = range.len(), bytes, "mapped pool chunk");
    }

    /// True once every chunk is `MAPPED`. The `Acquire` loads pair with the `Release` store of `MAPPED`, so every
    /// chunk's base is visible to the caller afterwards (`slot_ptr` on any slot is then valid).
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn all_mapped(&self) -> bool {
        self.chunks.iter().all(|c| c.state.load(Acquire) == MAPPED)
    }

    /// Pooled slots mapped so far. Relaxed (as the two below): gauges for `stats()`.
    pub(crate) fn mapped_slots(&self) -> usize {
        self.mapped_slots.load(Relaxed)
    }

    /// Chunks mapped so far.
    pub(crate) fn mapped_chunks(&self) -> usize {
        self.mapped_chunks.load(Relaxed)
    }

    /// Bytes reserved by mapped chunks.
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.mapped_bytes.load(Relaxed)
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("layout", &self.layout)
            .field("mapped_chunks", &self.mapped_chunks())
            .field("mapped_slots", &self.mapped_slots())
            .finish()
    }
}
