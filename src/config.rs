//! Pool configuration: the builder, its validation, and the derived memory layout.

use crate::error::ConfigError;
use crate::sys;

/// The largest capacity a pool accepts: slot indices are `u32`, and `u32::MAX` is kept free as a sentinel.
pub const MAX_CAPACITY: usize = u32::MAX as usize - 1;

/// A chunk aims to be at least this large, so small pools map one chunk and large ones few. Under loom every
/// chunk holds one slot, so tiny models still exercise growth races between chunks.
const CHUNK_TARGET_BYTES: usize = if cfg!(loom) { 1 } else { 4 << 20 };
/// The most chunks a pool is split into; chunks grow so that any capacity stays within this many mappings.
pub(crate) const MAX_CHUNKS: usize = 512;

/// What [`PagePool::acquire`](crate::PagePool::acquire) does when every pooled buffer is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Map a buffer's pages directly from the OS, and unmap them when the buffer is dropped (the default).
    /// Overflow memory never touches the malloc heap, so it cannot fragment it; it is bounded by
    /// [`PoolBuilder::max_overflow`].
    #[default]
    Map,
    /// Return [`AcquireError::Exhausted`](crate::AcquireError::Exhausted) and change nothing.
    Fail,
    /// Like [`Map`](Self::Map) while within [`PoolBuilder::max_bytes`] and [`PoolBuilder::max_overflow`]; at
    /// that limit, [`PagePool::acquire_timeout`](crate::PagePool::acquire_timeout) (and `acquire_async` with
    /// the `async` feature) wait for a buffer to be released, while plain
    /// [`PagePool::acquire`](crate::PagePool::acquire) still never blocks and returns
    /// [`AcquireError::Exhausted`](crate::AcquireError::Exhausted). Needs `max_bytes` or `max_overflow` (a
    /// limit to wait at), else [`ConfigError::WaitWithoutLimit`](crate::ConfigError::WaitWithoutLimit).
    Wait,
}

/// Builder for a [`PagePool`](crate::PagePool); start with [`PagePool::builder`](crate::PagePool::builder).
///
/// Defaults: `buf_size` = [`page_size()`](crate::page_size), `capacity` = 1024, `alignment` = page size,
/// [`OverflowPolicy::Map`], `max_overflow` = unlimited, `max_bytes` = unlimited, `prealloc` = false,
/// `thread_cache` = `min(64, capacity / 16)`.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct PoolBuilder {
    pub(crate) buf_size: usize,
    pub(crate) capacity: usize,
    pub(crate) alignment: Option<usize>,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) max_overflow: usize,
    pub(crate) prealloc: bool,
    pub(crate) thread_cache: Option<usize>,
    pub(crate) max_bytes: Option<usize>,
}

/// The default thread cache holds at most this many slots.
const DEFAULT_THREAD_CACHE: usize = 64;

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            buf_size: sys::page_size(),
            capacity: 1024,
            alignment: None,
            overflow: OverflowPolicy::Map,
            max_overflow: usize::MAX,
            prealloc: false,
            thread_cache: None,
            max_bytes: None,
        }
    }
}

impl PoolBuilder {
    /// Bytes per buffer: a non-zero multiple of [`page_size()`](crate::page_size). Checked by
    /// [`build`](Self::build).
    pub fn buf_size(mut self, bytes: usize) -> Self {
        self.buf_size = bytes;
        self
    }

    /// Buffers the pool keeps and reuses (at most [`MAX_CAPACITY`]). Pooled memory is mapped in chunks on
    /// demand up to this many buffers, or all at build with [`prealloc`](Self::prealloc).
    ///
    /// The bookkeeping is not lazy: the freelist (16 bytes per buffer) and the depot (4 bytes per buffer) are
    /// heap-allocated and initialised at build, about 20 bytes per buffer (20 MiB for a million buffers). An
    /// allocation the heap refuses up front is [`ConfigError::FreelistAlloc`](crate::ConfigError::FreelistAlloc).
    pub fn capacity(mut self, buffers: usize) -> Self {
        self.capacity = buffers;
        self
    }

    /// Alignment of every buffer's start: a power of two, at least the page size (the default). Larger
    /// alignments (e.g. 2 MiB) are honoured exactly; each pooled buffer then occupies `buf_size` rounded up to
    /// the alignment.
    pub fn alignment(mut self, bytes: usize) -> Self {
        self.alignment = Some(bytes);
        self
    }

    /// What to do when every pooled buffer is out; see [`OverflowPolicy`].
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// The most overflow buffers out at once under [`OverflowPolicy::Map`]; past it `acquire` returns
    /// [`AcquireError::Exhausted`](crate::AcquireError::Exhausted). `0` forbids overflow. Default: unlimited.
    pub fn max_overflow(mut self, buffers: usize) -> Self {
        self.max_overflow = buffers;
        self
    }

    /// Map and fault in all pooled memory at build time instead of chunk by chunk on demand.
    pub fn prealloc(mut self, yes: bool) -> Self {
        self.prealloc = yes;
        self
    }

    /// Idle slots each thread may keep in its own cache (at most `capacity`; 0 turns caching off).
    ///
    /// A thread's cache serves its acquires and absorbs its releases without touching shared memory; it
    /// refills and flushes half its size at a time from the shared freelist. Idle buffers resting in one
    /// thread's cache are not available to other threads until flushed (by a full cache, thread exit, or
    /// [`PagePool::trim`](crate::PagePool::trim)), so size `capacity` for the demand plus
    /// `threads x thread_cache`, or set 0 for strict accounting. Default: `min(64, capacity / 16)`.
    pub fn thread_cache(mut self, slots: usize) -> Self {
        self.thread_cache = Some(slots);
        self
    }

    /// A hard cap on the bytes the pool maps from the OS at once: pooled chunks plus overflow buffers, each
    /// counted by what it reserves (its length plus alignment slack; the same bytes as
    /// [`PoolStats::mapped_bytes`](crate::PoolStats::mapped_bytes), which therefore never exceeds it).
    ///
    /// Chunks are mapped whole (at least 4 MiB each unless the pool is smaller) and kept until the pool is
    /// dropped, so a chunk that would cross the budget is not mapped: the pool then holds fewer than
    /// `capacity` pooled buffers, and the rest of the budget serves overflow buffers (under
    /// [`OverflowPolicy::Map`] or [`OverflowPolicy::Wait`]), which give their bytes back when dropped. At the
    /// budget, `acquire` returns [`AcquireError::Exhausted`](crate::AcquireError::Exhausted), and under
    /// [`OverflowPolicy::Wait`] `acquire_timeout` waits. Checked by [`build`](Self::build):
    /// [`ConfigError::BudgetTooSmall`](crate::ConfigError::BudgetTooSmall) when no mapping that could serve
    /// a buffer fits, [`ConfigError::PreallocOverBudget`](crate::ConfigError::PreallocOverBudget) with
    /// [`prealloc`](Self::prealloc) when the whole capacity does not fit. Default: unlimited.
    ///
    /// # Examples
    /// ```
    /// use pagepool::{AcquireError, OverflowPolicy, PagePool};
    /// let page = pagepool::page_size();
    /// // One pooled buffer (a one-slot chunk) plus room for one overflow buffer.
    /// let pool = PagePool::builder()
    ///     .buf_size(page)
    ///     .capacity(1)
    ///     .max_bytes(2 * page)
    ///     .overflow(OverflowPolicy::Map)
    ///     .build()
    ///     .unwrap();
    /// let a = pool.acquire().unwrap();
    /// let b = pool.acquire().unwrap();
    /// assert!(b.is_overflow());
    /// assert!(matches!(pool.acquire(), Err(AcquireError::Exhausted { .. })));
    /// assert_eq!(pool.stats().mapped_bytes, 2 * page);
    /// ```
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Checks every setting and derives the memory layout.
    pub(crate) fn layout(&self) -> Result<Layout, ConfigError> {
        let page_size = sys::page_size();
        if self.buf_size == 0 {
            return Err(ConfigError::ZeroBufSize { page_size });
        }
        if self.buf_size % page_size != 0 {
            let rounded = self
                .buf_size
                .checked_next_multiple_of(page_size)
                .unwrap_or(usize::MAX / page_size * page_size);
            return Err(ConfigError::BufSizeNotPageMultiple {
                buf_size: self.buf_size,
                page_size,
                rounded,
            });
        }
        let align = self.alignment.unwrap_or(page_size);
        if !align.is_power_of_two() {
            let suggested = align
                .checked_next_power_of_two()
                .unwrap_or(1 << (usize::BITS - 1));
            return Err(ConfigError::AlignmentNotPowerOfTwo {
                alignment: align,
                suggested,
            });
        }
        if align < page_size {
            return Err(ConfigError::AlignmentBelowPageSize {
                alignment: align,
                page_size,
            });
        }
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if self.capacity > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge {
                capacity: self.capacity,
                max: MAX_CAPACITY,
            });
        }
        let too_large = || ConfigError::TooLarge {
            buf_size: self.buf_size,
            stride: self
                .buf_size
                .checked_next_multiple_of(align)
                .unwrap_or(usize::MAX),
            capacity: self.capacity,
        };
        let limit = isize::MAX as usize;
        let stride = self
            .buf_size
            .checked_next_multiple_of(align)
            .ok_or_else(too_large)?;
        let total = stride.checked_mul(self.capacity).ok_or_else(too_large)?;
        // An overflow buffer or a chunk reserves up to `align - granularity` bytes of slack on top.
        if total > limit || total + sys::align_slack(align) > limit {
            return Err(too_large());
        }
        let thread_cache = match self.thread_cache {
            None => DEFAULT_THREAD_CACHE.min(self.capacity / 16),
            Some(n) if n <= self.capacity => n,
            Some(n) => {
                return Err(ConfigError::ThreadCacheTooLarge {
                    thread_cache: n,
                    capacity: self.capacity,
                })
            }
        };
        let slots_per_chunk = slots_per_chunk(stride, self.capacity, sys::allocation_granularity());
        let chunk_shift = slots_per_chunk.trailing_zeros();
        let chunks = self.capacity.div_ceil(slots_per_chunk);
        let layout = Layout {
            buf_size: self.buf_size,
            align,
            stride,
            capacity: self.capacity,
            chunk_shift,
            chunks,
            thread_cache,
        };
        self.check_budget(&layout)?;
        Ok(layout)
    }

    /// Checks `max_bytes` and `OverflowPolicy::Wait` against the layout, capacity, prealloc and max_overflow.
    fn check_budget(&self, l: &Layout) -> Result<(), ConfigError> {
        let overflow_allowed = self.overflow != OverflowPolicy::Fail && self.max_overflow > 0;
        if self.overflow == OverflowPolicy::Wait
            && self.max_bytes.is_none()
            && self.max_overflow == usize::MAX
        {
            return Err(ConfigError::WaitWithoutLimit);
        }
        let Some(max_bytes) = self.max_bytes else {
            return Ok(());
        };
        // The smallest mapping that can serve a buffer: the first chunk, or one overflow buffer.
        let first_chunk = l.chunk_reserved(0);
        let min_bytes = if overflow_allowed {
            first_chunk.min(l.overflow_reserved())
        } else {
            first_chunk
        };
        if max_bytes < min_bytes {
            return Err(ConfigError::BudgetTooSmall {
                max_bytes,
                min_bytes,
                first_chunk,
                overflow_buffer: overflow_allowed.then(|| l.overflow_reserved()),
            });
        }
        if self.prealloc {
            let prealloc_bytes =
                (0..l.chunks).fold(0usize, |sum, k| sum.saturating_add(l.chunk_reserved(k)));
            if prealloc_bytes > max_bytes {
                return Err(ConfigError::PreallocOverBudget {
                    max_bytes,
                    prealloc_bytes,
                });
            }
        }
        Ok(())
    }
}

/// Chunk sizing: at least `CHUNK_TARGET_BYTES`, at most `MAX_CHUNKS` chunks, a power of two slots each so that
/// slot -> address is a shift and a mask; and, unless the pool is smaller, enough slots that a full chunk is a
/// whole number of allocation granules (on Windows a reservation occupies whole 64 KiB granules of address
/// space, so a chunk that ends mid-granule strands the rest). `stride` is a multiple of the page size and
/// `granularity` a power of two; on unix `granularity` is the page size, so that last bound is always 1.
fn slots_per_chunk(stride: usize, capacity: usize, granularity: usize) -> usize {
    let by_bytes = CHUNK_TARGET_BYTES.div_ceil(stride);
    let by_count = capacity.div_ceil(MAX_CHUNKS);
    // The fewest slots (a power of two) whose bytes are a multiple of the granularity.
    let by_granule = granularity >> stride.trailing_zeros().min(granularity.trailing_zeros());
    by_bytes
        .max(by_count)
        .max(by_granule)
        .min(capacity)
        .next_power_of_two()
}

/// The validated shape of a pool's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Bytes per buffer handed out.
    pub(crate) buf_size: usize,
    /// Alignment of every buffer start.
    pub(crate) align: usize,
    /// Bytes between consecutive slots of a chunk: `buf_size` rounded up to `align`.
    pub(crate) stride: usize,
    /// Pooled buffers in total.
    pub(crate) capacity: usize,
    /// log2 of the slots in every chunk but possibly the last.
    pub(crate) chunk_shift: u32,
    /// Number of chunks (at most `MAX_CHUNKS`).
    pub(crate) chunks: usize,
    /// Slots a thread cache holds at most.
    pub(crate) thread_cache: usize,
}

impl Layout {
    /// Slots in chunk `k` (the last chunk may be short).
    pub(crate) fn chunk_slots(&self, k: usize) -> usize {
        let per = 1usize << self.chunk_shift;
        per.min(self.capacity - k * per)
    }

    /// Bytes chunk `k` reserves from the OS (counted against `max_bytes`): its slots plus alignment slack.
    /// Cannot overflow: `layout` checked that the whole capacity plus one slack fits in `isize::MAX`.
    pub(crate) fn chunk_reserved(&self, k: usize) -> usize {
        self.chunk_slots(k) * self.stride + sys::align_slack(self.align)
    }

    /// Bytes one overflow buffer reserves from the OS (counted against `max_bytes`).
    pub(crate) fn overflow_reserved(&self) -> usize {
        self.buf_size + sys::align_slack(self.align)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn page() -> usize {
        sys::page_size()
    }

    #[test]
    fn one_million_8k_buffers_need_few_chunks() {
        let l = PoolBuilder::default()
            .buf_size(8192)
            .capacity(1_000_000)
            .layout()
            .unwrap();
        assert!(l.chunks <= MAX_CHUNKS, "{l:?}");
        let total: usize = (0..l.chunks).map(|k| l.chunk_slots(k)).sum();
        assert_eq!(total, 1_000_000);
    }

    #[test]
    fn small_pool_is_one_chunk() {
        let l = PoolBuilder::default()
            .buf_size(8192)
            .capacity(100)
            .layout()
            .unwrap();
        assert_eq!(l.chunks, 1);
        assert_eq!(l.chunk_slots(0), 100);
    }

    #[test]
    fn stride_rounds_to_alignment() {
        let l = PoolBuilder::default()
            .buf_size(page())
            .alignment(2 << 20)
            .capacity(4)
            .layout()
            .unwrap();
        assert_eq!(l.stride, 2 << 20);
        assert_eq!(l.align, 2 << 20);
    }

    #[test]
    fn full_chunks_are_whole_allocation_granules() {
        const G: usize = 64 << 10;
        for pages in [1, 2, 3, 5, 16, 17, 63, 64, 257, 1000, 4097] {
            let stride = pages * 4096;
            for capacity in [1, 7, 100, 10_000, 1_000_000, MAX_CAPACITY] {
                let per = slots_per_chunk(stride, capacity, G);
                assert!(per.is_power_of_two());
                assert!(
                    capacity.div_ceil(per) <= MAX_CHUNKS,
                    "{pages} pages x {capacity}"
                );
                let need = G / (stride & stride.wrapping_neg()).min(G);
                if capacity >= need {
                    assert_eq!(
                        per * stride % G,
                        0,
                        "{pages} pages x {capacity}: {per} slots"
                    );
                } else {
                    // A pool smaller than one granule's worth of slots is a single short chunk.
                    assert_eq!(capacity.div_ceil(per), 1);
                }
                // With page-sized granules (unix) the granule bound never changes the layout.
                let unix = slots_per_chunk(stride, capacity, 4096);
                let before = CHUNK_TARGET_BYTES
                    .div_ceil(stride)
                    .max(capacity.div_ceil(MAX_CHUNKS))
                    .min(capacity)
                    .next_power_of_two();
                assert_eq!(unix, before, "{pages} pages x {capacity}");
            }
        }
    }

    #[test]
    fn rounding_hint_in_error() {
        match PoolBuilder::default().buf_size(page() + 1).layout() {
            Err(ConfigError::BufSizeNotPageMultiple { rounded, .. }) => {
                assert_eq!(rounded, 2 * page())
            }
            other => panic!("{other:?}"),
        }
    }
}
