//! Per-thread caches (magazines) of slot indices in front of the shared freelist.
//!
//! Each thread keeps, per pool it has used, a small LIFO stack of idle slot indices. Acquire pops from it and
//! release pushes onto it, touching only this thread's memory: no shared cache line in the common case. When
//! the stack is empty, acquire refills half of it, as one full magazine from the depot (`depot.rs`: two CAS
//! for the whole batch) or else slot by slot from the shared freelist; when it is full, release flushes its
//! older half back the same way. A buffer released on another thread simply lands in *that* thread's
//! cache: slots are fungible, so cross-thread release costs the same as same-thread release.
//!
//! The common pop and push (`pop`, `push`) do not borrow the caches: they go through `HOT`, a destructor-free
//! thread-local pointing at the most recently used entry, published only while the caches are not borrowed.
//! Everything else (another pool, a sweep due, an empty or full cache) takes the full path (`acquire`,
//! `release`), out of line. See `Hot` for the rule that makes this sound, and docs/design.md for the figures.
//!
//! # Lifetime protocol
//! The pool's shared state (`Inner`) carries one reference count `state`, with a `CLOSING` bit: what it counts
//! and who frees `Inner` is in `shared.rs` (module docs). Here, what the caches add to it.
//!
//! Retention, exactly: a thread gets an entry for a pool at its first acquire or release of a buffer of that
//! pool that reaches this module's full path (caching on), and the entry holds a reference on `Inner` from
//! then on, **even when its cache is empty**. So every such thread pins the whole pool (all of its chunks)
//! until the entry goes: when the thread exits, when the pool's last handle is dropped on this very thread
//! (`close_local`), or at the thread's first cache operation after the pool closed.
//!
//! Caches notice closes that way: every pool close, every [`PagePool::trim`](crate::PagePool::trim) and the
//! first waiter of a `Wait` pool bump the global `SWEEP_EPOCH`; each cache operation (an acquire or release
//! on this thread of a buffer of *any* pool with thread caches) compares it with the epoch this thread last
//! saw (one load of a line that is almost never written) and, when it moved, closes the entries of closing
//! pools and flushes those of pools that asked for a trim. `trim()` flushes only the calling thread's entry
//! at once; `stats()` never sweeps; pools without thread caches never sweep. So the memory of a dropped pool
//! is unmapped once its last buffer is home and every thread that ever used it through its cache has made
//! another cache operation or exited: a thread that used the pool once and then blocks, or only uses pools
//! without caches, keeps the memory mapped until it exits.

use crate::shared::{CacheStats, Inner, Ref, SWEEP_EPOCH};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc as StdArc;

/// An idle slot in a cache, with its address: a hit hands it out without recomputing the address from the
/// chunk table.
#[derive(Clone, Copy)]
pub(crate) struct Cached {
    pub(crate) slot: u32,
    pub(crate) ptr: NonNull<u8>,
}

/// One thread's cache for one pool.
struct Entry {
    inner: NonNull<Inner>,
    /// Idle slots, most recently released last (handed out first: warm in cache and TLB).
    slots: Vec<Cached>,
    /// The most slots kept now (here so the hit path reads one line): the pool's `cache_size` at first, more
    /// once the cache has grown ([`grow`](Self::grow)). `slots` always has room for `cap` without
    /// reallocating.
    cap: usize,
    /// A refill since the last flush: the thread takes more than the cache holds (see [`grow`](Self::grow)).
    refilled: bool,
    /// Slots refilled less slots flushed since the cache last grew or shrank (see [`make_room`](Self::make_room)).
    net: isize,
    /// The pool's trim epoch this entry last honoured.
    trim_seen: u64,
    hits: u64,
    stats: StdArc<CacheStats>,
}

impl Entry {
    /// The pool's shared state. The lifetime is not tied to `&self` so the slot stack can be borrowed
    /// mutably alongside; callers use it only while the entry (and so its reference) lives.
    fn inner<'a>(&self) -> &'a Inner {
        // SAFETY: the entry holds one reference on `Inner` (taken in `Local::new_entry`), so it is alive
        // for as long as the entry is, which outlasts every use of the returned reference.
        unsafe { self.inner.as_ref() }
    }

    /// Publishes the cache length. `Release`, so a `stats()` that reads the new length (with `Acquire`) also
    /// sees where the slots went (depot and freelist counts written before).
    #[inline(always)]
    fn publish(&self) {
        self.stats.cached.store(self.slots.len(), Release);
    }

    /// Counts a cache hit and publishes the new length.
    #[inline(always)]
    fn hit(&mut self) {
        self.hits += 1;
        // Relaxed: a statistic; no other memory is read on the strength of it.
        self.stats.hits.store(self.hits, Relaxed);
        self.publish();
    }

    /// Grows a full cache instead of flushing it, if its thread has refilled it since it last flushed: the
    /// thread's demand exceeds the cache, and every round would otherwise move the excess through shared memory
    /// twice. Doubles `cap`, within the pool's `cache_max` and what is left of the room all caches share
    /// (`Inner::cache_room`, a read-modify-write on this cold path only). `false`: flush as usual.
    fn grow(&mut self) -> bool {
        let inner = self.inner();
        if !self.refilled || self.cap >= inner.cache_max {
            return false;
        }
        let want = self.cap.min(inner.cache_max - self.cap);
        // Relaxed: a count of room, not a publication; each slot of room is claimed by exactly one
        // read-modify-write.
        let got = inner
            .cache_room
            .fetch_update(Relaxed, Relaxed, |room| {
                (room > 0).then(|| room - want.min(room))
            })
            .map_or(0, |room| want.min(room));
        if got == 0 {
            return false;
        }
        self.cap += got;
        // The hit path writes up to `cap` slots without a capacity check.
        self.slots.reserve_exact(self.cap - self.slots.len());
        true
    }

    /// Gives back to the shared room what `cap` has grown beyond `cap_to` (not below the pool's `cache_size`).
    fn shrink(&mut self, cap_to: usize) {
        let inner = self.inner();
        let cap_to = cap_to.max(inner.cache_size);
        if self.cap > cap_to {
            // Relaxed: see `grow`.
            inner.cache_room.fetch_add(self.cap - cap_to, Relaxed);
            self.cap = cap_to;
        }
    }

    /// Makes room at a release into a full cache: grows it (see [`grow`](Self::grow)), or else flushes its
    /// older half. A grown cache whose thread has flushed four caches' worth more than it refilled (it releases
    /// what other threads took) halves. A thread that takes and returns a batch larger than its cache flushes
    /// about what it refilled, so its cache stays grown (found by review: counting flushes in a row instead
    /// halved such a cache within every release phase).
    fn make_room(&mut self, owed: &mut Vec<Ref>) {
        if self.grow() {
            self.net = 0;
            return;
        }
        self.refilled = false;
        let keep = self.cap - (self.cap / 2).max(1);
        let n = self.slots.len().saturating_sub(keep);
        self.flush(n, owed);
        self.net = self.net.saturating_sub(n as isize);
        if self.net < -4 * self.cap as isize {
            self.net = 0;
            self.shrink(self.cap / 2);
        }
    }

    /// Flushes every slot and shrinks the cache to its starting size (a trim).
    fn trim(&mut self, owed: &mut Vec<Ref>) {
        let n = self.slots.len();
        self.flush(n, owed);
        self.shrink(0);
        self.refilled = false;
        self.net = 0;
    }

    /// Moves the oldest `n` slots back to the pool and drops their references: whole magazines to the depot
    /// while it has room, the rest to the shared freelist one by one. A `Wait` pool's wake check is owed, not
    /// run: it goes to `owed` (with a reference that keeps the pool alive until then), and runs once the
    /// caller's books balance and this thread's caches are no longer borrowed ([`settle`]).
    fn flush(&mut self, n: usize, owed: &mut Vec<Ref>) {
        let n = n.min(self.slots.len());
        if n == 0 {
            return;
        }
        let inner = self.inner();
        let mut left = n;
        let mut oldest = self.slots.drain(..n).map(|c| c.slot);
        if let Some(d) = &inner.depot {
            // `left >= mag` slots remain in `oldest` whenever `put_with` asks for `mag` of them.
            while left >= d.mag() && d.put_with(&inner.free, || oldest.next().unwrap_or(u32::MAX)) {
                left -= d.mag();
            }
        }
        for slot in oldest {
            inner.free.push(slot);
        }
        self.publish();
        // SAFETY: these n references were owned by the cached slots; the entry's own reference keeps Inner
        // alive past this call, so this cannot be the last one.
        unsafe { Inner::release_refs(self.inner, n) };
        if inner.waitable {
            // The slots are visible now: anyone waiting at the limit must be served (the wake handshake,
            // `wait.rs`). The entry's reference keeps Inner alive for this new one.
            owed.push(Ref::take(inner));
        }
    }

    /// Flushes everything, unregisters, and hands the entry's own reference to `owed`: dropping it may free
    /// `Inner`, whose teardown emits an event (foreign code), so that happens only once the caller's books
    /// balance and the caches are no longer borrowed ([`settle`]).
    fn close(mut self, owed: &mut Vec<Ref>) {
        self.trim(owed);
        self.inner().unregister_cache(&self.stats, self.hits);
        let inner = self.inner;
        drop(self);
        // SAFETY: the entry's own reference, taken in `Local::new_entry`, passed on; not used here again.
        owed.push(unsafe { Ref::adopt(inner) });
    }
}

/// This thread's caches, one entry per pool used (most recently used first).
struct Local {
    /// Boxed so that an entry's address is stable while the vector is reordered: [`HOT`] points at the
    /// front one.
    #[allow(clippy::vec_box)] // the boxes are the point: stable addresses
    entries: Vec<Box<Entry>>,
    epoch_seen: u64,
    /// References owed a settling: wake checks of `Wait` pools' flushes, and closed entries' own references,
    /// whose drop may free a pool. Run by [`settle`] once the caller's books balance.
    owed: Vec<Ref>,
}

impl Local {
    const fn new() -> Self {
        Local {
            entries: Vec::new(),
            epoch_seen: 0,
            owed: Vec::new(),
        }
    }

    /// Settles owed references: runs the wake check of each `Wait` pool's flush (a waker is foreign code),
    /// then gives the reference back (which may free a pool, whose teardown emits an event). Both kinds of
    /// foreign code are quiet (`sync::foreign_quiet`), and each step runs under `catch_unwind` besides, so
    /// every owed reference is given back.
    fn run_owed(owed: Vec<Ref>) {
        for r in owed {
            crate::sync::foreign_quiet(move || {
                if r.inner().waitable {
                    r.inner().after_release();
                }
                drop(r);
            });
        }
    }

    /// Flushes entries of closing pools and honours trim requests, if anything changed since last time.
    ///
    /// `Acquire`: see [`bump_sweep_epoch`](crate::shared::bump_sweep_epoch). Each pool's state and trim epoch read in `sweep_slow` then hold at
    /// least what was published before the bumps this load read (`Inner::is_closing`, `Inner::trim_epoch`).
    #[inline]
    fn sweep(&mut self) {
        let epoch = SWEEP_EPOCH.load(Acquire);
        if epoch != self.epoch_seen {
            self.sweep_slow(epoch);
        }
    }

    #[cold]
    fn sweep_slow(&mut self, epoch: u64) {
        let mut i = 0;
        while i < self.entries.len() {
            let e = &mut *self.entries[i];
            if e.inner().is_closing() {
                (*self.entries.swap_remove(i)).close(&mut self.owed);
                continue;
            }
            let trim = e.inner().trim_epoch();
            if trim != e.trim_seen {
                e.trim_seen = trim;
                e.trim(&mut self.owed);
            }
            i += 1;
        }
        // Honoured only once every entry was looked at.
        self.epoch_seen = epoch;
    }

    /// The entry for `inner`, created (and registered) if this thread has none yet. `None` if the pool is
    /// closing (no new entries for a dying pool).
    #[inline]
    fn entry(&mut self, inner: NonNull<Inner>) -> Option<&mut Entry> {
        if self.entries.first().is_some_and(|e| e.inner == inner) {
            return self.entries.first_mut().map(|e| &mut **e);
        }
        self.other_entry(inner)
    }

    /// `entry` for a pool that is not the most recently used one: move it to the front, or create it.
    #[cold]
    fn other_entry(&mut self, inner: NonNull<Inner>) -> Option<&mut Entry> {
        match self.entries.iter().position(|e| e.inner == inner) {
            Some(p) => {
                self.entries.swap(0, p);
                self.entries.first_mut().map(|e| &mut **e)
            }
            None => self.new_entry(inner),
        }
    }

    #[cold]
    fn new_entry(&mut self, inner: NonNull<Inner>) -> Option<&mut Entry> {
        // SAFETY: the caller holds a reference on `Inner` (a handle, or the buffer being released).
        let r = unsafe { inner.as_ref() };
        if r.is_closing() {
            return None;
        }
        r.add_refs(1);
        let stats = r.register_cache();
        self.entries.insert(
            0,
            Box::new(Entry {
                inner,
                slots: Vec::with_capacity(r.cache_size),
                cap: r.cache_size,
                refilled: false,
                net: 0,
                trim_seen: r.trim_epoch(),
                hits: 0,
                stats,
            }),
        );
        Some(&mut self.entries[0])
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // The entries go away: the hit paths must not reach them (nor anything else, from here on).
        hot_off();
        let mut owed = std::mem::take(&mut self.owed);
        for e in self.entries.drain(..) {
            (*e).close(&mut owed);
        }
        Local::run_owed(owed);
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local::new()) };
}

// loom's macro predates `const` initialisers.
#[cfg(loom)]
loom::thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::new());
}

/// The hit paths' view of this thread's caches: the front (most recently used) entry of [`LOCAL`] and the
/// sweep epoch that `LOCAL` has honoured, published whenever `LOCAL` is not borrowed.
///
/// `LOCAL` owns a destructor, so every access to it checks whether the destructor is registered, and its
/// `RefCell` costs a borrow flag round trip; `HOT` has no destructor and no borrow flag, so reaching it is one
/// thread-pointer-relative address. The rule that makes the raw pointer sound: `entry` is non-null only while
/// `LOCAL` is not borrowed and the entry it points to is alive. Every borrow of `LOCAL` clears it first
/// ([`hot_off`]) and republishes it when done ([`hot_on`]); `Local`'s destructor clears it for good. Entries
/// are boxed, so reordering `Local::entries` does not move them.
struct Hot {
    entry: Cell<*mut Entry>,
    epoch: Cell<u64>,
}

#[cfg(not(loom))]
std::thread_local! {
    static HOT: Hot = const {
        Hot {
            entry: Cell::new(std::ptr::null_mut()),
            epoch: Cell::new(0),
        }
    };
}

#[cfg(loom)]
loom::thread_local! {
    static HOT: Hot = Hot {
        entry: Cell::new(std::ptr::null_mut()),
        epoch: Cell::new(0),
    };
}

/// Takes the hit paths off this thread's caches (before `LOCAL` is borrowed or torn down).
fn hot_off() {
    let _ = HOT.try_with(|h| h.entry.set(std::ptr::null_mut()));
}

/// Republishes the front entry and the honoured epoch for the hit paths, as the borrow of `LOCAL` ends.
fn hot_on(l: &mut Local) {
    let front = l
        .entries
        .first_mut()
        .map_or(std::ptr::null_mut(), |e| &mut **e as *mut Entry);
    let _ = HOT.try_with(|h| {
        h.epoch.set(l.epoch_seen);
        h.entry.set(front);
    });
}

/// Borrows this thread's caches (with the hit paths off meanwhile), or `None` when they are unavailable
/// (thread-local storage already destroyed during thread exit, or a re-entrant call).
fn borrow_local<R>(f: impl FnOnce(&mut Local) -> Option<R>) -> Option<R> {
    LOCAL
        .try_with(|l| {
            let mut l = l.try_borrow_mut().ok()?;
            hot_off();
            let r = f(&mut l);
            hot_on(&mut l);
            // What `f` owes (`Local::owed`) waits for the caller: it settles once its own books balance (a
            // slot popped here is not in a buffer yet).
            r
        })
        .ok()
        .flatten()
}

/// Settles what this thread's cache operations owe (`Local::owed`: wake checks of `Wait` pools' flushes, and
/// closed entries' references): the pool calls it once its own books balance, after the slot it took is in a
/// buffer, or the buffer it released is home. Cheap when nothing is owed. Foreign code run here never panics out.
pub(crate) fn settle() {
    // A short borrow that calls nothing, so the hit paths' view (`HOT`) need not be taken down for it.
    let owed = LOCAL
        .try_with(|l| {
            l.try_borrow_mut()
                .ok()
                .filter(|l| !l.owed.is_empty())
                .map(|mut l| std::mem::take(&mut l.owed))
        })
        .ok()
        .flatten();
    if let Some(owed) = owed {
        Local::run_owed(owed);
    }
}

/// Runs `f` on this thread's caches after a sweep; `None` as for [`borrow_local`].
#[inline]
fn with_local<R>(f: impl FnOnce(&mut Local) -> Option<R>) -> Option<R> {
    borrow_local(|l| {
        l.sweep();
        f(l)
    })
}

/// The front entry for the hit paths, if it belongs to `inner` and no sweep is due.
#[inline(always)]
fn hot_entry<R>(inner: NonNull<Inner>, f: impl FnOnce(&mut Entry) -> Option<R>) -> Option<R> {
    HOT.try_with(|h| {
        let e = h.entry.get();
        // Relaxed: only a hint that a sweep is due. A stale value serves this operation as if it came before the
        // bump (the entry is this thread's own memory); a new one sends it to the full path, whose `Acquire`
        // load in `Local::sweep` (reading this value or a later one) orders what the sweep reads.
        if e.is_null() || SWEEP_EPOCH.load(Relaxed) != h.epoch.get() {
            return None;
        }
        // SAFETY: a non-null `entry` points at a live, boxed entry of this thread's `LOCAL`, which nothing
        // else accesses now: `LOCAL` is not borrowed (every borrow clears `entry` first), and the hit paths
        // make no calls that could re-enter the pool, so this is the only reference (see `Hot`).
        let e = unsafe { &mut *e };
        if e.inner != inner {
            return None;
        }
        f(e)
    })
    .ok()
    .flatten()
}

/// The hit path of [`acquire`], small enough to inline into `PagePool::acquire`: pops a slot when this
/// pool's entry is the most recently used one, the sweep epoch has not moved and the cache is not empty.
/// Anything else (`None`) goes to [`acquire`], which handles it in full. No calls, so the caller's fast path
/// needs no register spills.
#[inline(always)]
pub(crate) fn pop(inner: NonNull<Inner>) -> Option<Cached> {
    hot_entry(inner, |e| {
        let slot = e.slots.pop()?;
        e.hit();
        Some(slot)
    })
}

/// The hit path of [`release`]: pushes onto this pool's entry when it is the most recently used one, the
/// sweep epoch has not moved and the cache has room. `Err` gives the slot back for [`release`].
#[inline(always)]
pub(crate) fn push(inner: NonNull<Inner>, slot: Cached) -> Result<(), Cached> {
    hot_entry(inner, |e| {
        let len = e.slots.len();
        if len >= e.cap {
            return None;
        }
        // SAFETY: `len < cap <= capacity` (the Vec was made with capacity `cap`, `Entry::grow` reserves room
        // for every `cap` it sets, shrinking only lowers `cap`, and the Vec never holds more than `cap`), so
        // slot `len` is allocated spare room; writing it and then growing the length by one
        // initialises exactly the element `set_len` exposes. (A plain `push` would keep a never-taken
        // reallocation call in this hot path.)
        unsafe {
            e.slots.as_mut_ptr().add(len).write(slot);
            e.slots.set_len(len + 1);
        }
        e.publish();
        Some(())
    })
    .ok_or(slot)
}

/// Takes a slot from this thread's cache, refilling it from the shared freelist when empty. The returned
/// slot carries one reference; the flag says whether it took a refill (the caller then runs the idle-trim
/// clock, once the slot is wrapped: a trim runs foreign code). `None`: cache unavailable or the freelist is
/// empty too.
#[cold]
#[inline(never)]
pub(crate) fn acquire(inner: NonNull<Inner>) -> Option<(Cached, bool)> {
    with_local(|l| {
        let e = l.entry(inner)?;
        let (slot, refilled) = match e.slots.pop() {
            Some(s) => (s, false),
            None => (refill(e)?, true),
        };
        e.hit();
        Some((slot, refilled))
    })
}

/// The most slots a refill of a grown cache takes (see [`refill`]).
const REFILL_MAX: usize = 32;

#[cold]
fn refill(e: &mut Entry) -> Option<Cached> {
    let inner = e.inner();
    if inner.waitable && inner.waiters.any() {
        // Someone waits at the limit: take one slot on the shared path (the caller's fallback) rather than a
        // batch that would rest in this cache, which may already have honoured the waiter's flush request.
        return None;
    }
    let cached = |slot| Cached {
        slot,
        ptr: inner.slot_ptr(slot),
    };
    e.refilled = true;
    // Half the cache, but no more than `REFILL_MAX` (or half the starting size, if larger) once it has grown:
    // slots taken beyond the thread's need rest idle here, out of other threads' reach, and moving more at
    // once saves nothing (each magazine is its own pair of CAS). Whole magazines while the depot has them,
    // then slot by slot from the freelist. (The cache is empty here, and `want <= cap`: no reallocation.)
    let want = (e.cap / 2).min(REFILL_MAX.max(inner.cache_size / 2)).max(1);
    if let Some(d) = &inner.depot {
        while e.slots.len() + d.mag() <= want && d.take_into(&inner.free, &mut e.slots, cached) {}
    }
    while e.slots.len() < want {
        match inner.free.pop() {
            Some(s) => e.slots.push(cached(s)),
            None => break,
        }
    }
    let got = e.slots.len();
    if got == 0 {
        return None;
    }
    // The caller holds a handle, so Inner cannot be freed between the pops and this increment.
    inner.add_refs(got);
    e.net = e.net.saturating_add(got as isize);
    // Hand out the slot popped last; the rest stay cached in pop order.
    e.slots.pop()
}

/// Puts a released slot (and its reference) into this thread's cache. Returns `false` if the caller must
/// release it directly instead (cache unavailable, or the pool is closing).
#[cold]
#[inline(never)]
pub(crate) fn release(inner: NonNull<Inner>, slot: Cached) -> bool {
    with_local(|l| {
        let mut owed = Vec::new();
        let e = l.entry(inner)?;
        // The caller looked for waiters before this sweep. A sweep that honoured the first waiter's flush
        // request has seen that waiter (`bump_sweep_epoch`), but the caller's look may predate both: look
        // again, or the slot would rest here, unflushed, while the waiter waits (loom
        // `sweep_races_waiter_flush_request`). `None`: the caller frees it and runs the wake check.
        if e.inner().waitable && e.inner().waiters.any() {
            return None;
        }
        if e.slots.len() >= e.cap {
            e.make_room(&mut owed);
        }
        e.slots.push(slot);
        e.publish();
        l.owed.append(&mut owed);
        Some(())
    })
    .is_some()
}

/// Flushes this thread's cache for `inner` (all of it) and drops the entry. Used by the closing handle.
pub(crate) fn close_local(inner: NonNull<Inner>) {
    borrow_local(|l| {
        let p = l.entries.iter().position(|e| e.inner == inner)?;
        (*l.entries.swap_remove(p)).close(&mut l.owed);
        Some(())
    });
}

/// Flushes this thread's cache for `inner` but keeps the entry. Used by `trim`.
pub(crate) fn flush_local(inner: NonNull<Inner>) {
    borrow_local(|l| {
        let e = l.entries.iter_mut().find(|e| e.inner == inner)?;
        e.trim(&mut l.owed);
        e.trim_seen = e.inner().trim_epoch();
        Some(())
    });
}

/// For the loom models: the sweep epoch this thread's caches last honoured, and the idle slots this thread caches
/// for the pool whose shared state is at `inner` (`None`: no entry for that pool).
#[cfg(all(loom, test))]
pub(crate) fn loom_view(inner: usize) -> (u64, Option<usize>) {
    borrow_local(|l| {
        let slots = l
            .entries
            .iter()
            .find(|e| e.inner.as_ptr() as usize == inner)
            .map(|e| e.slots.len());
        Some((l.epoch_seen, slots))
    })
    .expect("this thread's caches are available")
}
