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
//! then on, even when its cache is empty, until the entry ends: when the thread exits, when the pool's last
//! handle is dropped on this very thread (`close_local`), at the thread's first cache operation after the pool
//! closed, or (the usual way, below) when the closing handle's reclaim ends it.
//!
//! Caches notice closes and trims two ways. (1) Every pool close, every [`PagePool::trim`](crate::PagePool::trim)
//! and the first waiter of a `Wait` pool bump the global `SWEEP_EPOCH`; each cache operation (an acquire or
//! release on this thread of a buffer of *any* pool with thread caches) compares it with the epoch this thread
//! last saw (one load of a line that is almost never written) and, when it moved, closes the entries of closing
//! pools and flushes (and shrinks) those of pools that asked for a trim. (2) Reclaim, below: the closing handle,
//! `trim()` and an acquire that found the shared pool empty reach every thread's cache at once. So the memory
//! of a dropped pool is unmapped once its last buffer is home, whether or not the threads that cached it ever
//! touch a pool again. (Without a process-wide barrier, see below, only (1) remains: a thread that used the
//! pool once and then blocks keeps the memory mapped until it exits.)
//!
//! # Reclaim
//! Each cache's slots live in a [`Stash`] that the pool's registry (`Inner::caches`) also holds, behind an
//! *asymmetric lock* with two flags, `busy` (written by the owner) and `claim` (written by reclaimers):
//!
//! ```text
//! owner, every operation:                      reclaimer (one per pool at a time: `reclaim_lock`):
//!   busy = 1          (plain store)              claim = 1 on every cache of the pool
//!   compiler fence    (`light_barrier`)          process-wide barrier (`heavy_barrier`: membarrier)
//!   claim? -> busy = 0, full path (waits)        for each cache: wait while busy (bounded), then
//!   ... pop / push / refill / flush ...            take its slots to the freelist, give their refs back
//!   busy = 0          (Release)                    claim = 0 (Release), or, closing: dead = 1, claim kept
//! ```
//!
//! The barrier makes every running thread of the process execute a full memory barrier (threads not running
//! pass one when they are switched back in), so the owner's store/load pair, which has no fence of its own,
//! is ordered as if it had one: of "owner: busy = 1, load claim" and "reclaimer: claim = 1, load busy", one
//! load sees the other's store. Either the owner sees the claim and keeps off the slots, or the reclaimer sees
//! `busy` and waits for the operation to end (`Release`/`Acquire` on `busy` then publishes the slots as the
//! owner left them). The owner's hit path stays free of read-modify-writes and fences: two plain stores, a load
//! and a branch more than before. A reclaimer pays one barrier per pass (a few microseconds: interrupts to
//! every CPU running the process), whatever the number of caches.
//!
//! A dead stash (ended by the closing reclaim, or by its owner while closing it) has no slots and no
//! reference: its owner only forgets it, and checks `dead` under the lock before it touches the pool, which
//! may be freed by then (and a new pool may sit at the same address: a dead entry never matches again).
//! Without a process-wide barrier (a kernel without `membarrier`, a seccomp filter refusing it, a platform
//! other than Linux and Windows) `reclaim` takes nothing, and the sweeps of (1) still return everything; the
//! tests in `src/tests/reclaim.rs` run that way too. Loom models: `reclaim_races_owner_pop_and_push`,
//! `thread_exit_races_reclaim`, `close_ends_a_blocked_threads_cache`, `close_reclaim_races_cached_release`
//! (`src/loom_tests.rs`).

use crate::shared::{Body, Inner, Ref, Stash, SWEEP_EPOCH};
use crate::sync::{light_barrier, lock, yield_now};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc as StdArc;

pub(crate) use crate::shared::Cached;

/// This thread's handle on its cache for one pool.
struct Entry {
    inner: NonNull<Inner>,
    stash: StdArc<Stash>,
}

impl Entry {
    /// Whether this is the live entry for `inner`. A dead entry never is: its pool may be gone, and a new pool
    /// may sit at the same address. (`dead` never goes back to clear, so a stale clear only defers the
    /// discovery to `with_held`, which looks under the lock.)
    fn is_for(&self, inner: NonNull<Inner>) -> bool {
        // Acquire: as in `Stash::enter`.
        self.inner == inner && !self.stash.dead.load(Acquire)
    }
}

impl Stash {
    /// The owner takes the stash's lock if no reclaimer holds or wants it: a plain store, a compiler-only
    /// barrier, a load. `false`: a reclaimer is there (the caller goes to the full path, which waits).
    #[inline(always)]
    fn try_enter(&self) -> bool {
        // Relaxed: ordered before the load below by the asymmetric barrier pair (`sync::light_barrier`).
        self.busy.store(true, Relaxed);
        light_barrier();
        // Acquire: a reclaimer's `Release` clearing of `claim` publishes what it did to the slots.
        if self.claim.load(Acquire) {
            self.leave();
            return false;
        }
        true
    }

    /// The owner gives the lock back. `Release`: a reclaimer that reads it clear (`Acquire`) sees the slots as
    /// this operation left them.
    #[inline(always)]
    fn leave(&self) {
        self.busy.store(false, Release);
    }

    /// The owner takes the lock, waiting out a reclaimer. `false`: the entry is dead (a closing reclaim ended
    /// it): the caller forgets it without touching the pool, which may be gone.
    fn enter(&self) -> bool {
        loop {
            if self.try_enter() {
                return true;
            }
            loop {
                // Acquire: the ending reclaim's `Release` store; after it, nothing of the entry is ours.
                if self.dead.load(Acquire) {
                    return false;
                }
                if !self.claim.load(Acquire) {
                    break;
                }
                yield_now();
            }
        }
    }

    /// Publishes the cache length. `Release`, so a `stats()` that reads the new length (with `Acquire`) also
    /// sees where the slots went (depot and freelist counts written before).
    #[inline(always)]
    fn publish(&self, b: &Body) {
        self.cached.store(b.slots.len(), Release);
    }

    /// Counts a cache hit and publishes the new length.
    #[inline(always)]
    fn hit(&self, b: &mut Body) {
        b.hits += 1;
        // Relaxed: a statistic; no other memory is read on the strength of it.
        self.hits.store(b.hits, Relaxed);
        self.publish(b);
    }
}

/// An entry whose lock this thread holds (see "Reclaim" in the module docs), with its cache.
struct Held<'a> {
    inner: NonNull<Inner>,
    stash: &'a Stash,
    body: &'a mut Body,
}

impl<'a> Held<'a> {
    /// The pool's shared state. The lifetime is not tied to `&self` so the body can be borrowed mutably
    /// alongside.
    fn inner(&self) -> &'a Inner {
        // SAFETY: the entry is live (its holder entered it and found it not dead), so it still holds its own
        // reference on `Inner` (taken in `Local::new_entry`; only the holder of its lock ever gives it up), and
        // `Inner` is alive while the lock is held.
        unsafe { self.inner.as_ref() }
    }

    fn publish(&self) {
        self.stash.publish(self.body);
    }

    /// Grows a full cache instead of flushing it, if its thread has refilled it since it last flushed: the
    /// thread's demand exceeds the cache, and every round would otherwise move the excess through shared memory
    /// twice. Doubles `cap`, within the pool's `cache_max` and what is left of the room all caches share
    /// (`Inner::cache_room`, a read-modify-write on this cold path only). `false`: flush as usual.
    fn grow(&mut self) -> bool {
        let inner = self.inner();
        let b = &mut *self.body;
        if !b.refilled || b.cap >= inner.cache_max {
            return false;
        }
        let want = b.cap.min(inner.cache_max - b.cap);
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
        b.cap += got;
        // The hit path writes up to `cap` slots without a capacity check.
        b.slots.reserve_exact(b.cap - b.slots.len());
        true
    }

    /// Gives back to the shared room what `cap` has grown beyond `cap_to` (not below the pool's `cache_size`).
    fn shrink(&mut self, cap_to: usize) {
        let inner = self.inner();
        let cap_to = cap_to.max(inner.cache_size);
        if self.body.cap > cap_to {
            // Relaxed: see `grow`.
            inner.cache_room.fetch_add(self.body.cap - cap_to, Relaxed);
            self.body.cap = cap_to;
        }
    }

    /// Makes room at a release into a full cache: grows it (see [`grow`](Self::grow)), or else flushes its
    /// older half. A grown cache whose thread has flushed four caches' worth more than it refilled (it releases
    /// what other threads took) halves. A thread that takes and returns a batch larger than its cache flushes
    /// about what it refilled, so its cache stays grown (found by review: counting flushes in a row instead
    /// halved such a cache within every release phase).
    fn make_room(&mut self, owed: &mut Vec<Ref>) {
        if self.grow() {
            self.body.net = 0;
            return;
        }
        self.body.refilled = false;
        let keep = self.body.cap - (self.body.cap / 2).max(1);
        let n = self.body.slots.len().saturating_sub(keep);
        self.flush(n, owed);
        self.body.net = self.body.net.saturating_sub(n as isize);
        if self.body.net < -4 * self.body.cap as isize {
            self.body.net = 0;
            self.shrink(self.body.cap / 2);
        }
    }

    /// Flushes every slot and shrinks the cache to its starting size (a trim).
    fn trim(&mut self, owed: &mut Vec<Ref>) {
        let n = self.body.slots.len();
        self.flush(n, owed);
        self.shrink(0);
        self.body.refilled = false;
        self.body.net = 0;
    }

    /// Moves the oldest `n` slots back to the pool and drops their references: whole magazines to the depot
    /// while it has room, the rest to the shared freelist one by one. A `Wait` pool's wake check is owed, not
    /// run: it goes to `owed` (with a reference that keeps the pool alive until then), and runs once the
    /// caller's books balance and this thread's caches are no longer borrowed ([`settle`]).
    fn flush(&mut self, n: usize, owed: &mut Vec<Ref>) {
        let n = n.min(self.body.slots.len());
        if n == 0 {
            return;
        }
        let inner = self.inner();
        let mut left = n;
        let mut oldest = self.body.slots.drain(..n).map(|c| c.slot);
        if let Some(d) = &inner.depot {
            // `left >= mag` slots remain in `oldest` whenever `put_with` asks for `mag` of them.
            while left >= d.mag()
                && d.put_with(inner.free.links(), || oldest.next().unwrap_or(u32::MAX))
            {
                left -= d.mag();
            }
        }
        for slot in oldest {
            inner.free.push(slot);
        }
        self.publish();
        // SAFETY: these n references were owned by the cached slots; the entry's own reference keeps Inner
        // alive past this call (only the holder of the entry's lock gives it up, and that is us), so this
        // cannot be the last one.
        unsafe { Inner::release_refs(self.inner, n) };
        if inner.waitable {
            // The slots are visible now: anyone waiting at the limit must be served (the wake handshake,
            // `wait.rs`). The entry's reference keeps Inner alive for this new one.
            owed.push(Ref::take(inner));
        }
    }
}

/// Runs `f` with `e`'s lock held; `None` (without calling `f`) if the entry is dead.
fn with_held<R>(e: &Entry, f: impl FnOnce(&mut Held<'_>) -> R) -> Option<R> {
    let stash = &*e.stash;
    if !stash.enter() {
        return None;
    }
    // Gives the lock back on every way out, unwinding included (nothing here is expected to panic, but a
    // stuck `busy` would keep every reclaimer off this cache).
    struct Leave<'a>(&'a Stash);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.leave();
        }
    }
    let _leave = Leave(stash);
    Some(stash.body.with_mut(|b| {
        // SAFETY: this thread holds the stash's lock (`enter`), so no reclaimer touches the body, and no other
        // reference to it exists on this thread: `LOCAL` is borrowed by our caller, which took the hit paths
        // (the only other way in) off first.
        let body = unsafe { &mut *b };
        f(&mut Held {
            inner: e.inner,
            stash,
            body,
        })
    }))
}

/// Ends a live entry whose thread is done with it: flushes everything, marks it dead while holding its lock (so
/// no reclaimer ends it too), unregisters it, and hands its own reference to `owed`: dropping that may free
/// `Inner`, whose teardown emits an event (foreign code), so that happens only once the caller's books balance
/// and the caches are no longer borrowed ([`settle`]). A dead entry is only forgotten: whoever ended it took
/// its slots and its reference.
fn close(e: Entry, owed: &mut Vec<Ref>) {
    let ended = with_held(&e, |h| {
        h.trim(owed);
        // Relaxed: written and read only by holders of the lock, which orders them.
        h.stash.dead.store(true, Relaxed);
        h.body.hits
    });
    if let Some(hits) = ended {
        // SAFETY: the entry's own reference is still held (given up below), so Inner is alive.
        unsafe { e.inner.as_ref() }.unregister_cache(&e.stash, hits);
        // SAFETY: the entry's own reference, taken in `Local::new_entry`, passed on; not used here again.
        owed.push(unsafe { Ref::adopt(e.inner) });
    }
}

/// This thread's caches, one entry per pool used (most recently used first).
struct Local {
    /// [`HOT`] points at the front one's stash, which its `Arc` keeps in place while the vector is reordered.
    entries: Vec<Entry>,
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
            let owed = &mut self.owed;
            // `Some(true)`: the pool is closing; `None`: the entry is dead (a closing reclaim ended it).
            let closing = with_held(&self.entries[i], |h| {
                if h.inner().is_closing() {
                    return true;
                }
                let trim = h.inner().trim_epoch();
                if trim != h.body.trim_seen {
                    h.body.trim_seen = trim;
                    h.trim(owed);
                }
                false
            });
            match closing {
                Some(false) => i += 1,
                Some(true) => close(self.entries.swap_remove(i), &mut self.owed),
                None => drop(self.entries.swap_remove(i)),
            }
        }
        // Honoured only once every entry was looked at.
        self.epoch_seen = epoch;
    }

    /// The index of the entry for `inner`, created (and registered) if this thread has none yet, and moved to
    /// the front. `None` if the pool is closing (no new entries for a dying pool).
    #[inline]
    fn entry(&mut self, inner: NonNull<Inner>) -> Option<usize> {
        if self.entries.first().is_some_and(|e| e.is_for(inner)) {
            return Some(0);
        }
        self.other_entry(inner)
    }

    /// `entry` for a pool that is not the most recently used one: move it to the front, or create it.
    #[cold]
    fn other_entry(&mut self, inner: NonNull<Inner>) -> Option<usize> {
        match self.entries.iter().position(|e| e.is_for(inner)) {
            Some(p) => {
                self.entries.swap(0, p);
                Some(0)
            }
            None => self.new_entry(inner),
        }
    }

    #[cold]
    fn new_entry(&mut self, inner: NonNull<Inner>) -> Option<usize> {
        // SAFETY: the caller holds a reference on `Inner` (a handle, or the buffer being released).
        let r = unsafe { inner.as_ref() };
        if r.is_closing() {
            return None;
        }
        let stash = StdArc::new(Stash::new(r.cache_size, r.trim_epoch()));
        // The entry's own reference exists before a closing reclaim can find the entry and end it (which gives
        // that reference up).
        r.add_refs(1);
        if !r.register_cache(&stash) {
            // SAFETY: the closing reclaim has run, so no entry: this gives back the reference just taken. The
            // caller's keeps Inner alive, so it is not the last one.
            unsafe { Inner::release_refs(inner, 1) };
            return None;
        }
        self.entries.insert(0, Entry { inner, stash });
        Some(0)
    }

    /// Runs `f` on this thread's live entry for `inner` with its lock held, creating the entry if needed;
    /// dead entries met on the way are forgotten. `None`: no entry (a closing pool), or `f` said so.
    fn with_entry<R>(
        &mut self,
        inner: NonNull<Inner>,
        f: impl FnOnce(&mut Held<'_>, &mut Vec<Ref>) -> Option<R>,
    ) -> Option<R> {
        let mut f = Some(f);
        loop {
            let i = self.entry(inner)?;
            let owed = &mut self.owed;
            match with_held(&self.entries[i], |h| f.take().and_then(|f| f(h, owed))) {
                Some(r) => return r,
                // Dead: the pool it named may be gone, and a new pool may sit at the same address.
                None => drop(self.entries.swap_remove(i)),
            }
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // The entries go away: the hit paths must not reach them (nor anything else, from here on).
        hot_off();
        let mut owed = std::mem::take(&mut self.owed);
        for e in self.entries.drain(..) {
            close(e, &mut owed);
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

/// The hit paths' view of this thread's caches: the front (most recently used) entry of [`LOCAL`] (its pool
/// and its stash) and the sweep epoch that `LOCAL` has honoured, published whenever `LOCAL` is not borrowed.
///
/// `LOCAL` owns a destructor, so every access to it checks whether the destructor is registered, and its
/// `RefCell` costs a borrow flag round trip; `HOT` has no destructor and no borrow flag, so reaching it is one
/// thread-pointer-relative address. The rule that makes the raw pointer sound: `stash` is non-null only while
/// `LOCAL` is not borrowed and the entry it belongs to is in `LOCAL` (whose `Arc` keeps the stash alive). Every
/// borrow of `LOCAL` clears it first ([`hot_off`]) and republishes it when done ([`hot_on`]); `Local`'s
/// destructor clears it for good.
struct Hot {
    stash: Cell<*const Stash>,
    inner: Cell<*mut Inner>,
    epoch: Cell<u64>,
}

#[cfg(not(loom))]
std::thread_local! {
    static HOT: Hot = const {
        Hot {
            stash: Cell::new(std::ptr::null()),
            inner: Cell::new(std::ptr::null_mut()),
            epoch: Cell::new(0),
        }
    };
}

#[cfg(loom)]
loom::thread_local! {
    static HOT: Hot = Hot {
        stash: Cell::new(std::ptr::null()),
        inner: Cell::new(std::ptr::null_mut()),
        epoch: Cell::new(0),
    };
}

/// Takes the hit paths off this thread's caches (before `LOCAL` is borrowed or torn down).
fn hot_off() {
    let _ = HOT.try_with(|h| h.stash.set(std::ptr::null()));
}

/// Republishes the front entry and the honoured epoch for the hit paths, as the borrow of `LOCAL` ends.
fn hot_on(l: &mut Local) {
    let (stash, inner) = l
        .entries
        .first()
        .map_or((std::ptr::null(), std::ptr::null_mut()), |e| {
            (StdArc::as_ptr(&e.stash), e.inner.as_ptr())
        });
    let _ = HOT.try_with(|h| {
        h.epoch.set(l.epoch_seen);
        h.inner.set(inner);
        h.stash.set(stash);
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

/// The front entry for the hit paths, with its lock held, if it belongs to `inner`, no sweep is due and no
/// reclaimer is at it.
#[inline(always)]
fn hot_entry<R>(
    inner: NonNull<Inner>,
    f: impl FnOnce(&Stash, &mut Body) -> Option<R>,
) -> Option<R> {
    HOT.try_with(|h| {
        let s = h.stash.get();
        // Relaxed: only a hint that a sweep is due. A stale value serves this operation as if it came before the
        // bump (the entry is this thread's own); a new one sends it to the full path, whose `Acquire` load in
        // `Local::sweep` (reading this value or a later one) orders what the sweep reads.
        if s.is_null()
            || SWEEP_EPOCH.load(Relaxed) != h.epoch.get()
            || h.inner.get() != inner.as_ptr()
        {
            return None;
        }
        // SAFETY: a non-null `stash` is the stash of an entry in this thread's `LOCAL`, whose `Arc` keeps it
        // alive while `LOCAL` is not borrowed (see `Hot`).
        let s = unsafe { &*s };
        if !s.try_enter() {
            return None;
        }
        let r = s.body.with_mut(|b| {
            // SAFETY: this thread holds the stash's lock (`try_enter`: no reclaimer is at it), `LOCAL` is not
            // borrowed (so the full paths are not at it either), and the hit paths make no calls that could
            // re-enter the pool: this is the only reference to the body.
            f(s, unsafe { &mut *b })
        });
        s.leave();
        r
    })
    .ok()
    .flatten()
}

/// The hit path of [`acquire`], small enough to inline into `PagePool::acquire`: pops a slot when this
/// pool's entry is the most recently used one, the sweep epoch has not moved, no reclaimer is at the cache and
/// it is not empty. Anything else (`None`) goes to [`acquire`], which handles it in full. No calls, so the
/// caller's fast path needs no register spills.
#[inline(always)]
pub(crate) fn pop(inner: NonNull<Inner>) -> Option<Cached> {
    hot_entry(inner, |s, b| {
        let slot = b.slots.pop()?;
        s.hit(b);
        Some(slot)
    })
}

/// The hit path of [`release`]: pushes onto this pool's entry when it is the most recently used one, the
/// sweep epoch has not moved, no reclaimer is at it and it has room. `Err` gives the slot back for
/// [`release`].
#[inline(always)]
pub(crate) fn push(inner: NonNull<Inner>, slot: Cached) -> Result<(), Cached> {
    hot_entry(inner, |s, b| {
        let len = b.slots.len();
        if len >= b.cap {
            return None;
        }
        // SAFETY: `len < cap <= capacity` (the Vec was made with capacity `cap`, `Held::grow` reserves room
        // for every `cap` it sets, shrinking only lowers `cap`, and the Vec never holds more than `cap`), so
        // slot `len` is allocated spare room; writing it and then growing the length by one
        // initialises exactly the element `set_len` exposes. (A plain `push` would keep a never-taken
        // reallocation call in this hot path.)
        unsafe {
            b.slots.as_mut_ptr().add(len).write(slot);
            b.slots.set_len(len + 1);
        }
        s.publish(b);
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
        l.with_entry(inner, |h, _| {
            let (slot, refilled) = match h.body.slots.pop() {
                Some(s) => (s, false),
                None => (refill(h)?, true),
            };
            h.stash.hit(h.body);
            Some((slot, refilled))
        })
    })
}

/// The most slots a refill of a grown cache takes (see [`refill`]).
const REFILL_MAX: usize = 32;

#[cold]
fn refill(h: &mut Held<'_>) -> Option<Cached> {
    let inner = h.inner();
    if inner.waitable && inner.waiters.any() {
        // Someone waits at the limit: take one slot on the shared path (the caller's fallback) rather than a
        // batch that would rest in this cache, which may already have honoured the waiter's flush request.
        return None;
    }
    let cached = |slot| Cached {
        slot,
        ptr: inner.slot_ptr(slot),
    };
    let e = &mut *h.body;
    e.refilled = true;
    // Half the cache, but no more than `REFILL_MAX` (or half the starting size, if larger) once it has grown:
    // slots taken beyond the thread's need rest idle here until a reclaim or a trim fetches them, and moving
    // more at once saves nothing (each magazine is its own pair of CAS). Whole magazines while the depot has
    // them, then slot by slot from the freelist. (The cache is empty here, and `want <= cap`: no reallocation.)
    let want = (e.cap / 2).min(REFILL_MAX.max(inner.cache_size / 2)).max(1);
    if let Some(d) = &inner.depot {
        while e.slots.len() + d.mag() <= want
            && d.take_into(inner.free.links(), &mut e.slots, cached)
        {}
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
        l.with_entry(inner, |h, owed| {
            // The caller looked for waiters before this sweep. A sweep that honoured the first waiter's flush
            // request has seen that waiter (`bump_sweep_epoch`), but the caller's look may predate both: look
            // again, or the slot would rest here, unflushed, while the waiter waits (loom
            // `sweep_races_waiter_flush_request`). `None`: the caller frees it and runs the wake check.
            if h.inner().waitable && h.inner().waiters.any() {
                return None;
            }
            if h.body.slots.len() >= h.body.cap {
                h.make_room(owed);
            }
            h.body.slots.push(slot);
            h.publish();
            Some(())
        })
    })
    .is_some()
}

/// Flushes this thread's cache for `inner` (all of it) and drops the entry. Used by the closing handle.
pub(crate) fn close_local(inner: NonNull<Inner>) {
    borrow_local(|l| {
        let p = l.entries.iter().position(|e| e.is_for(inner))?;
        close(l.entries.swap_remove(p), &mut l.owed);
        Some(())
    });
}

/// Flushes this thread's cache for `inner` but keeps the entry. Used by `trim`.
pub(crate) fn flush_local(inner: NonNull<Inner>) {
    borrow_local(|l| {
        let p = l.entries.iter().position(|e| e.is_for(inner))?;
        let owed = &mut l.owed;
        let live = with_held(&l.entries[p], |h| {
            h.trim(owed);
            h.body.trim_seen = h.inner().trim_epoch();
        });
        if live.is_none() {
            drop(l.entries.swap_remove(p));
        }
        Some(())
    });
}

/// The claims of a reclaim pass from `victims[next]` on, cleared when dropped (see `reclaim`).
struct Claims<'a> {
    victims: &'a [StdArc<Stash>],
    next: usize,
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        // Release: see `Stash::try_enter`.
        for v in &self.victims[self.next.min(self.victims.len())..] {
            v.claim.store(false, Release);
        }
    }
}

/// Reports, once per process, that reclaim has no process-wide barrier to work with.
fn no_barrier_event() {
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    // Relaxed: only picks the one caller that reports.
    if !REPORTED.swap(true, Relaxed) {
        crate::sync::foreign_quiet(
            || tracing::debug!(target: "pagepool", "no process-wide barrier (membarrier refused or missing): idle thread caches are reached only by their own threads"),
        );
    }
}

/// What a reclaim does to the caches it reaches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reclaim {
    /// Takes their idle slots; the caches go on.
    Steal,
    /// Takes their idle slots and ends them, with their own references (the pool is closing): a thread that
    /// never touches the pool again then holds nothing of it.
    Kill,
}

/// How often a reclaimer looks again at a cache whose owner is inside an operation, yielding in between,
/// before it leaves that cache alone. Under loom it waits for good: no operation blocks, so the models can
/// assert that a reclaim finds every idle slot.
#[cfg(not(loom))]
const BUSY_LOOKS: usize = 1024;
#[cfg(loom)]
const BUSY_LOOKS: usize = usize::MAX;

/// Takes the idle slots of every thread's cache for this pool (other threads' too) back to the shared
/// freelist, and with [`Reclaim::Kill`] ends the caches; returns the slots taken. The caller holds a
/// reference on the pool (a handle). See "Reclaim" in the module docs for the protocol. Nothing happens (0)
/// where the OS has no process-wide barrier.
pub(crate) fn reclaim(inner: &Inner, how: Reclaim) -> usize {
    if inner.cache_size == 0 || !inner.reclaim {
        return 0;
    }
    let kill = how == Reclaim::Kill;
    // This thread's own cache is left out: every caller has just flushed it or found it empty. So a program
    // with one thread (or one thread using this pool) pays no barrier.
    let this = NonNull::from(inner);
    let own = borrow_local(|l| {
        l.entries
            .iter()
            .find(|e| e.is_for(this))
            .map(|e| StdArc::as_ptr(&e.stash))
    });
    let one_at_a_time = lock(&inner.reclaim_lock);
    // The caches that may hold idle slots: a published length above 0, or an owner inside an operation (the
    // length is published when an operation ends, so a refill in progress still reads 0: filtering on the
    // length alone let an acquire overflow at capacity = demand, 1 in about 25,000 acquires,
    // `tests/thread_cache.rs::reclaim_before_overflow_at_capacity_equal_to_demand`). Both are hints read
    // before the barrier; what they skip is a cache that was empty and idle a moment ago. They spare a pool
    // that is simply exhausted (every cache empty) a barrier per acquire: each one interrupts every CPU
    // running the process (docs/scaling.md, section 7).
    let victims: Vec<StdArc<Stash>> = inner.caches.with(|c| {
        c.closed |= kill;
        c.live
            .iter()
            .filter(|s| Some(StdArc::as_ptr(s)) != own)
            // Relaxed: hints (above); the barrier and the `Acquire` load of `busy` below order what is taken.
            .filter(|s| kill || s.cached.load(Relaxed) > 0 || s.busy.load(Relaxed))
            .cloned()
            .collect()
    });
    if victims.is_empty() {
        return 0;
    }
    // Before any claim: the barrier's one-time setup (found by review: it ran under the claims, so every owner
    // of the pool waited through it, and a panic from the refusal's event, then emitted there, left every cache
    // claimed for good). No foreign code runs from here until the claims are settled.
    if !crate::sync::heavy_barrier_ready() {
        drop(one_at_a_time);
        no_barrier_event();
        return 0;
    }
    // Relaxed: ordered before the owners' loads of `claim` by the asymmetric barrier pair (`sync.rs`).
    victims.iter().for_each(|v| v.claim.store(true, Relaxed));
    // From here, an unwind (none is expected: a bug's debug assertion) still clears the claims of the caches
    // not settled yet, so that their owners do not wait for good.
    let mut claims = Claims {
        victims: &victims,
        next: 0,
    };
    if !crate::sync::heavy_barrier() {
        // Release (in `Claims::drop`): owners waiting for the claim to clear see the cache as they left it.
        drop(claims);
        drop(one_at_a_time);
        no_barrier_event();
        return 0;
    }
    let mut slots = 0;
    let mut ended = Vec::new();
    for (i, v) in victims.iter().enumerate() {
        claims.next = i;
        // The barrier is past: an owner that had not set `busy` visibly by then sees our claim and keeps off;
        // one that had is inside an operation, which ends soon (no operation blocks or runs foreign code).
        // Acquire: its `Release` clearing of `busy` publishes the slots as it left them.
        // One load decides: an owner that sets `busy` again after it read clear is only looking at our claim,
        // and backs off (found by loom: a second look after the wait gave up on such a blip, and the reclaim
        // missed an idle slot).
        let mut looks = 0;
        let idle = loop {
            if !v.busy.load(Acquire) {
                break true;
            }
            if looks == BUSY_LOOKS {
                break false;
            }
            looks += 1;
            yield_now();
        };
        if !idle {
            // Stuck (descheduled mid-operation): leave this cache alone. A closing pool then keeps it until its
            // thread's next pool operation or exit, as without reclaim.
            v.claim.store(false, Release);
            continue;
        }
        let taken = v.body.with_mut(|b| {
            // SAFETY: we hold this stash's lock: our claim was set before the barrier and its owner's `busy`
            // read clear after it (the asymmetric lock, module docs), and reclaimers of this pool take turns
            // (`reclaim_lock`). So nothing else reaches the body now.
            let b = unsafe { &mut *b };
            // Relaxed: written only by holders of the lock, which orders it before this read.
            if v.dead.load(Relaxed) {
                return None;
            }
            let n = b.slots.len();
            for c in b.slots.drain(..) {
                inner.free.push(c.slot);
            }
            v.cached.store(0, Release);
            Some((n, b.hits))
        });
        match taken {
            // Ended by its owner: its slots and references are gone already, and nobody waits on the claim.
            None => {}
            Some((n, hits)) => {
                slots += n;
                if kill {
                    // Release: the owner that reads it (`Stash::enter`) forgets the entry and never touches the
                    // pool again. The claim stays set, so the hit paths keep off for good.
                    v.dead.store(true, Release);
                    ended.push((v.clone(), hits));
                } else {
                    // Release: see `Stash::try_enter`.
                    v.claim.store(false, Release);
                }
            }
        }
    }
    // Every claim is settled: cleared, or kept on a dead cache.
    claims.next = victims.len();
    drop(claims);
    if !ended.is_empty() {
        let hits: u64 = ended.iter().map(|(_, h)| h).sum();
        inner.caches.with(|c| {
            c.live
                .retain(|s| !ended.iter().any(|(e, _)| StdArc::ptr_eq(s, e)));
            // Under the registry's lock, as `unregister_cache`: a concurrent `stats()` counts these hits once.
            // Relaxed: a statistic.
            inner.retired_hits.fetch_add(hits, Relaxed);
        });
    }
    drop(one_at_a_time);
    if slots > 0 {
        // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
        inner.counters.reclaimed.fetch_add(slots as u64, Relaxed);
    }
    let refs = slots + ended.len();
    if refs > 0 {
        // SAFETY: each slot taken held one reference, and each ended entry its own: ours to give back now that
        // the slots are on the freelist. The caller's reference keeps Inner alive, so none is the last.
        unsafe { Inner::release_refs(NonNull::from(inner), refs) };
    }
    if slots > 0 || !ended.is_empty() {
        let caches = ended.len();
        crate::sync::foreign_quiet(
            || tracing::debug!(target: "pagepool", slots, ended = caches, ?how, "reclaimed idle slots from thread caches"),
        );
        if slots > 0 && inner.waitable {
            // The slots are on the freelist: anyone waiting at the limit must be served (`wait.rs`).
            inner.after_release();
        }
    }
    slots
}

/// For the loom models: the sweep epoch this thread's caches last honoured, and the idle slots this thread caches
/// for the pool whose shared state is at `inner` (`None`: no live entry for that pool).
#[cfg(all(loom, test))]
pub(crate) fn loom_view(inner: usize) -> (u64, Option<usize>) {
    borrow_local(|l| {
        let slots = l
            .entries
            .iter()
            .find(|e| e.is_for(NonNull::new(inner as *mut Inner).expect("a pool's address")))
            .map(|e| e.stash.cached.load(Acquire));
        Some((l.epoch_seen, slots))
    })
    .expect("this thread's caches are available")
}
