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
    /// The heap could not hold the freelist's bookkeeping for this capacity.
    #[error("the freelist for capacity {capacity} needs about {bytes} bytes of heap, which could not be allocated: lower the capacity")]
    FreelistAlloc {
        /// Requested capacity.
        capacity: usize,
        /// Approximate heap bytes the freelist needs.
        bytes: usize,
    },
    /// [`PoolBuilder::for_direct_io`](crate::PoolBuilder::for_direct_io) could not learn the file's direct I/O
    /// alignment, or the file cannot do direct I/O (`io::ErrorKind::Unsupported`, e.g. a file on tmpfs).
    #[error("cannot use this file for direct I/O: {source}; put it on a file system with O_DIRECT support (ext4, xfs, ...) or build the pool without for_direct_io")]
    DirectIo {
        /// The error of [`dio::requirements`](crate::dio::requirements).
        #[source]
        source: io::Error,
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

/// [`PagePool::acquire`](crate::PagePool::acquire) could not hand out a buffer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// Every pooled buffer is out and the overflow policy or its cap forbids mapping another.
    #[error(
        "pool exhausted: all {capacity} pooled buffers and {overflow_in_use} overflow buffers are in use \
         (overflow policy {policy:?}, max_overflow {max_overflow}); raise capacity or max_overflow"
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
