//! The overflow path: when every pooled buffer is out, map a buffer's pages directly and unmap them on drop.
//!
//! Overflow memory is page-granular OS memory, so it cannot fragment the malloc heap or the pool. The number of
//! overflow buffers out at once is bounded by `max_overflow` through a permit count taken *before* the system
//! call and given back *after* the unmap, so `mapped_bytes` never exceeds the configured bound. No lock is held
//! across either system call. The budget (`max_bytes`) is reserved with the permit and given back with it;
//! while someone waits, a released permit and its bytes go straight to a waiter instead (`wake.rs`).
//!
//! With an [`overflow_decay`](crate::PoolBuilder::overflow_decay) (the default), a released buffer of the pool's
//! size is not unmapped at once: it waits in the [`Reserve`] with its permit and budget, for the next overflow
//! acquire (or a waiter), and is unmapped once idle for longer than the decay.

use crate::config::Layout;
use crate::error::AcquireError;
use crate::policy::{fill, MemPolicy, Region, SCRUB_ZERO};
use crate::reserve::{Reserve, RESERVE_MAX};
use crate::stats::Counters;
use crate::sync::{AtomicU64, AtomicUsize};
use crate::sys::{self, Mapping};
use crate::OverflowPolicy;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::{Duration, Instant};

/// "Overflow started" warnings are emitted at most once per this many milliseconds.
const WARN_INTERVAL_MS: u64 = 1000;

/// An overflow buffer's own mapping, as an [`AlignedBuf`](crate::AlignedBuf) holds it.
#[derive(Debug)]
pub(crate) struct OverflowBuf {
    pub(crate) mapping: Mapping,
    /// Start of the buffer inside the mapping (after a leading guard, if any).
    pub(crate) ptr: NonNull<u8>,
    /// Bytes of the mapping locked by the memory policy (given back on unmap).
    locked: usize,
    /// Bytes of the buffer.
    pub(crate) buf_size: usize,
    /// Bytes of budget (`max_bytes`) the buffer holds: its mapping plus alignment slack.
    budget: usize,
}

#[derive(Debug)]
pub(crate) struct Overflow {
    pub(crate) policy: OverflowPolicy,
    pub(crate) max: usize,
    /// Bytes per buffer handed out (the pool's `buf_size`; larger for `acquire_len` past the largest class).
    buf_size: usize,
    /// Bytes before the buffer (the leading guard), or 0.
    lead: usize,
    /// Bytes of the trailing guard (a page), or 0.
    guard: usize,
    align: usize,
    /// `reserve_bytes_for(buf_size)`, computed once.
    reserve_default: usize,
    /// Permits taken: overflow buffers out now, plus the mappings in `reserve`.
    out: AtomicUsize,
    /// Released buffers of the pool's size kept mapped for reuse.
    pub(crate) reserve: Reserve,
    /// Bytes reserved by overflow buffers out now.
    mapped_bytes: AtomicUsize,
    created: Instant,
    /// Milliseconds since `created` of the last "overflow started" warning, plus one (0 = never warned).
    last_warn: AtomicU64,
}

impl Overflow {
    pub(crate) fn new(policy: OverflowPolicy, max: usize, decay: Duration, l: &Layout) -> Self {
        let max = if policy == OverflowPolicy::Fail {
            0
        } else {
            max
        };
        let mut o = Overflow {
            buf_size: l.buf_size,
            lead: l.lead,
            guard: if l.lead > 0 { sys::page_size() } else { 0 },
            align: l.align,
            reserve_default: 0,
            policy,
            max,
            out: AtomicUsize::new(0),
            reserve: Reserve::new(max.min(RESERVE_MAX), decay),
            mapped_bytes: AtomicUsize::new(0),
            created: Instant::now(),
            last_warn: AtomicU64::new(0),
        };
        // `layout()` checked that a buffer of the pool's size fits the address space with its slack.
        o.reserve_default = o.reserve_bytes_for(l.buf_size).unwrap_or(usize::MAX);
        o
    }

    /// Overflow buffers out now: permits taken, less the reserved mappings that hold theirs. Relaxed: a gauge
    /// for `stats()` and error messages; permits are taken and given back by read-modify-writes on `out`.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use_given(self.reserve.len())
    }

    /// [`in_use`](Self::in_use) with the reserve's length already read (`reserved`), so that a snapshot's
    /// buffers out plus reserved never exceed the permits: `out` is read after `reserved`, and every mapping
    /// counted in `reserved` held a permit then, which it keeps until it leaves the reserve.
    pub(crate) fn in_use_given(&self, reserved: usize) -> usize {
        self.out.load(Relaxed).saturating_sub(reserved)
    }

    /// Relaxed: a gauge for `stats()` (the budget, not this, bounds the bytes mapped).
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.mapped_bytes.load(Relaxed)
    }

    /// Bytes mapped for an overflow buffer of `buf_size` bytes: the buffer, or with guard pages the leading
    /// guard, the buffer and its trailing guard (rounded to the alignment, as in a chunk). `None` if that
    /// overflows.
    fn len_for(&self, buf_size: usize) -> Option<usize> {
        if self.lead == 0 {
            return Some(buf_size);
        }
        buf_size
            .checked_add(self.guard)?
            .checked_next_multiple_of(self.align)?
            .checked_add(self.lead)
    }

    /// Bytes an overflow buffer of `buf_size` bytes reserves from the OS (its mapping plus alignment slack):
    /// what it counts against the budget.
    pub(crate) fn reserve_bytes_for(&self, buf_size: usize) -> Option<usize> {
        self.len_for(buf_size)?
            .checked_add(sys::align_slack(self.align))
    }

    /// [`reserve_bytes_for`](Self::reserve_bytes_for) the pool's own buffer size.
    pub(crate) fn reserve_bytes(&self) -> usize {
        self.reserve_default
    }

    /// Takes one permit if fewer than `max` are out, returning how many were out before. The caller maps with
    /// it ([`Self::map_with_permit`]) or gives it back.
    pub(crate) fn take_permit(&self) -> Option<usize> {
        // Relaxed first look and failure ordering: the compare-exchange decides, on the latest value, and a
        // permit guards no memory (the buffer's mapping is published through the `AlignedBuf` that owns it).
        let mut out = self.out.load(Relaxed);
        loop {
            if out >= self.max {
                return None;
            }
            match self
                .out
                .compare_exchange_weak(out, out + 1, AcqRel, Relaxed)
            {
                Ok(_) => return Some(out),
                Err(now) => out = now,
            }
        }
    }

    /// Gives back a permit taken with [`Self::take_permit`] (callers then run the waiters' wake check).
    pub(crate) fn return_permit(&self) {
        self.return_permits(1);
    }

    /// Gives back `n` permits at once (the reserved mappings of one decay or trim).
    pub(crate) fn return_permits(&self, n: usize) {
        self.out.fetch_sub(n, AcqRel);
    }

    /// The `Exhausted` error for the current state (the caller counts it).
    pub(crate) fn exhausted(&self, capacity: usize) -> AcquireError {
        AcquireError::Exhausted {
            capacity,
            overflow_in_use: self.in_use(),
            max_overflow: self.max,
            policy: self.policy,
        }
    }

    /// Maps one overflow buffer of `buf_size` bytes (a non-zero page multiple) for a permit, and the budget of
    /// [`reserve_bytes_for(buf_size)`](Self::reserve_bytes_for), that the caller holds, and applies the memory
    /// policy to it. On an error the caller still holds both and must give them back. Emits no event: the
    /// caller emits [`Self::mapped_event`] or [`Self::map_failed_event`] once its books balance.
    pub(crate) fn map_with_permit(
        &self,
        counters: &Counters,
        mem: &MemPolicy,
        buf_size: usize,
    ) -> Result<OverflowBuf, AcquireError> {
        let (Some(len), Some(budget)) = (self.len_for(buf_size), self.reserve_bytes_for(buf_size))
        else {
            // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
            counters.os_errors.fetch_add(1, Relaxed);
            return Err(AcquireError::Os {
                bytes: buf_size,
                source: std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    "buffer size overflows the address space",
                ),
            });
        };
        let stride = len - self.lead;
        let mapped = sys::map(len, self.align, false).and_then(|m| {
            let region = Region {
                start: m.ptr(),
                len,
                lead: self.lead,
                slots: usize::from(self.lead > 0),
                stride,
                buf_size,
                chunk: false,
                index: 0,
            };
            // On error `m` is dropped here: unmapped, nothing counted.
            let locked = mem.prepare(region)?;
            // SAFETY: lead + buf_size <= len: the buffer lies inside the mapping.
            let ptr = unsafe { NonNull::new_unchecked(m.ptr().as_ptr().add(self.lead)) };
            Ok(OverflowBuf {
                mapping: m,
                ptr,
                locked,
                buf_size,
                budget,
            })
        });
        match mapped {
            Ok(b) => {
                let reserved = b.mapping.reserved();
                // Relaxed: a gauge for `stats()`.
                self.mapped_bytes.fetch_add(reserved, Relaxed);
                // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
                counters.overflow_maps.fetch_add(1, Relaxed);
                Ok(b)
            }
            Err(source) => {
                // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
                counters.os_errors.fetch_add(1, Relaxed);
                Err(AcquireError::Os { bytes: len, source })
            }
        }
    }

    // The events of the overflow path are separate calls, made by the caller once the buffer is wrapped or its
    // permit and budget are given back: a subscriber runs foreign code, which may panic (docs/safety.md).

    /// The event of a mapped overflow buffer of `bytes` reserved bytes.
    pub(crate) fn mapped_event(bytes: usize) {
        tracing::debug!(target: "pagepool", bytes, "mapped overflow buffer");
    }

    /// The event of a refused overflow mapping (`e` from [`Self::map_with_permit`]).
    pub(crate) fn map_failed_event(e: &AcquireError) {
        if let AcquireError::Os { bytes, source } = e {
            tracing::error!(target: "pagepool", bytes, error = %source, "overflow mapping failed");
        }
    }

    /// The event of an unmapped overflow buffer of `bytes` reserved bytes.
    pub(crate) fn unmapped_event(bytes: usize) {
        // Reached from a buffer's drop (possibly in a thread-local destructor).
        crate::sync::foreign_quiet(
            || tracing::debug!(target: "pagepool", bytes, "unmapped overflow buffer"),
        );
    }

    /// Unmaps an overflow buffer (zeroing it first if the policy says so, unless `scrubbed`: a reserved buffer
    /// was scrubbed when it came in). Its permit and budget stay with the caller, who hands them to a waiter or
    /// gives them back (then emits [`Self::unmapped_event`]); returns the budget bytes it held and the bytes it
    /// had reserved from the OS.
    pub(crate) fn unmap_keep_permit(
        &self,
        b: OverflowBuf,
        counters: &Counters,
        mem: &MemPolicy,
        scrubbed: bool,
    ) -> (usize, usize) {
        if !scrubbed && mem.scrub & SCRUB_ZERO != 0 {
            fill(b.ptr, b.buf_size, 0);
        }
        // A reserved buffer is ASan-poisoned while idle; the shadow must be clean before the range can be
        // mapped again by anyone.
        sys::unpoison(b.ptr.as_ptr(), b.buf_size);
        mem.unlocked(b.locked);
        let reserved = b.mapping.reserved();
        let budget = b.budget;
        drop(b);
        // Relaxed: a gauge for `stats()`.
        self.mapped_bytes.fetch_sub(reserved, Relaxed);
        // Relaxed: an event counter, read only by `stats()` (see `stats.rs`).
        counters.overflow_unmaps.fetch_add(1, Relaxed);
        (budget, reserved)
    }

    /// Warns that overflow began after a quiet spell, at most once per `WARN_INTERVAL_MS`. Called once the
    /// overflow buffer is wrapped (a subscriber may panic).
    pub(crate) fn warn_started(&self, capacity: usize) {
        let now = self.created.elapsed().as_millis() as u64 + 1;
        // Relaxed: a rate limit on a log line; the compare-exchange lets one caller per interval warn, and
        // nothing else is read on the strength of it.
        let last = self.last_warn.load(Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_INTERVAL_MS)
            && self
                .last_warn
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                target: "pagepool",
                capacity,
                buf_size = self.buf_size,
                "pool exhausted: overflow buffers are being mapped directly; the pool may be undersized"
            );
        }
    }
}
