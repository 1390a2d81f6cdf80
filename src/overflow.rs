//! The overflow path: when every pooled buffer is out, map a buffer's pages directly and unmap them on drop.
//!
//! Overflow memory is page-granular OS memory, so it cannot fragment the malloc heap or the pool. The number of
//! overflow buffers out at once is bounded by `max_overflow` through a permit count taken *before* the system
//! call and given back *after* the unmap, so `mapped_bytes` never exceeds the configured bound. No lock is held
//! across either system call.

use crate::config::Layout;
use crate::error::AcquireError;
use crate::policy::{fill, MemPolicy, Region, SCRUB_ZERO};
use crate::stats::Counters;
use crate::sync::{AtomicU64, AtomicUsize};
use crate::sys::{self, Mapping};
use crate::OverflowPolicy;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::time::Instant;

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
    /// Overflow buffers out now (permits taken).
    out: AtomicUsize,
    /// Bytes reserved by overflow buffers out now.
    mapped_bytes: AtomicUsize,
    created: Instant,
    /// Milliseconds since `created` of the last "overflow started" warning, plus one (0 = never warned).
    last_warn: AtomicU64,
}

impl Overflow {
    pub(crate) fn new(policy: OverflowPolicy, max: usize, l: &Layout) -> Self {
        Overflow {
            buf_size: l.buf_size,
            lead: l.lead,
            guard: if l.lead > 0 { sys::page_size() } else { 0 },
            align: l.align,
            policy,
            max: if policy == OverflowPolicy::Fail {
                0
            } else {
                max
            },
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

    /// Maps one overflow buffer of the pool's size and applies the memory policy to it, or explains why not.
    pub(crate) fn map(
        &self,
        counters: &Counters,
        capacity: usize,
        mem: &MemPolicy,
    ) -> Result<OverflowBuf, AcquireError> {
        self.map_sized(counters, capacity, mem, self.buf_size)
    }

    /// [`map`](Self::map) for a buffer of `buf_size` bytes (a non-zero page multiple).
    pub(crate) fn map_sized(
        &self,
        counters: &Counters,
        capacity: usize,
        mem: &MemPolicy,
        buf_size: usize,
    ) -> Result<OverflowBuf, AcquireError> {
        // With guard pages: leading guard, buffer, trailing guard (rounded to the alignment), as in a chunk.
        let stride = buf_size
            .checked_add(self.guard)
            .and_then(|b| b.checked_next_multiple_of(self.align));
        let len = match stride.and_then(|st| st.checked_add(self.lead)) {
            Some(len) if self.lead > 0 => len,
            Some(_) => buf_size,
            None => {
                counters.os_errors.fetch_add(1, Relaxed);
                return Err(AcquireError::Os {
                    bytes: buf_size,
                    source: std::io::Error::new(
                        std::io::ErrorKind::OutOfMemory,
                        "buffer size overflows the address space",
                    ),
                });
            }
        };
        let stride = stride.unwrap_or(buf_size);
        let mut out = self.out.load(Relaxed);
        loop {
            if out >= self.max {
                counters.exhausted.fetch_add(1, Relaxed);
                return Err(AcquireError::Exhausted {
                    capacity,
                    overflow_in_use: out,
                    max_overflow: self.max,
                    policy: self.policy,
                });
            }
            match self
                .out
                .compare_exchange_weak(out, out + 1, AcqRel, Relaxed)
            {
                Ok(_) => break,
                Err(now) => out = now,
            }
        }
        if out == 0 {
            self.warn_started(capacity);
        }
        let mapped = sys::map(len, self.align, false).and_then(|m| {
            let region = Region {
                start: m.ptr(),
                len,
                lead: self.lead,
                slots: usize::from(self.lead > 0),
                stride,
                buf_size,
                chunk: false,
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
            })
        });
        match mapped {
            Ok(b) => {
                let reserved = b.mapping.reserved();
                self.mapped_bytes.fetch_add(reserved, Relaxed);
                counters.overflow_maps.fetch_add(1, Relaxed);
                tracing::debug!(target: "pagepool", bytes = reserved, "mapped overflow buffer");
                Ok(b)
            }
            Err(source) => {
                self.out.fetch_sub(1, AcqRel);
                counters.os_errors.fetch_add(1, Relaxed);
                tracing::error!(target: "pagepool", bytes = len, error = %source, "overflow mapping failed");
                Err(AcquireError::Os { bytes: len, source })
            }
        }
    }

    /// Unmaps an overflow buffer (zeroing it first if the policy says so) and gives its permit back.
    pub(crate) fn unmap(&self, b: OverflowBuf, counters: &Counters, mem: &MemPolicy) {
        if mem.scrub & SCRUB_ZERO != 0 {
            fill(b.ptr, b.buf_size, 0);
        }
        mem.unlocked(b.locked);
        let reserved = b.mapping.reserved();
        drop(b);
        self.mapped_bytes.fetch_sub(reserved, Relaxed);
        counters.overflow_unmaps.fetch_add(1, Relaxed);
        self.out.fetch_sub(1, AcqRel);
        tracing::debug!(target: "pagepool", bytes = reserved, "unmapped overflow buffer");
    }

    /// Warns that overflow began after a quiet spell, at most once per `WARN_INTERVAL_MS`.
    fn warn_started(&self, capacity: usize) {
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
                buf_size = self.buf_size,
                "pool exhausted: overflow buffers are being mapped directly; the pool may be undersized"
            );
        }
    }
}
