//! `Inner`: the state shared by every `PagePool` clone, every buffer out and every thread cache of one pool, and
//! its lifetime protocol (the reference count, `CLOSING`, the free); also the trim and sweep epochs and the
//! registry of thread-cache stats.
//!
//! # Lifetime protocol
//! The pool's shared state (`Inner`) carries one reference count `state`: one reference for all `PagePool`
//! handles together, one per slot outside the freelist (held by a buffer or sitting in a cache), one per
//! overflow buffer, and one per registered cache entry. The count changes only when slots cross between a cache
//! and the freelist (a batch at a time), never on a cache hit. The last handle sets the `CLOSING` bit; whoever
//! drops the count to zero with `CLOSING` set frees `Inner`, exactly once.
//!
//! ```text
//! state == REF * (handles? + buffers out + slots cached + slot grants + cache entries + guards) | CLOSING?
//! ```
//!
//! where `handles?` is 1 while any `PagePool` handle of this pool (size class) lives, `buffers out` counts pooled
//! and overflow buffers, `slot grants` are slots handed to a waiter not yet wrapped (`Grant::Slot`), and
//! `guards` are [`Ref`]s taken with `Ref::take` and not dropped yet (what a cache operation owes until
//! `cache::settle`); `CLOSING` is set once,
//! by the last handle's drop (`Handle::drop`, `pool.rs`), and never cleared. Idle slots in the freelist, the
//! depot or held out by a trim (`uncommitted.rs`) hold none. What the thread caches add to this (retention,
//! sweeps) is in `cache.rs`; every ordering on `state` is argued where it is used and listed in
//! docs/safety.md.

use crate::arena::Arena;
use crate::budget::Budget;
use crate::depot::Depot;
use crate::gate::DiscardGate;
use crate::numa::NodeFree;
use crate::overflow::Overflow;
use crate::policy::MemPolicy;
use crate::stats::Counters;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, UnsafeCell};
use crate::uncommitted::Uncommitted;
use crate::wait::Waiters;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::Arc as StdArc;

/// Bumped by every pool close and every trim request; see the module docs.
#[cfg(not(loom))]
pub(crate) static SWEEP_EPOCH: StdAtomicU64 = StdAtomicU64::new(0);

// Under loom the epoch is a modelled atomic that starts afresh in every execution: a process-wide static
// would leak state between executions (and between tests), which loom reports as non-determinism.
#[cfg(loom)]
loom::lazy_static! {
    pub(crate) static ref SWEEP_EPOCH: crate::sync::AtomicU64 = crate::sync::AtomicU64::new(0);
}

/// Makes every thread re-examine its caches at its next operation (after a pool close or a trim request).
///
/// `Release`, paired with the `Acquire` load in `Local::sweep` (`cache.rs`): the caller first publishes what the sweep
/// must act on (`CLOSING` in the pool's state, or a new trim epoch), then bumps. A sweep that reads this bump (or a
/// later one: every bump is a read-modify-write, so it continues the release sequence) then also sees that state, and
/// it records the epoch as honoured only after acting on it. With `Relaxed` a sweep could read the new epoch with the
/// old state, record it, and keep a closed pool's entry (its memory) or a trim request's slots until the next bump
/// (loom `sweep_races_close`, `sweep_races_trim`).
pub(crate) fn bump_sweep_epoch() {
    SWEEP_EPOCH.fetch_add(1, Release);
}

/// An idle slot in a thread cache, with its address: a hit hands it out without recomputing the address from
/// the chunk table.
#[derive(Clone, Copy)]
pub(crate) struct Cached {
    pub(crate) slot: u32,
    pub(crate) ptr: NonNull<u8>,
}

/// One thread's cache for one pool: owned by that thread, reachable by others through the pool's registry
/// (`Inner::caches`) so that idle slots can be reclaimed (`cache::reclaim`). The rule that decides who may
/// touch `body` is an asymmetric lock, argued in `cache.rs` ("Reclaim"): the owner holds it while `busy` is
/// set and it found `claim` clear; a reclaimer holds it while `claim` is set and it found `busy` clear.
pub(crate) struct Stash {
    /// Set by the owner for the length of each operation on `body` (plain stores, no read-modify-write).
    pub(crate) busy: AtomicBool,
    /// Set by a reclaimer that wants `body`; left set for good on a dead stash.
    pub(crate) claim: AtomicBool,
    /// The entry is over: its slots and its references are gone, and its owner only forgets it, without
    /// touching the pool. Written by whoever holds the lock when it ends the entry.
    pub(crate) dead: AtomicBool,
    /// Slots in the cache now (a gauge for `stats()` and a hint for reclaimers).
    pub(crate) cached: std::sync::atomic::AtomicUsize,
    /// Acquires served from the cache.
    pub(crate) hits: StdAtomicU64,
    pub(crate) body: UnsafeCell<Body>,
}

// SAFETY: `body` is reached only by the holder of the stash's asymmetric lock (see the type docs); the rest is
// atomic. The `NonNull`s in the slots name pool memory, valid on any thread.
unsafe impl Send for Stash {}
// SAFETY: as above.
unsafe impl Sync for Stash {}

/// The cache itself, behind the stash's lock.
pub(crate) struct Body {
    /// Idle slots, most recently released last (handed out first: warm in cache and TLB). Each holds one
    /// reference on the pool.
    pub(crate) slots: Vec<Cached>,
    /// The most slots kept now: the pool's `cache_size` at first, more once the cache has grown
    /// (`cache::grow`). `slots` always has room for `cap` without reallocating.
    pub(crate) cap: usize,
    /// A refill since the last flush: the thread takes more than the cache holds.
    pub(crate) refilled: bool,
    /// Slots refilled less slots flushed since the cache last grew or shrank.
    pub(crate) net: isize,
    /// The pool's trim epoch this entry last honoured.
    pub(crate) trim_seen: u64,
    pub(crate) hits: u64,
}

impl Stash {
    pub(crate) fn new(cap: usize, trim_seen: u64) -> Self {
        Stash {
            busy: AtomicBool::new(false),
            claim: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            cached: std::sync::atomic::AtomicUsize::new(0),
            hits: StdAtomicU64::new(0),
            body: UnsafeCell::new(Body {
                slots: Vec::with_capacity(cap),
                cap,
                refilled: false,
                net: 0,
                trim_seen,
                hits: 0,
            }),
        }
    }
}

/// `Inner::state` bit set once the last `PagePool` handle is gone.
pub(crate) const CLOSING: usize = 1;
/// One reference in `Inner::state`.
pub(crate) const REF: usize = 2;

/// The registry of a pool's thread caches, behind a small lock built on an atomic of our own: std's `Mutex` is
/// precompiled (uninstrumented) code, so ThreadSanitizer cannot see it order the accesses it protects. Only
/// cold paths take it (a thread's first use of a pool, thread exit, `stats()`, a reclaim's look), and the
/// closures run under it do nothing but walk, push to or retain a `Vec`.
pub(crate) struct Registry {
    #[cfg(not(loom))]
    locked: std::sync::atomic::AtomicBool,
    #[cfg(not(loom))]
    caches: std::cell::UnsafeCell<Caches>,
    /// Under loom a modelled mutex: the lock publishes each new cache's stash (created on its owner's thread)
    /// to reclaimers on other threads, which the models must see.
    #[cfg(loom)]
    caches: Mutex<Caches>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            #[cfg(not(loom))]
            locked: std::sync::atomic::AtomicBool::new(false),
            #[cfg(not(loom))]
            caches: std::cell::UnsafeCell::new(Caches::default()),
            #[cfg(loom)]
            caches: Mutex::new(Caches::default()),
        }
    }
}

/// What the registry's lock protects.
#[derive(Default)]
pub(crate) struct Caches {
    pub(crate) live: Vec<StdArc<Stash>>,
    /// Set by the closing reclaim (`cache::reclaim`, `Kill`): no cache registers after it.
    pub(crate) closed: bool,
}

#[cfg(not(loom))]
// SAFETY: `caches` is only reached through `with`, which holds `locked` (Acquire on taking it, Release on
// giving it back), so accesses from different threads never overlap and are ordered.
unsafe impl Sync for Registry {}

impl Registry {
    #[cfg(not(loom))]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Caches) -> R) -> R {
        // The failure ordering is Relaxed: a failed attempt reads nothing under the lock, it only retries.
        while self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        // SAFETY: we hold the lock, so no other reference to the vector exists until we release it below.
        let r = f(unsafe { &mut *self.caches.get() });
        self.locked.store(false, Release);
        r
    }

    #[cfg(loom)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Caches) -> R) -> R {
        f(&mut crate::sync::lock(&self.caches))
    }
}

/// State shared by every `PagePool` clone, every buffer out and every thread cache of this pool.
///
/// Freed when `state` reaches "no references, CLOSING" (see the module docs for the protocol).
pub(crate) struct Inner {
    pub(crate) arena: Arena,
    pub(crate) free: NodeFree,
    pub(crate) counters: Counters,
    pub(crate) overflow: Overflow,
    /// `references * REF | CLOSING`.
    pub(crate) state: AtomicUsize,
    /// Slots a thread cache starts with room for (0: no caches).
    pub(crate) cache_size: usize,
    /// `mem.scrub`, beside `cache_size` so the release path reads one line: non-zero when released buffers
    /// are zeroed or poisoned.
    pub(crate) scrub: u8,
    /// Zeroing, poisoning, locking, advice, guard pages, trimming.
    pub(crate) mem: MemPolicy,
    /// Full magazines of half a cache each, for batch refills and flushes (none without caches).
    pub(crate) depot: Option<Depot>,
    /// Trim requests (`request_trim`: `trim()` and the first waiter): caches flush when they see a new value.
    pub(crate) trim_epoch: AtomicU64,
    /// The most slots an adaptive cache grows to (`cache_size` for fixed caches).
    pub(crate) cache_max: usize,
    /// Room left for caches to grow beyond `cache_size`, all threads together (`cache::Entry::grow`).
    pub(crate) cache_room: AtomicUsize,
    /// Live thread caches (registration is once per thread per pool).
    pub(crate) caches: Registry,
    /// Held by a reclaim (`cache::reclaim`) for its whole pass: one reclaimer per pool at a time.
    pub(crate) reclaim_lock: Mutex<()>,
    /// `PoolBuilder::reclaim`: other threads' idle cached slots may be taken back.
    pub(crate) reclaim: bool,
    /// Cache hits of caches that have gone.
    pub(crate) retired_hits: StdAtomicU64,
    /// The byte budget (`max_bytes`) of chunks and overflow buffers.
    pub(crate) budget: Budget,
    /// `OverflowPolicy::Wait`: only such a pool ever has waiters, so only its releases run the wake check.
    pub(crate) waitable: bool,
    /// Threads and tasks waiting at the limit. `waiters.any()` is the one word every release reads.
    pub(crate) waiters: Waiters,
    /// Slots a trim gave back but could not commit again: out of the freelist until a retry recommits them.
    pub(crate) uncommitted: Uncommitted,
    /// Every discard of pooled memory (trim, idle trim) passes it; closed for good by io_uring registration
    /// (`iovecs`), after which nothing discards the pool's memory (see `gate.rs`).
    pub(crate) discard_gate: DiscardGate,
}

#[cfg(loom)]
thread_local! {
    /// Times an `Inner` was torn down on this OS thread (loom runs a whole model on one OS thread).
    pub(crate) static TEARDOWNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(loom)]
impl Drop for Inner {
    fn drop(&mut self) {
        TEARDOWNS.with(|t| t.set(t.get() + 1));
    }
}

/// One counted reference on `Inner`, given back when dropped: also when foreign code (a tracing subscriber,
/// a waker) panics while the owner still needs `Inner`, so an unwinding path never keeps a reference (which
/// would pin the pool's memory for good).
pub(crate) struct Ref(NonNull<Inner>);

impl Ref {
    /// Takes ownership of one reference the caller owns.
    ///
    /// # Safety
    /// The caller owns one reference on `this` and passes it on: it no longer releases it itself.
    pub(crate) unsafe fn adopt(this: NonNull<Inner>) -> Ref {
        Ref(this)
    }

    /// Takes one more reference on the pool of `inner`, which the caller keeps alive with one of its own.
    pub(crate) fn take(inner: &Inner) -> Ref {
        inner.add_refs(1);
        Ref(NonNull::from(inner))
    }

    pub(crate) fn inner(&self) -> &Inner {
        // SAFETY: this guard owns a reference, so Inner is alive while the guard is.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for Ref {
    fn drop(&mut self) {
        // SAFETY: the guard owns one reference (see `adopt`/`take`) and nothing uses it after this.
        unsafe { Inner::release_refs(self.0, 1) }
    }
}

impl Inner {
    /// Mappings in the overflow reserve (for the loom models).
    #[cfg(all(loom, test))]
    pub(crate) fn loom_reserved(&self) -> usize {
        self.overflow.reserve.len()
    }

    /// Takes `n` more references. The caller must already hold one (so the count cannot be zero).
    #[inline]
    pub(crate) fn add_refs(&self, n: usize) {
        // Relaxed, as `Arc::clone`: the caller's reference keeps the count above zero, so this increment cannot
        // race the teardown, and it publishes nothing (the slots it counts were taken by their own atomics).
        self.state.fetch_add(n * REF, Relaxed);
    }

    /// Drops `n` references, freeing `Inner` if they were the last and the pool is closing.
    ///
    /// # Safety
    /// The caller owns `n` references on `this`, has finished every access to `*this` that needed them
    /// (e.g. pushing slots to the freelist), and does not touch `this` afterwards.
    #[inline]
    pub(crate) unsafe fn release_refs(this: NonNull<Inner>, n: usize) {
        // SAFETY: the caller's references keep Inner alive until this decrement.
        let prev = unsafe { this.as_ref() }.state.fetch_sub(n * REF, AcqRel);
        if prev == n * REF + CLOSING {
            // SAFETY: the count is now zero and CLOSING is set: no handle, buffer or cache refers to Inner,
            // and no new reference can be taken. Only the thread whose decrement reached zero gets here.
            unsafe { Inner::free(this) };
        }
    }

    /// # Safety
    /// `this` came from `Box::into_raw` in `from_builder` and no reference to it remains.
    pub(crate) unsafe fn free(this: NonNull<Inner>) {
        // SAFETY: per the contract, we own the allocation exclusively.
        let inner = unsafe { Box::from_raw(this.as_ptr()) };
        let chunks = inner.arena.mapped_chunks();
        drop(inner);
        // After the memory is gone: nothing of the pool is left for a panicking subscriber to strand.
        if chunks > 0 {
            // Reached from drops (a buffer, a handle, a thread's exit flush in a thread-local destructor).
            crate::sync::foreign_quiet(
                || tracing::debug!(target: "pagepool", chunks, "unmapped pool chunks"),
            );
        }
    }

    /// Whether the last handle is gone. Relaxed: the sweep calls it after its `Acquire` load of the sweep epoch,
    /// which orders it after the close that set `CLOSING` and then bumped the epoch with `Release` (`bump_sweep_epoch`), and `CLOSING` is never cleared. `Local::new_entry` may call it before its thread
    /// has read the close's bump: a stale answer makes an entry that the first sweep reading that bump removes
    /// (loom `close_races_new_entry`).
    pub(crate) fn is_closing(&self) -> bool {
        self.state.load(Relaxed) & CLOSING != 0
    }

    /// Trim requests so far (`trim()`, and the first waiter asking caches to flush).
    ///
    /// Every request increments it, then bumps the sweep epoch (`Release`), so a sweep that reads the bump
    /// (`Acquire`) reads this request's value or a later one. That alone is not enough: this load can also
    /// return a request still in flight (incremented, not bumped yet), and the entry then records it as
    /// honoured and skips it when its bump arrives. So the increment is `Release` and this load `Acquire`: an
    /// entry that records a request has seen everything the requester did before it, in particular the
    /// waiter's registration, and from then on its thread's releases see that waiter and bypass the cache
    /// (loom `sweep_races_waiter_flush_request`).
    pub(crate) fn trim_epoch(&self) -> u64 {
        self.trim_epoch.load(Acquire)
    }

    /// Records a trim request (see [`trim_epoch`](Self::trim_epoch)) and makes every thread re-examine its
    /// caches at its next operation.
    pub(crate) fn request_trim(&self) {
        self.trim_epoch.fetch_add(1, Release);
        bump_sweep_epoch();
    }

    /// Registers a new thread cache; `false` once the pool's closing reclaim has run (no new caches then).
    pub(crate) fn register_cache(&self, stash: &StdArc<Stash>) -> bool {
        self.caches.with(|c| {
            if !c.closed {
                c.live.push(stash.clone());
            }
            !c.closed
        })
    }

    pub(crate) fn unregister_cache(&self, stash: &StdArc<Stash>, hits: u64) {
        self.caches.with(|caches| {
            caches.live.retain(|c| !StdArc::ptr_eq(c, stash));
            // Fold under the lock so a concurrent `stats()` never counts these hits twice or not at all. Relaxed:
            // the registry lock orders it against `stats()`, and it is a statistic.
            self.retired_hits.fetch_add(hits, Relaxed);
        });
    }

    /// The size of every pooled buffer of this pool (of this size class): a pooled buffer's capacity.
    #[inline]
    pub(crate) fn buf_size(&self) -> usize {
        self.arena.layout().buf_size
    }

    /// Address of pooled slot `slot` (see `Arena::slot_ptr`).
    #[inline]
    pub(crate) fn slot_ptr(&self, slot: u32) -> NonNull<u8> {
        self.arena.slot_ptr(slot)
    }
}
