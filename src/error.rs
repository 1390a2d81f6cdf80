//! Typed errors. Every message says what to change.

use std::io;

/// A [`PoolBuilder`](crate::PoolBuilder) setting was rejected, or the OS refused the memory asked for at build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `buf_size(0)`.
    #[error("buf_size is 0: give a non-zero multiple of the page size ({page_size} bytes)")]
    ZeroBufSize {
        /// The OS page size.
        page_size: usize,
    },
    /// `buf_size` is not a multiple of the page size.
    #[error(
        "buf_size {buf_size} is not a multiple of the page size ({page_size} bytes): \
         round it up to {rounded}"
    )]
    BufSizeNotPageMultiple {
        /// The rejected size.
        buf_size: usize,
        /// The OS page size.
        page_size: usize,
        /// The nearest valid size at or above `buf_size` (saturated at the largest page multiple).
        rounded: usize,
    },
    /// `alignment` is not a power of two.
    #[error("alignment {alignment} is not a power of two: use e.g. {suggested}")]
    AlignmentNotPowerOfTwo {
        /// The rejected alignment.
        alignment: usize,
        /// The next power of two at or above it (or the largest power of two).
        suggested: usize,
    },
    /// `alignment` is below the page size.
    #[error("alignment {alignment} is below the page size ({page_size} bytes): buffers are always page-aligned, use at least {page_size}")]
    AlignmentBelowPageSize {
        /// The rejected alignment.
        alignment: usize,
        /// The OS page size.
        page_size: usize,
    },
    /// `capacity(0)`.
    #[error("capacity is 0: a pool keeps at least one buffer (use OverflowPolicy::Map with a small capacity for a mostly-unpooled setup)")]
    ZeroCapacity,
    /// `capacity` exceeds [`MAX_CAPACITY`](crate::MAX_CAPACITY) (slot indices are `u32`).
    #[error("capacity {capacity} exceeds the maximum of {max} buffers per pool")]
    CapacityTooLarge {
        /// The rejected capacity.
        capacity: usize,
        /// [`MAX_CAPACITY`](crate::MAX_CAPACITY).
        max: usize,
    },
    /// `buf_size` (rounded up to `alignment`) times `capacity` does not fit in `isize::MAX` bytes.
    #[error(
        "buf_size {buf_size} (stride {stride} after rounding to the alignment) x capacity {capacity} \
         does not fit in the address space (isize::MAX bytes): lower the capacity or the buffer size"
    )]
    TooLarge {
        /// Requested buffer size.
        buf_size: usize,
        /// Bytes per slot: `buf_size` rounded up to the alignment.
        stride: usize,
        /// Requested capacity.
        capacity: usize,
    },
    /// `thread_cache` exceeds `capacity`.
    #[error("thread_cache {thread_cache} exceeds capacity {capacity}: a thread cannot cache more buffers than the pool has; use at most {capacity} (or 0 to turn caching off)")]
    ThreadCacheTooLarge {
        /// The rejected cache size.
        thread_cache: usize,
        /// The pool's capacity.
        capacity: usize,
    },
    /// `max_bytes` is below the smallest mapping that could serve a buffer, so the pool could never hand one out.
    #[error(
        "max_bytes {max_bytes} is below the smallest mapping that can serve a buffer ({min_bytes} bytes): {}",
        budget_hint(*first_chunk, *overflow_buffer, *min_bytes)
    )]
    BudgetTooSmall {
        /// The rejected budget.
        max_bytes: usize,
        /// The smallest budget that works: the first chunk, or one overflow buffer when overflow is allowed.
        min_bytes: usize,
        /// Bytes the first pool chunk reserves (chunks are mapped whole).
        first_chunk: usize,
        /// Bytes one overflow buffer reserves, or `None` when the policy or `max_overflow(0)` forbids overflow.
        overflow_buffer: Option<usize>,
    },
    /// `prealloc(true)` maps every chunk at build, and together they exceed `max_bytes`.
    #[error(
        "prealloc maps all pooled memory ({prealloc_bytes} bytes) at build but max_bytes is {max_bytes}: raise \
         max_bytes to at least {prealloc_bytes}, lower capacity, or turn prealloc off"
    )]
    PreallocOverBudget {
        /// The rejected budget.
        max_bytes: usize,
        /// Bytes the whole capacity reserves (every chunk, with alignment slack).
        prealloc_bytes: usize,
    },
    /// `OverflowPolicy::Wait` without `max_bytes` or `max_overflow`: there is no limit to wait at.
    #[error(
        "OverflowPolicy::Wait waits at a limit, but neither max_bytes nor max_overflow is set: set one of them \
         (or use OverflowPolicy::Map, which never waits)"
    )]
    WaitWithoutLimit,
    /// The heap could not hold the freelist's bookkeeping for this capacity.
    #[error("the freelist for capacity {capacity} needs about {bytes} bytes of heap, which could not be allocated: lower the capacity")]
    FreelistAlloc {
        /// Requested capacity.
        capacity: usize,
        /// Approximate heap bytes the freelist needs.
        bytes: usize,
    },
    /// The OS refused to map the pool's memory at build time (with `prealloc(true)`).
    #[error("the OS refused to map {bytes} bytes for the pool: {source}")]
    Os {
        /// Bytes asked for in the failing call.
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// [`PagePool::acquire`](crate::PagePool::acquire) (or `acquire_timeout`, `acquire_async`) could not hand out a
/// buffer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// Every pooled buffer is out and the overflow policy or its cap forbids mapping another.
    #[error(
        "pool exhausted: all {capacity} pooled buffers and {overflow_in_use} overflow buffers are in use \
         (overflow policy {policy:?}, max_overflow {max_overflow}) or max_bytes is reached; raise capacity, \
         max_overflow or max_bytes"
    )]
    Exhausted {
        /// The pool's capacity.
        capacity: usize,
        /// Overflow buffers out at the time of the failure.
        overflow_in_use: usize,
        /// The configured overflow cap.
        max_overflow: usize,
        /// The configured overflow policy.
        policy: crate::OverflowPolicy,
    },
    /// [`PagePool::acquire_timeout`](crate::PagePool::acquire_timeout) waited `waited` under
    /// [`OverflowPolicy::Wait`](crate::OverflowPolicy::Wait) and no buffer was released to it. Nothing changed
    /// but the `timeouts` counter.
    #[error("timed out after {waited:?} waiting for a buffer at the pool's limit: raise max_bytes, max_overflow or capacity, or wait longer")]
    Timeout {
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// The OS refused to map memory (growing a chunk of the pool, or mapping an overflow buffer).
    #[error("the OS refused to map {bytes} bytes: {source}")]
    Os {
        /// Bytes asked for in the failing call.
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The "what to change" part of [`ConfigError::BudgetTooSmall`].
fn budget_hint(first_chunk: usize, overflow_buffer: Option<usize>, min_bytes: usize) -> String {
    match overflow_buffer {
        Some(o) => format!(
            "the first pool chunk reserves {first_chunk} bytes and one overflow buffer {o}; raise max_bytes to \
             at least {min_bytes}"
        ),
        None => format!(
            "the first pool chunk reserves {first_chunk} bytes and overflow is off; raise max_bytes to at least \
             {min_bytes}, lower capacity (smaller chunks), or allow overflow (OverflowPolicy::Map or Wait with \
             max_overflow > 0) so a buffer can be mapped on its own"
        ),
    }
}
