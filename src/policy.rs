//! Memory policy: what the pool does to fresh memory (advice, guard pages, locking), to released buffers
//! (zeroing, poisoning), and to idle memory (trimming).
//!
//! Everything here is decided once at build from the [`PoolBuilder`] and read-only afterwards, except the
//! counters. The release and acquire paths test one byte, [`MemPolicy::scrub`], and stay untouched when no
//! scrubbing is asked for.

use crate::config::{ForkPolicy, HugePages, LockPolicy, PoolBuilder};
// Plain std atomics: these are statistics and a trimming clock, not part of any protocol the loom models check.
use crate::sys::{self, Advice};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

/// `MemPolicy::scrub` bit: zero released buffers.
pub(crate) const SCRUB_ZERO: u8 = 1;
/// `MemPolicy::scrub` bit: fill released pooled buffers with [`POISON`] and check it on acquire.
pub(crate) const SCRUB_POISON: u8 = 2;

/// The poison pattern, one 64-bit word repeated (every buffer is page-aligned and a page multiple).
const POISON: u64 = 0xDEAD_F00D_DEAD_F00D;

/// Where a fresh region's buffers lie: the region starts with `lead` bytes (a guard, or nothing), then `slots`
/// slots of `stride` bytes, each a buffer of `buf_size` bytes followed by `stride - buf_size` bytes of gap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    pub(crate) start: NonNull<u8>,
    pub(crate) len: usize,
    pub(crate) lead: usize,
    pub(crate) slots: usize,
    pub(crate) stride: usize,
    pub(crate) buf_size: usize,
    /// A pooled chunk (huge-page advice applies) rather than an overflow buffer (normal pages always).
    pub(crate) chunk: bool,
    /// The chunk's number in the arena (0 for an overflow buffer).
    pub(crate) index: usize,
}

/// A `BestEffort` locking shortfall, held until it can be reported.
#[derive(Debug)]
struct LockShortfall {
    asked: usize,
    locked: usize,
    limit: Option<usize>,
    error: io::Error,
}

#[derive(Debug)]
pub(crate) struct MemPolicy {
    /// `SCRUB_ZERO | SCRUB_POISON` as configured.
    pub(crate) scrub: u8,
    pub(crate) lock: LockPolicy,
    dont_dump: bool,
    fork: ForkPolicy,
    pub(crate) huge: HugePages,
    pub(crate) guard: bool,
    /// Bytes locked now (chunks, plus overflow buffers out).
    locked_bytes: AtomicUsize,
    /// Whether `BestEffort` already fell short of locking everything (it warns once per pool).
    lock_warned: AtomicBool,
    /// That shortfall's warning, until the mapping path that met it has put its memory where it belongs and
    /// emits it ([`emit_deferred`](Self::emit_deferred)): a subscriber may panic, and a panic in the middle
    /// of mapping a chunk would strand the chunk.
    lock_shortfall: std::sync::Mutex<Option<LockShortfall>>,
    /// Poison mismatches found on acquire.
    pub(crate) poison_violations: AtomicU64,
    /// Bytes given back to the OS by trimming (repeats counted).
    pub(crate) trimmed_bytes: AtomicU64,
    /// Idle trimming, if asked for.
    pub(crate) idle: Option<IdleTrim>,
    /// NUMA placement (`numa.rs`), applied first to every fresh mapping.
    pub(crate) numa: crate::numa::Placement,
}

impl MemPolicy {
    pub(crate) fn new(b: &PoolBuilder, numa: crate::numa::Placement) -> Self {
        let scrub = (if b.zero_on_release { SCRUB_ZERO } else { 0 })
            | (if b.poison_on_release { SCRUB_POISON } else { 0 });
        MemPolicy {
            scrub,
            lock: b.lock_memory,
            dont_dump: b.dont_dump,
            fork: b.on_fork,
            huge: b.huge_pages,
            guard: b.guard_pages,
            locked_bytes: AtomicUsize::new(0),
            lock_warned: AtomicBool::new(false),
            lock_shortfall: std::sync::Mutex::new(None),
            poison_violations: AtomicU64::new(0),
            trimmed_bytes: AtomicU64::new(0),
            idle: b.idle_trim_after.map(IdleTrim::new),
            numa,
        }
    }

    /// Relaxed (as every update of `locked_bytes`): a gauge for `stats()` and the best-effort estimate of the
    /// room left under `RLIMIT_MEMLOCK`, where the kernel's own accounting decides (a refused `mlock`).
    pub(crate) fn locked_bytes(&self) -> usize {
        self.locked_bytes.load(Relaxed)
    }

    /// Whether mapping must be done without `MAP_POPULATE` because advice (or the NUMA policy) has to come
    /// before the first touch.
    pub(crate) fn advise_before_touch(&self) -> bool {
        self.huge == HugePages::Transparent || self.guard || self.numa.binds()
    }

    /// Applies the policy to a fresh mapping nobody else sees yet: the NUMA policy (`mbind`, first: nothing
    /// below touches a page before it), huge-page advice, guard pages, dump and fork advice, then locking.
    /// Returns the bytes locked (to give back with [`unlocked`](Self::unlocked) when the region is unmapped
    /// before the pool). On error the caller unmaps the region; nothing is counted.
    pub(crate) fn prepare(&self, r: Region) -> io::Result<usize> {
        // The whole mapping, guards included (mbind before mprotect, so one call covers it): its pages are all
        // untouched here (`advise_before_touch` kept MAP_POPULATE off).
        self.numa
            .apply(r.start, r.len, r.chunk.then_some(r.index))?;
        if r.chunk && self.huge == HugePages::Transparent {
            sys::advise(r.start, r.len, Advice::HugePage)?;
        }
        if self.guard {
            if r.lead > 0 {
                sys::protect_none(r.start, r.lead)?;
            }
            let gap = r.stride - r.buf_size;
            for i in 0..r.slots {
                let at = r.lead + i * r.stride + r.buf_size;
                // SAFETY: `at + gap <= lead + slots * stride <= len`: the gap lies inside the region.
                let p = unsafe { NonNull::new_unchecked(r.start.as_ptr().add(at)) };
                sys::protect_none(p, gap)?;
            }
        }
        if self.dont_dump {
            sys::advise(r.start, r.len, Advice::DontDump)?;
        }
        match self.fork {
            ForkPolicy::Inherit => {}
            ForkPolicy::DontFork => sys::advise(r.start, r.len, Advice::DontFork)?,
            ForkPolicy::WipeOnFork => sys::advise(r.start, r.len, Advice::WipeOnFork)?,
        }
        if self.lock == LockPolicy::Off {
            return Ok(0);
        }
        // mlock fails on inaccessible pages, so with guard pages each buffer is locked on its own (and the
        // guards, never touched, take no memory).
        let (ranges, each) = if self.guard {
            (r.slots, r.buf_size)
        } else {
            (1, r.len)
        };
        let mut locked = 0;
        for i in 0..ranges {
            let at = if self.guard { r.lead + i * r.stride } else { 0 };
            // SAFETY: `at + each <= len`: the range lies inside the region.
            let p = unsafe { NonNull::new_unchecked(r.start.as_ptr().add(at)) };
            if self.lock == LockPolicy::Required {
                sys::lock(p, each)?;
                locked += each;
            } else {
                let got = self.lock_best_effort(p, each, locked);
                locked += got;
                if got < each {
                    break;
                }
            }
        }
        // Relaxed: see `locked_bytes`.
        self.locked_bytes.fetch_add(locked, Relaxed);
        Ok(locked)
    }

    /// Locks `[start, start + len)`, or the longest prefix that still fits under `RLIMIT_MEMLOCK` (with
    /// `pending` bytes of this region already locked but not yet counted), or nothing; warns once per pool when
    /// it falls short.
    fn lock_best_effort(&self, start: NonNull<u8>, len: usize, pending: usize) -> usize {
        let err = match sys::lock(start, len) {
            Ok(()) => return len,
            Err(e) => e,
        };
        let page = sys::page_size();
        let fit = sys::memlock_limit()
            .map_or(0, |limit| {
                limit.saturating_sub(self.locked_bytes() + pending)
            })
            .min(len)
            / page
            * page;
        let locked = if fit > 0 && sys::lock(start, fit).is_ok() {
            fit
        } else {
            0
        };
        // Relaxed: the flag only elects the one call that records the warning; the record itself is under its
        // lock.
        if !self.lock_warned.swap(true, Relaxed) {
            let shortfall = LockShortfall {
                asked: len,
                locked,
                limit: sys::memlock_limit(),
                error: err,
            };
            *self
                .lock_shortfall
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(shortfall);
        }
        locked
    }

    /// Emits the events that [`prepare`](Self::prepare) held back (the `BestEffort` locking shortfall). The
    /// mapping paths call it once the memory they mapped is in the freelist or wrapped in a buffer.
    pub(crate) fn emit_deferred(&self) {
        if !self.lock_warned.load(Relaxed) {
            return;
        }
        let taken = self
            .lock_shortfall
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = taken {
            tracing::warn!(
                target: "pagepool",
                asked = w.asked,
                locked = w.locked,
                limit = w.limit,
                error = %w.error,
                "lock_memory(BestEffort): could not lock all pool memory; the rest may be swapped out"
            );
        }
    }

    /// Gives back the lock accounting of a region being unmapped.
    pub(crate) fn unlocked(&self, bytes: usize) {
        if bytes > 0 {
            // Relaxed: see `locked_bytes`.
            self.locked_bytes.fetch_sub(bytes, Relaxed);
        }
    }

    /// Scrubs a pooled buffer being released (called only when `scrub != 0`).
    #[cold]
    pub(crate) fn on_release(&self, ptr: NonNull<u8>, len: usize) {
        if self.scrub & SCRUB_POISON != 0 {
            fill(ptr, len, POISON);
        } else {
            fill(ptr, len, 0);
        }
    }

    /// Checks and prepares a pooled buffer being handed out (called only when `scrub != 0`).
    #[cold]
    ///
    /// Runs before the slot is wrapped in a buffer (so the hit path stays short), which is why the violation
    /// event's subscriber runs under `catch_unwind`: its panic is handed back to the caller, which wraps the
    /// slot (releasing it again) before resuming the panic (docs/safety.md, "Foreign code").
    pub(crate) fn on_acquire(
        &self,
        ptr: NonNull<u8>,
        len: usize,
        slot: u32,
    ) -> std::thread::Result<()> {
        if self.scrub & SCRUB_POISON == 0 {
            return Ok(());
        }
        let mut event = Ok(());
        if let Some(offset) = poison_mismatch(ptr, len) {
            // Relaxed: an event counter, read only by `stats()`.
            self.poison_violations.fetch_add(1, Relaxed);
            event = std::panic::catch_unwind(|| {
                tracing::error!(
                    target: "pagepool",
                    slot,
                    offset,
                    "write after release: a released buffer was modified before it was handed out again"
                )
            });
            if std::thread::panicking() {
                // An acquire made while this thread unwinds: a second panic would abort (`sync::foreign`).
                event = Ok(());
            }
        }
        if self.scrub & SCRUB_ZERO != 0 {
            fill(ptr, len, 0);
        }
        event
    }

    pub(crate) fn trimmed(&self, bytes: usize) {
        // Relaxed: an event counter, read only by `stats()`.
        self.trimmed_bytes.fetch_add(bytes as u64, Relaxed);
    }
}

/// Overwrites `[ptr, ptr + len)` with `word` repeated, with volatile stores the compiler cannot drop even though
/// nothing in this program reads the bytes afterwards.
pub(crate) fn fill(ptr: NonNull<u8>, len: usize, word: u64) {
    debug_assert!(ptr.as_ptr() as usize % 8 == 0 && len % 8 == 0);
    let p = ptr.as_ptr().cast::<u64>();
    for i in 0..len / 8 {
        // SAFETY: the caller owns `[ptr, ptr + len)`, which is mapped and writable; `ptr` is page-aligned and
        // `len` a page multiple, so every `u64` store is aligned and in bounds.
        unsafe { p.add(i).write_volatile(word) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// The byte offset of the first word of `[ptr, ptr + len)` that is not the poison pattern, unless the whole
/// buffer is zero (fresh from the OS or trimmed); `None` if the buffer is intact.
fn poison_mismatch(ptr: NonNull<u8>, len: usize) -> Option<usize> {
    let p = ptr.as_ptr().cast::<u64>();
    // SAFETY: as in `fill`: the caller owns the aligned, mapped, initialised range.
    let word = |i: usize| unsafe { p.add(i).read_volatile() };
    let first = (0..len / 8).find(|&i| word(i) != POISON)?;
    if word(first) == 0 && (0..len / 8).all(|i| word(i) == 0) {
        return None;
    }
    Some(first * 8)
}

/// Idle trimming: the fewest buffers idle in the shared pool (freelist and depot) during each period are the
/// ones nobody needed for the whole period; at the period's end that many are given back to the OS.
#[derive(Debug)]
pub(crate) struct IdleTrim {
    period_ms: u64,
    created: Instant,
    /// Start of the current period, in milliseconds since `created`.
    period_start: AtomicU64,
    /// The fewest shared idle buffers seen in the current period.
    low: AtomicUsize,
}

impl IdleTrim {
    fn new(after: Duration) -> Self {
        IdleTrim {
            period_ms: after.as_millis().clamp(1, u64::MAX as u128) as u64,
            created: Instant::now(),
            period_start: AtomicU64::new(0),
            low: AtomicUsize::new(usize::MAX),
        }
    }

    /// Records `idle` shared buffers now. Returns how many to trim if a period just ended (only one caller per
    /// period gets `Some`).
    ///
    /// Relaxed throughout: the low-water mark is an estimate of how many buffers to trim, and the trim takes
    /// them from the freelist (its own synchronisation), so a stale value trims a few more or fewer idle
    /// buffers, never a busy one. The compare-exchange on `period_start` picks one caller per period.
    pub(crate) fn tick(&self, idle: usize) -> Option<usize> {
        let low = self.low.fetch_min(idle, Relaxed).min(idle);
        let now = self.created.elapsed().as_millis() as u64;
        let start = self.period_start.load(Relaxed);
        if now.saturating_sub(start) < self.period_ms
            || self
                .period_start
                .compare_exchange(start, now, Relaxed, Relaxed)
                .is_err()
        {
            return None;
        }
        self.low.store(idle, Relaxed);
        Some(low)
    }
}
