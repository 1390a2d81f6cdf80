//! The overflow reserve: released overflow buffers of the pool's own size, kept mapped for a while
//! ([`PoolBuilder::overflow_decay`](crate::PoolBuilder::overflow_decay)) and handed to the next overflow acquire
//! instead of a fresh `mmap`, then unmapped once they have been idle for longer than the decay.
//!
//! A reserved mapping keeps what it held as a buffer: its overflow permit (so buffers out plus reserved
//! mappings never exceed `max_overflow`), its bytes of budget (`max_bytes`), its locked bytes
//! (`lock_memory`) and the advice and guard pages applied when it was mapped. It holds no reference on the
//! pool: the pool's teardown drops what is left here (dropping an [`OverflowBuf`] unmaps it), and the last
//! handle's drop empties the reserve first (`pool.rs`).
//!
//! Entries are kept in the order they came in: taken newest first (its pages are the likeliest to be warm),
//! unmapped oldest first, so the front is always the longest idle. The list is behind a `crate::sync::Mutex`
//! (loom's under `--cfg loom`, so the models see it); every critical section is a push or pop on a `VecDeque`
//! and no system call or foreign code runs under it. A spin lock on a `crate::sync` atomic made the loom
//! models spin for ever (a waiter re-reading a lock word loom keeps stale); std's `Mutex` takes a contended
//! lock inside precompiled code TSan cannot see, so TSan builds wrap it (`crate::sync`, `--cfg pagepool_tsan`).

use crate::overflow::OverflowBuf;
use crate::sync::{lock, AtomicUsize, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

/// The most mappings one pool's reserve keeps, whatever `max_overflow` allows. A reserve of pool-sized buffers
/// never holds more mappings than the most overflow buffers that were out at once (a mapping enters it only
/// when a buffer is released, and an overflow acquire takes from it before it maps), so this bounds the list
/// and the memory kept, not the mappings the pool uses: `vm.max_map_count` use is what the overflow path
/// already used at its peak.
pub(crate) const RESERVE_MAX: usize = 4096;

#[derive(Debug)]
struct Entry {
    buf: Box<OverflowBuf>,
    /// When the buffer came in (`sys::coarse_clock`).
    since: Duration,
}

#[derive(Debug)]
pub(crate) struct Reserve {
    /// The most entries (0: no reserve, released overflow buffers are unmapped at once).
    cap: usize,
    /// How long an entry may stay idle.
    decay: Duration,
    list: Mutex<VecDeque<Entry>>,
    /// Entries in `list`; written under the lock.
    len: AtomicUsize,
    /// Bytes the entries reserve from the OS (`Mapping::reserved`); written under the lock.
    bytes: AtomicUsize,
    /// Entries taken out to be unmapped whose permits and budget are not back yet (see [`Self::settling`]).
    unmapping: AtomicUsize,
    /// Batches unmapped so far (see [`Self::settling`]).
    unmapped: AtomicUsize,
}

impl Reserve {
    /// A reserve of at most `cap` entries idle at most `decay` each (`cap == 0` turns it off).
    pub(crate) fn new(cap: usize, decay: Duration) -> Self {
        Reserve {
            cap: if decay.is_zero() { 0 } else { cap },
            decay,
            list: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            unmapping: AtomicUsize::new(0),
            unmapped: AtomicUsize::new(0),
        }
    }

    /// Whether released buffers are kept at all.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// Entries now. Relaxed: a gauge for `stats()`, and a hint that lets empty-reserve paths skip the lock. A
    /// stale zero there skips a mapping that just came in: the acquire maps a fresh one (and looks again under
    /// the lock if the permits ran out), and the decay check runs again at the next slow path. Waiters do not
    /// depend on it alone: the releaser that puts a mapping here runs the fenced wake check afterwards, and a
    /// waiter's second look comes after its own `SeqCst` fence, which orders this load after the store it must
    /// see (`wait.rs`).
    ///
    /// A reserve that is off answers 0 without a load: a pool with `overflow_decay(ZERO)` makes exactly the
    /// atomic operations it made before the reserve existed (and so do its loom models).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        if !self.enabled() {
            return 0;
        }
        self.len.load(Relaxed)
    }

    /// Bytes the entries reserve from the OS. Relaxed: a gauge for `stats()`.
    pub(crate) fn bytes(&self) -> usize {
        if !self.enabled() {
            return 0;
        }
        self.bytes.load(Relaxed)
    }

    fn with<R>(&self, f: impl FnOnce(&mut VecDeque<Entry>) -> R) -> R {
        let mut list = lock(&self.list);
        let r = f(&mut list);
        // Relaxed: under the lock, which orders the writers; readers outside it use them as gauges and hints
        // (see `len`).
        self.len.store(list.len(), Relaxed);
        r
    }

    /// Keeps `buf` (already scrubbed by the caller), or gives it back when the reserve is full. Entries that
    /// have now been idle longer than the decay are moved to `expired`, for the caller to unmap once the lock
    /// is given back.
    #[allow(clippy::vec_box)] // entries keep their buffers' boxes: a reuse allocates nothing
    pub(crate) fn put(
        &self,
        buf: Box<OverflowBuf>,
        expired: &mut Vec<Box<OverflowBuf>>,
    ) -> Result<(), Box<OverflowBuf>> {
        let reserved = buf.mapping.reserved();
        self.with(|list| {
            let now = crate::sys::coarse_clock();
            self.pop_expired(list, Some(now), expired, usize::MAX);
            if list.len() >= self.cap {
                return Err(buf);
            }
            list.push_back(Entry { buf, since: now });
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_add(reserved, Relaxed);
            Ok(())
        })
    }

    /// The most recently reserved buffer, if any (one relaxed load when the reserve looks empty).
    pub(crate) fn take(&self) -> Option<Box<OverflowBuf>> {
        if self.len() == 0 {
            return None;
        }
        self.take_locked()
    }

    /// [`take`](Self::take) without the relaxed first look: after a refused permit, whose holder may be a
    /// buffer that just came in.
    pub(crate) fn take_locked(&self) -> Option<Box<OverflowBuf>> {
        if !self.enabled() {
            return None;
        }
        self.with(|list| {
            let e = list.pop_back()?;
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_sub(e.buf.mapping.reserved(), Relaxed);
            Some(e.buf)
        })
    }

    /// The longest-idle buffer, if any (to unmap it for its permit and budget).
    pub(crate) fn take_oldest(&self) -> Option<Box<OverflowBuf>> {
        if self.len() == 0 {
            return None;
        }
        self.with(|list| {
            let e = list.pop_front()?;
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_sub(e.buf.mapping.reserved(), Relaxed);
            // Relaxed: under the lock, which publishes it to the next taker (see `settling`).
            self.unmapping.fetch_add(1, Relaxed);
            Some(e.buf)
        })
    }

    /// A mark to pass to [`settling`](Self::settling), read before looking at the reserve.
    pub(crate) fn unmapped_mark(&self) -> usize {
        if !self.enabled() {
            return 0;
        }
        // Acquire: pairs with the `Release` increment in `unmapped`, after which the batch's permits are back.
        self.unmapped.load(Acquire)
    }

    /// The caller gave back the permits and budget of `n` entries it took out to unmap.
    pub(crate) fn unmapped(&self, n: usize) {
        // Release, both: whoever reads the new values (`settling`) also sees the permits and bytes given back
        // before them.
        self.unmapped.fetch_add(1, Release);
        self.unmapping.fetch_sub(n, Release);
    }

    /// Whether a refused permit or budget (after a look at the reserve that found it empty) may be held by
    /// reserved buffers on their way out: entries taken out to be unmapped and not given back yet, or given back
    /// since `mark`. The caller then yields and tries again, as an acquire waits for a chunk mapping in flight,
    /// rather than report a spurious `Exhausted` (loom `reserve_acquire_races_trim_unmap`). An entry taken
    /// out before the caller's locked look at the list is counted in `unmapping` in the same critical section,
    /// so the caller sees it here, or its decrement, which follows the `unmapped` increment.
    ///
    /// Read-modify-writes rather than loads: they read the latest values, so a caller looping on this sees the
    /// unmapper's progress (a load may go on returning an older value; loom explores exactly that).
    /// `mark` is updated to the latest count, so a caller that loops (with a mark from an older, possibly stale,
    /// load) retries once more per batch unmapped, not for ever.
    pub(crate) fn settling(&self, mark: &mut usize) -> bool {
        if !self.enabled() {
            return false;
        }
        // Acquire: see `unmapped`.
        let unmapping = self.unmapping.fetch_add(0, Acquire);
        let unmapped = self.unmapped.fetch_add(0, Acquire);
        let moved = unmapped != *mark;
        *mark = unmapped;
        unmapping > 0 || moved
    }

    /// Moves to `out` the entries idle longer than the decay at `now`, or every entry (`now == None`), until
    /// `out` holds `batch` buffers. An emptied list gives its memory back. `locked`: look under the lock even
    /// when the length gauge reads 0 (a close, see `Inner::unmap_reserved`).
    #[allow(clippy::vec_box)] // entries keep their buffers' boxes: a reuse allocates nothing
    pub(crate) fn expire(
        &self,
        now: Option<Duration>,
        out: &mut Vec<Box<OverflowBuf>>,
        batch: usize,
        locked: bool,
    ) {
        if !self.enabled() || (!locked && self.len() == 0) {
            return;
        }
        self.with(|list| {
            self.pop_expired(list, now, out, batch);
            if list.is_empty() {
                // A burst's list (up to `RESERVE_MAX` entries) is not kept once the burst is over.
                list.shrink_to_fit();
            }
        });
    }

    #[allow(clippy::vec_box)] // entries keep their buffers' boxes: a reuse allocates nothing
    fn pop_expired(
        &self,
        list: &mut VecDeque<Entry>,
        now: Option<Duration>,
        out: &mut Vec<Box<OverflowBuf>>,
        batch: usize,
    ) {
        while out.len() < batch {
            let Some(front) = list.front() else {
                break;
            };
            if now.is_some_and(|n| n.saturating_sub(front.since) <= self.decay) {
                break;
            }
            let e = list.pop_front().expect("front exists");
            // Relaxed: a gauge, changed under the lock.
            self.bytes.fetch_sub(e.buf.mapping.reserved(), Relaxed);
            // Relaxed: under the lock (see `settling`).
            self.unmapping.fetch_add(1, Relaxed);
            out.push(e.buf);
        }
    }
}

impl Drop for Reserve {
    /// The pool's teardown: the entries' mappings are unmapped as they drop. Idle entries are ASan-poisoned
    /// (`release.rs`); the shadow is cleaned first, so a later mapping at the same addresses starts clean.
    fn drop(&mut self) {
        for e in lock(&self.list).iter() {
            crate::sys::unpoison(e.buf.ptr.as_ptr(), e.buf.buf_size);
        }
    }
}
