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
    /// `max_thread_cache` is above `capacity`, or below `thread_cache`, or set above 0 with caching off.
    #[error("max_thread_cache {max_thread_cache} is outside {thread_cache}..={capacity}: an adaptive thread cache grows from thread_cache (which must not be 0) up to at most the pool's capacity")]
    MaxThreadCache {
        /// The rejected ceiling.
        max_thread_cache: usize,
        /// The starting size (the one set, or the default).
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
    /// The heap could not hold the freelist's bookkeeping for this capacity. No longer returned: `build` allocates
    /// no bookkeeping per buffer (the freelist's links come with each chunk as it is mapped; a failure there is
    /// an [`AcquireError::Os`](crate::AcquireError::Os) of that acquire). Kept so that matches on it still build.
    #[error("the freelist for capacity {capacity} needs about {bytes} bytes of heap, which could not be allocated: lower the capacity")]
    FreelistAlloc {
        /// Requested capacity.
        capacity: usize,
        /// Approximate heap bytes the freelist needs.
        bytes: usize,
    },
    /// [`LockPolicy::Required`](crate::LockPolicy::Required), but the pool's memory does not fit under the
    /// process's `RLIMIT_MEMLOCK` and the process lacks `CAP_IPC_LOCK`.
    #[error(
        "lock_memory(Required) asks to lock {requested} bytes but RLIMIT_MEMLOCK allows {limit}: raise the limit \
         (ulimit -l, LimitMEMLOCK=), lower capacity or buf_size, or use LockPolicy::BestEffort"
    )]
    MemoryLockLimit {
        /// The soft `RLIMIT_MEMLOCK`, in bytes.
        limit: usize,
        /// Bytes the pool's chunks would lock.
        requested: usize,
    },
    /// A memory option this platform cannot honour (e.g. `dont_dump` or `on_fork` outside Linux).
    #[error("{setting} is not supported on {platform}: leave it at its default there")]
    Unsupported {
        /// The setting, as written on the builder.
        setting: &'static str,
        /// `std::env::consts::OS`.
        platform: &'static str,
    },
    /// Two settings that cannot be combined.
    #[error("{first} cannot be combined with {second}: {why}")]
    Incompatible {
        /// One setting.
        first: &'static str,
        /// The other.
        second: &'static str,
        /// Why not.
        why: &'static str,
    },
    /// With guard pages, the pool would need more kernel mappings than half of `vm.max_map_count`.
    #[error(
        "guard_pages(true) with capacity {capacity} needs about {needed} mappings, more than half of \
         vm.max_map_count ({max_map_count}): lower the capacity or raise vm.max_map_count"
    )]
    GuardPagesMapCount {
        /// The pool's capacity.
        capacity: usize,
        /// Mappings (VMAs) the pool would use: two per buffer plus one per chunk.
        needed: usize,
        /// The system's `vm.max_map_count`.
        max_map_count: usize,
    },
    /// [`HugePages::Explicit`](crate::HugePages::Explicit) but the kernel would not map a huge page.
    #[error(
        "huge_pages(Explicit): the kernel refused a huge page ({source}); reserve some \
         (echo N > /proc/sys/vm/nr_hugepages) or use HugePages::Transparent"
    )]
    HugePagesUnavailable {
        /// The OS error from `mmap(MAP_HUGETLB)` (`ENOMEM` when none are reserved).
        #[source]
        source: io::Error,
    },
    /// [`HugePages::Explicit`](crate::HugePages::Explicit) with an `alignment` above the huge page size: the
    /// kernel aligns explicit huge-page mappings to the huge page size and no further.
    #[error(
        "alignment {alignment} is above the huge page size ({huge_page_size} bytes), the most that \
         huge_pages(Explicit) can align buffers to: use an alignment of at most {huge_page_size}, or \
         HugePages::Transparent, which honours any alignment"
    )]
    HugePageAlignment {
        /// The rejected alignment.
        alignment: usize,
        /// The huge page size explicit huge-page chunks are aligned to (2 MiB).
        huge_page_size: usize,
    },
    /// `size_classes` is empty or longer than [`MAX_SIZE_CLASSES`](crate::MAX_SIZE_CLASSES).
    #[error("size_classes has {count} entries: give between 1 and {max}")]
    SizeClassCount {
        /// Entries given.
        count: usize,
        /// [`MAX_SIZE_CLASSES`](crate::MAX_SIZE_CLASSES).
        max: usize,
    },
    /// The same size appears twice in `size_classes`.
    #[error("size class {size} is given twice: list each size once")]
    DuplicateSizeClass {
        /// The repeated size.
        size: usize,
    },
    /// `size_class_ladder(min, max)` with a bound that is not a power of two, or `min > max`.
    #[error("size_class_ladder({min}, {max}): both bounds must be powers of two (at least the page size) with min <= max")]
    BadSizeClassLadder {
        /// The given lower bound.
        min: usize,
        /// The given upper bound.
        max: usize,
    },
    /// `class_capacity` names a size that is not one of the size classes.
    #[error("class_capacity for size {size}, which is not a size class (classes: {classes:?})")]
    UnknownSizeClass {
        /// The size given to `class_capacity`.
        size: usize,
        /// The pool's size classes (empty if none were configured).
        classes: Vec<usize>,
    },
    /// `buf_size` was set but is not one of the size classes (it names the class `acquire()` uses).
    #[error("buf_size {buf_size} is not one of the size classes {classes:?}: pick one of them as the default, or leave buf_size unset (the smallest class)")]
    BufSizeNotASizeClass {
        /// The given buffer size.
        buf_size: usize,
        /// The pool's size classes.
        classes: Vec<usize>,
    },
    /// [`NumaPolicy::Bind`](crate::NumaPolicy::Bind) or [`NumaPolicy::Interleave`](crate::NumaPolicy::Interleave)
    /// with an empty node set.
    #[error("numa({setting}) has an empty node set: name at least one node (see /sys/devices/system/node/online)")]
    NumaEmptyNodeSet {
        /// The policy, as written on the builder (`Bind(..)` or `Interleave(..)`).
        setting: &'static str,
    },
    /// A node id in a [`NumaPolicy`](crate::NumaPolicy) at or above the most nodes any kernel supports.
    #[error("NUMA node {node} is out of range: node ids are below {max}")]
    NumaNodeTooLarge {
        /// The rejected node id.
        node: usize,
        /// The bound node ids must stay below (1024).
        max: usize,
    },
    /// A node id in a [`NumaPolicy`](crate::NumaPolicy) that is not online on this machine.
    #[error("NUMA node {node} is not online (online nodes: {online:?}, from /sys/devices/system/node/online): use one of those")]
    NumaNodeOffline {
        /// The rejected node id.
        node: usize,
        /// The online nodes.
        online: Vec<usize>,
    },
    /// `idle_trim_after(Duration::ZERO)`.
    #[error("idle_trim_after is zero: give a period such as 60 s (or leave it unset to trim only on demand)")]
    ZeroIdleTrim,
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

/// An [`AcquireError`] as an [`io::Error`], for code that reads into pool buffers inside `io::Result` functions
/// (`pool.acquire()?`). The `AcquireError` is kept as the error's inner error: reach it with `get_ref`,
/// `into_inner` or a downcast of either. Not with `source()`: std's `io::Error::source` skips the inner error
/// and returns *its* source, so `Exhausted` and `Timeout` have none and an `Os` error's chain goes straight to
/// the OS error (whose `raw_os_error()` the converted error itself does not report). The kind says what
/// happened:
///
/// - `Exhausted` is [`io::ErrorKind::OutOfMemory`]: no buffer memory is available under the pool's limits.
///   Not `WouldBlock`: async I/O code treats `WouldBlock` as "not ready, the reactor will wake you", and no
///   reactor ever wakes a task for a pool (that is what `PagePool::acquire_async`, feature `async`, is
///   for), so the task would hang; and under `OverflowPolicy::Map`/`Fail` no amount of waiting is implied.
/// - `Timeout` is [`io::ErrorKind::TimedOut`].
/// - `Os` keeps the kind of the OS error (`OutOfMemory` for `ENOMEM`, say); a length given to
///   [`acquire_len`](crate::PagePool::acquire_len) that overflows the address space is `InvalidInput`.
///
/// # Examples
/// ```
/// use pagepool::{OverflowPolicy, PagePool};
/// use std::io;
///
/// fn read_block(pool: &PagePool) -> io::Result<pagepool::AlignedBuf> {
///     let buf = pool.acquire()?; // AcquireError -> io::Error
///     Ok(buf)
/// }
/// let pool = PagePool::builder().capacity(1).overflow(OverflowPolicy::Fail).build().unwrap();
/// let held = read_block(&pool).unwrap();
/// let err = read_block(&pool).unwrap_err();
/// assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
/// assert!(err.get_ref().unwrap().is::<pagepool::AcquireError>());
/// # drop(held);
/// ```
impl From<AcquireError> for io::Error {
    fn from(e: AcquireError) -> io::Error {
        let kind = match &e {
            AcquireError::Exhausted { .. } => io::ErrorKind::OutOfMemory,
            AcquireError::Timeout { .. } => io::ErrorKind::TimedOut,
            AcquireError::Os { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
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
