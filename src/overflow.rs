//! The overflow path: when every pooled buffer is out, map a buffer's pages directly and unmap them on drop.
//!
//! Overflow memory is page-granular OS memory, so it cannot fragment the malloc heap or the pool. The number of
//! overflow buffers out at once is bounded by `max_overflow` through a permit count taken *before* the system
//! call and given back *after* the unmap, so `mapped_bytes` never exceeds the configured bound. No lock is held
//! across either system call. The budget (`max_bytes`) is reserved with the permit and given back with it;
//! while someone waits, a released permit and its bytes go straight to a waiter instead (`pool.rs`).

use crate::error::AcquireError;
use crate::stats::Counters;
use crate::sync::{AtomicU64, AtomicUsize};
use crate::sys::{self, Mapping};
use crate::OverflowPolicy;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::Instant;

/// "Overflow started" warnings are emitted at most once per this many milliseconds.
const WARN_INTERVAL_MS: u64 = 1000;

#[derive(Debug)]
pub(crate) struct Overflow {
    pub(crate) policy: OverflowPolicy,
    pub(crate) max: usize,
    len: usize,
    align: usize,
    /// Overflow buffers out now (permits taken).
    out: AtomicUsize,
    /// Bytes reserved by overflow buffers out now.
    mapped_bytes: AtomicUsize,
    created: Instant,
    /// Milliseconds since `created` of the last "overflow started" warning, plus one (0 = never warned).
    last_warn: AtomicU64,
}

impl Overflow {
    pub(crate) fn new(policy: OverflowPolicy, max: usize, len: usize, align: usize) -> Self {
        Overflow {
            policy,
            max: if policy == OverflowPolicy::Fail {
                0
            } else {
                max
            },
            len,
            align,
            out: AtomicUsize::new(0),
            mapped_bytes: AtomicUsize::new(0),
            created: Instant::now(),
            last_warn: AtomicU64::new(0),
        }
    }

    pub(crate) fn in_use(&self) -> usize {
        self.out.load(Relaxed)
    }

    pub(crate) fn mapped_bytes(&self) -> usize {
        self.mapped_bytes.load(Relaxed)
    }

    /// Bytes one overflow buffer reserves (its length plus alignment slack): what it counts against the budget.
    pub(crate) fn reserve_bytes(&self) -> usize {
        self.len + sys::align_slack(self.align)
    }

    /// Takes one permit if fewer than `max` are out, returning how many were out before. The caller maps with
    /// it ([`Self::map_with_permit`]) or gives it back.
    pub(crate) fn take_permit(&self) -> Option<usize> {
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
        self.out.fetch_sub(1, AcqRel);
    }

    /// The `Exhausted` error for the current state (the caller counts it).
    pub(crate) fn exhausted(&self, capacity: usize) -> AcquireError {
        AcquireError::Exhausted {
            capacity,
            overflow_in_use: self.out.load(Relaxed),
            max_overflow: self.max,
            policy: self.policy,
        }
    }

    /// Maps one overflow buffer for a permit (and its budget) the caller holds. On an OS refusal the caller
    /// still holds both and must give them back.
    pub(crate) fn map_with_permit(&self, counters: &Counters) -> Result<Mapping, AcquireError> {
        match sys::map(self.len, self.align, false) {
            Ok(m) => {
                self.mapped_bytes.fetch_add(m.reserved(), Relaxed);
                counters.overflow_maps.fetch_add(1, Relaxed);
                tracing::debug!(target: "pagepool", bytes = m.reserved(), "mapped overflow buffer");
                Ok(m)
            }
            Err(source) => {
                counters.os_errors.fetch_add(1, Relaxed);
                tracing::error!(target: "pagepool", bytes = self.len, error = %source, "overflow mmap failed");
                Err(AcquireError::Os {
                    bytes: self.len,
                    source,
                })
            }
        }
    }

    /// Unmaps an overflow buffer. Its permit and budget stay with the caller, who hands them to a waiter or
    /// gives them back.
    pub(crate) fn unmap_keep_permit(&self, m: Mapping, counters: &Counters) {
        let reserved = m.reserved();
        drop(m);
        self.mapped_bytes.fetch_sub(reserved, Relaxed);
        counters.overflow_unmaps.fetch_add(1, Relaxed);
        tracing::debug!(target: "pagepool", bytes = reserved, "unmapped overflow buffer");
    }

    /// Warns that overflow began after a quiet spell, at most once per `WARN_INTERVAL_MS`.
    pub(crate) fn warn_started(&self, capacity: usize) {
        let now = self.created.elapsed().as_millis() as u64 + 1;
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
                buf_size = self.len,
                "pool exhausted: overflow buffers are being mapped directly; the pool may be undersized"
            );
        }
    }
}
