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
    /// Map a buffer's pages directly from the OS (the default). A released overflow buffer of the pool's size
    /// waits in the overflow reserve for reuse and is unmapped once idle for
    /// [`PoolBuilder::overflow_decay`] (at once with `Duration::ZERO`); other sizes are unmapped when dropped.
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

/// Whether the pool locks its memory in RAM (`mlock`, `VirtualLock` on Windows), so secrets never reach swap.
/// See [`PoolBuilder::lock_memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LockPolicy {
    /// No locking (the default).
    #[default]
    Off,
    /// Lock what fits under `RLIMIT_MEMLOCK`; past it, emit one `tracing` warning and go on unlocked.
    /// [`PoolStats::locked_bytes`](crate::PoolStats::locked_bytes) tells how much is locked.
    BestEffort,
    /// All pool memory is locked, or the operation that maps it fails: `build` returns
    /// [`ConfigError::MemoryLockLimit`](crate::ConfigError::MemoryLockLimit) when the pool cannot fit under
    /// `RLIMIT_MEMLOCK` (and the process lacks `CAP_IPC_LOCK`), and an acquire whose new memory cannot be
    /// locked returns [`AcquireError::Os`](crate::AcquireError::Os) and maps nothing.
    Required,
}

/// What a forked child sees of the pool's memory (Linux). See [`PoolBuilder::on_fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForkPolicy {
    /// The child gets a copy-on-write copy, like any other memory (the default).
    #[default]
    Inherit,
    /// The child does not get the pool's memory at all (`MADV_DONTFORK`): touching it there faults.
    DontFork,
    /// The child sees the pool's memory zero-filled (`MADV_WIPEONFORK`, Linux 4.14+).
    WipeOnFork,
}

/// Huge-page backing of pooled chunks. See [`PoolBuilder::huge_pages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HugePages {
    /// Normal pages (the default).
    #[default]
    Off,
    /// Chunks are 2 MiB-aligned, a 2 MiB multiple long, and advised `MADV_HUGEPAGE`, so the kernel backs them
    /// with transparent huge pages when it can (THP in `always` or `madvise` mode). Linux only.
    Transparent,
    /// Chunks are mapped with `MAP_HUGETLB` from the kernel's reserved huge pages (`vm.nr_hugepages`). No
    /// fallback: when none are free, `build` returns
    /// [`ConfigError::HugePagesUnavailable`](crate::ConfigError::HugePagesUnavailable). The kernel aligns these
    /// mappings to the huge page size (2 MiB) and no further, so [`PoolBuilder::alignment`] may be at most that:
    /// `build` refuses a larger one with
    /// [`ConfigError::HugePageAlignment`](crate::ConfigError::HugePageAlignment) (`Transparent` honours any
    /// alignment). Linux only.
    Explicit,
}

/// Builder for a [`PagePool`](crate::PagePool); start with [`PagePool::builder`](crate::PagePool::builder).
///
/// Defaults: `buf_size` = [`page_size()`](crate::page_size), `capacity` = 1024, `alignment` = page size,
/// [`OverflowPolicy::Map`], `max_overflow` = unlimited, `max_bytes` = unlimited, `prealloc` = false,
/// `thread_cache` = `min(16, capacity / 4)` (at least 1) growing with use up to `max_thread_cache` =
/// `min(4096, capacity)`, `overflow_decay` = [`DEFAULT_OVERFLOW_DECAY`] (1 s).
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
    pub(crate) max_thread_cache: Option<usize>,
    pub(crate) reclaim: bool,
    pub(crate) zero_on_release: bool,
    pub(crate) poison_on_release: bool,
    pub(crate) lock_memory: LockPolicy,
    pub(crate) dont_dump: bool,
    pub(crate) on_fork: ForkPolicy,
    pub(crate) guard_pages: bool,
    pub(crate) huge_pages: HugePages,
    pub(crate) idle_trim_after: Option<std::time::Duration>,
    pub(crate) overflow_decay: std::time::Duration,
    /// Whether `buf_size` was set explicitly (it then names the default size class).
    pub(crate) buf_size_set: bool,
    /// Buffer sizes of a multi-size pool, as given (validated at build).
    pub(crate) size_classes: Option<Vec<usize>>,
    /// Per-class capacities given with `class_capacity`, in call order.
    pub(crate) class_capacities: Vec<(usize, usize)>,
    /// Bounds of a rejected `size_class_ladder`, reported by `build`.
    pub(crate) bad_ladder: Option<(usize, usize)>,
    /// Direct I/O requirement folded into `buf_size` and `alignment` at build (see `dio.rs`).
    pub(crate) direct_io: Option<crate::dio::DioAlign>,
    pub(crate) max_bytes: Option<usize>,
    /// NUMA placement of chunks and overflow buffers (`numa.rs`).
    pub(crate) numa: crate::numa::NumaPolicy,
    /// A topology injected by tests instead of the machine's (`numa_test_topology`).
    pub(crate) numa_topology: Option<crate::numa::TestTopology>,
}

/// The most size classes one pool accepts.
pub const MAX_SIZE_CLASSES: usize = 32;

/// The default [`PoolBuilder::overflow_decay`]: long enough that a workload overflowing in bursts of a few
/// milliseconds to a few hundred reuses its overflow mappings, short enough that memory comes back within about
/// a second of the demand dropping (measurements in docs/benchmarks.md, "Overflow reserve").
pub const DEFAULT_OVERFLOW_DECAY: std::time::Duration = std::time::Duration::from_secs(1);

/// A default thread cache starts with room for at most this many slots (and a quarter of the capacity).
const DEFAULT_THREAD_CACHE: usize = 16;

/// A default thread cache grows to at most this many slots (and the capacity).
const DEFAULT_MAX_THREAD_CACHE: usize = 4096;

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
            max_thread_cache: None,
            reclaim: true,
            zero_on_release: false,
            poison_on_release: false,
            lock_memory: LockPolicy::Off,
            dont_dump: false,
            on_fork: ForkPolicy::Inherit,
            guard_pages: false,
            huge_pages: HugePages::Off,
            idle_trim_after: None,
            overflow_decay: DEFAULT_OVERFLOW_DECAY,
            buf_size_set: false,
            size_classes: None,
            class_capacities: Vec::new(),
            bad_ladder: None,
            direct_io: None,
            max_bytes: None,
            numa: crate::numa::NumaPolicy::Local,
            numa_topology: None,
        }
    }
}

impl PoolBuilder {
    /// Bytes per buffer: a non-zero multiple of [`page_size()`](crate::page_size). Checked by
    /// [`build`](Self::build).
    pub fn buf_size(mut self, bytes: usize) -> Self {
        self.buf_size = bytes;
        self.buf_size_set = true;
        self
    }

    /// Serve several buffer sizes from one pool: one size class per entry (each a non-zero multiple of the page
    /// size, no duplicates, at most [`MAX_SIZE_CLASSES`]). Each class is a pool of its own (its own chunks,
    /// freelist, thread caches and overflow bound), so memory of one class never fragments another's.
    ///
    /// [`PagePool::acquire_len`](crate::PagePool::acquire_len) picks the smallest class that fits;
    /// [`PagePool::acquire`](crate::PagePool::acquire) uses the default class: `buf_size` if it was set (it must
    /// then be one of the classes), else the smallest class. Every class has `capacity` buffers unless
    /// [`class_capacity`](Self::class_capacity) says otherwise; every other setting applies to each class
    /// (`max_overflow` and `thread_cache` per class).
    ///
    /// # Examples
    /// ```
    /// let pool = pagepool::PagePool::builder()
    ///     .size_classes(&[4096, 8192, 16384, 65536, 1 << 20])
    ///     .capacity(64)
    ///     .class_capacity(1 << 20, 4)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.acquire_len(5000).unwrap().len(), 8192);
    /// assert_eq!(pool.acquire().unwrap().len(), 4096);
    /// assert_eq!(pool.stats().classes.len(), 5);
    /// ```
    pub fn size_classes(mut self, sizes: &[usize]) -> Self {
        self.size_classes = Some(sizes.to_vec());
        self
    }

    /// Size classes of every power of two from `min` to `max` bytes inclusive (both powers of two, at least the
    /// page size); see [`size_classes`](Self::size_classes). A bad bound is reported by `build` as
    /// [`ConfigError::BadSizeClassLadder`](crate::ConfigError::BadSizeClassLadder).
    pub fn size_class_ladder(mut self, min: usize, max: usize) -> Self {
        if min.is_power_of_two() && max.is_power_of_two() && min <= max {
            let sizes =
                std::iter::successors(Some(min), |&s| s.checked_mul(2).filter(|&n| n <= max));
            self.size_classes = Some(sizes.collect());
            self.bad_ladder = None;
        } else {
            self.bad_ladder = Some((min, max));
        }
        self
    }

    /// Capacity of one size class (`size` must be one of the [`size_classes`](Self::size_classes)); the
    /// others keep `capacity`.
    pub fn class_capacity(mut self, size: usize, buffers: usize) -> Self {
        self.class_capacities.push((size, buffers));
        self
    }

    /// Buffers the pool keeps and reuses (at most [`MAX_CAPACITY`]). Pooled memory is mapped in chunks on
    /// demand up to this many buffers, or all at build with [`prealloc`](Self::prealloc).
    ///
    /// The bookkeeping is lazy too: `build` allocates nothing per buffer (a table of at most 512 chunks), so any
    /// capacity up to [`MAX_CAPACITY`] builds in microseconds. Each chunk, when mapped, gets the freelist's links:
    /// 4 bytes per buffer, zeroed and touched only as its buffers are released (0.1% of 4 KiB buffers).
    pub fn capacity(mut self, buffers: usize) -> Self {
        self.capacity = buffers;
        self
    }

    /// Alignment of every buffer's start: a power of two, at least the page size (the default). Larger
    /// alignments (e.g. 2 MiB) are honoured exactly; each pooled buffer then occupies `buf_size` rounded up to
    /// the alignment. With [`HugePages::Explicit`] at most the huge page size (2 MiB):
    /// [`build`](Self::build) refuses more ([`ConfigError::HugePageAlignment`](crate::ConfigError::HugePageAlignment)).
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

    /// Idle slots each thread may keep in its own cache at first (at most `capacity`; 0 turns caching off).
    /// Set alone, the size is fixed; with [`max_thread_cache`](Self::max_thread_cache) it is where an adaptive
    /// cache starts.
    ///
    /// A thread's cache serves its acquires and absorbs its releases without touching shared memory; it
    /// refills and flushes half its size at a time from the shared depot and freelist. Idle buffers resting in
    /// one thread's cache stay reachable: an acquire that finds the shared pool empty takes them back (before it
    /// maps an overflow buffer, refuses or waits), [`PagePool::trim`](crate::PagePool::trim) takes them back,
    /// and dropping the pool's last handle ends every thread's cache, so a thread that used the pool and then
    /// blocks keeps none of its memory. Each such reclaim costs one process-wide memory barrier (Linux
    /// `membarrier`, Windows `FlushProcessWriteBuffers`: a few microseconds) and is counted in
    /// [`PoolStats::reclaimed`](crate::PoolStats::reclaimed); the cache hit path pays two plain stores and a
    /// load for it. Where the OS has no such barrier (other platforms, a kernel or sandbox without
    /// `membarrier`), idle cached buffers reach other threads only when their own thread flushes (a full
    /// cache, its next pool operation after a trim or close, its exit): size `capacity` for the demand plus
    /// `threads x thread_cache` there, or set 0 for strict accounting.
    ///
    /// Default: adaptive, starting at `min(16, capacity / 4)` (at least 1) and growing up to
    /// `max_thread_cache`.
    pub fn thread_cache(mut self, slots: usize) -> Self {
        self.thread_cache = Some(slots);
        self
    }

    /// The most idle slots an adaptive thread cache may grow to (at most `capacity`, at least `thread_cache`).
    ///
    /// An adaptive cache grows while its thread's demand exceeds it: when the cache is full at a release and
    /// the thread has refilled it since it last flushed (it takes more buffers than the cache holds, then gives
    /// them back), the cache doubles instead of flushing, so a thread that takes and returns N buffers per
    /// round settles at a cache of about N and stops touching shared memory. It shrinks back by halves when
    /// the thread keeps flushing without refilling (it releases more than it takes, e.g. buffers acquired by
    /// other threads), and to its starting size at [`PagePool::trim`](crate::PagePool::trim). All caches of a
    /// pool together grow by at most `capacity` slots beyond their starting sizes.
    ///
    /// Default: `min(4096, capacity)` when `thread_cache` is not set; equal to `thread_cache` (a fixed cache)
    /// when it is.
    pub fn max_thread_cache(mut self, slots: usize) -> Self {
        self.max_thread_cache = Some(slots);
        self
    }

    /// Whether idle buffers in other threads' caches are taken back when needed (by an acquire that finds the
    /// shared pool empty, by [`PagePool::trim`](crate::PagePool::trim), and by dropping the pool's last handle;
    /// see [`thread_cache`](Self::thread_cache)). Each such reclaim is one process-wide memory barrier, which
    /// interrupts every CPU running a thread of the process (Linux `membarrier`): a few microseconds here, more on
    /// large machines (docs/scaling.md). Turn it off where those interrupts are not welcome (cores isolated for
    /// latency); idle cached buffers then reach other threads only when their own thread flushes (a full cache,
    /// its next pool operation after a trim, a waiter or a close, or its exit), as on platforms without such a
    /// barrier. Default: on.
    ///
    /// # Examples
    /// ```
    /// let pool = pagepool::PagePool::builder().capacity(64).reclaim(false).build().unwrap();
    /// drop(pool.acquire().unwrap()); // rests in this thread's cache
    /// pool.trim(); // flushes this thread's own cache; other threads' would wait for their thread
    /// assert_eq!(pool.stats().reclaimed, 0);
    /// ```
    pub fn reclaim(mut self, on: bool) -> Self {
        self.reclaim = on;
        self
    }

    /// Zero every byte of a buffer when it is released, before it can be handed out again or unmapped (volatile
    /// writes the compiler cannot elide). For decrypted pages: a secret never outlives its buffer. Costs one
    /// pass over the buffer per release. See also [`AlignedBuf::zeroize`](crate::AlignedBuf::zeroize).
    /// Default: off.
    pub fn zero_on_release(mut self, yes: bool) -> Self {
        self.zero_on_release = yes;
        self
    }

    /// Fill released pooled buffers with a pattern and check it on the next acquire of the same buffer: a
    /// mismatch means someone wrote to the buffer after releasing it (a use after release through a raw
    /// pointer). It is reported as a `tracing` error and counted in
    /// [`PoolStats::poison_violations`](crate::PoolStats::poison_violations); the buffer is still handed out.
    /// A buffer that reads back all zeros passes (memory fresh from the OS or returned by [`trim`]), so a stray
    /// write of zeros over a whole buffer goes unseen. With [`zero_on_release`](Self::zero_on_release) too, the
    /// pattern is what erases the secret, and the buffer is zeroed after the check. Costs two passes over the
    /// buffer per use; meant for debug builds and tests. Default: off.
    ///
    /// [`trim`]: crate::PagePool::trim
    pub fn poison_on_release(mut self, yes: bool) -> Self {
        self.poison_on_release = yes;
        self
    }

    /// Lock the pool's memory (pooled chunks and overflow buffers) in RAM so it never reaches swap; see
    /// [`LockPolicy`]. Locking faults the memory in: a locked chunk is resident from the moment it is mapped.
    /// Locked memory is never given back by [`trim`](crate::PagePool::trim). Default: [`LockPolicy::Off`].
    pub fn lock_memory(mut self, policy: LockPolicy) -> Self {
        self.lock_memory = policy;
        self
    }

    /// The NUMA placement of the pool's memory, pooled chunks and overflow buffers alike; see [`NumaPolicy`].
    /// Applied with `mbind` to each fresh mapping before its first touch. Linux only: elsewhere `build` returns
    /// [`ConfigError::Unsupported`](crate::ConfigError::Unsupported) for any policy but the default. Node sets
    /// are checked at `build` ([`ConfigError::NumaEmptyNodeSet`](crate::ConfigError::NumaEmptyNodeSet),
    /// [`ConfigError::NumaNodeTooLarge`](crate::ConfigError::NumaNodeTooLarge),
    /// [`ConfigError::NumaNodeOffline`](crate::ConfigError::NumaNodeOffline)); an `mbind` the kernel refuses
    /// later fails the acquire that maps the memory with
    /// [`AcquireError::Os`](crate::AcquireError::Os) (`build` with [`ConfigError::Os`](crate::ConfigError::Os)
    /// under `prealloc`). Default: [`NumaPolicy::Local`] (no `mbind`).
    ///
    /// # Examples
    /// ```
    /// use pagepool::{NumaPolicy, PagePool};
    /// let builder = PagePool::builder().capacity(64).numa(NumaPolicy::Interleave(vec![0]));
    /// if cfg!(target_os = "linux") {
    ///     let pool = builder.build().unwrap();
    ///     drop(pool.acquire().unwrap());
    /// }
    /// ```
    ///
    /// [`NumaPolicy`]: crate::NumaPolicy
    /// [`NumaPolicy::Local`]: crate::NumaPolicy::Local
    pub fn numa(mut self, policy: crate::numa::NumaPolicy) -> Self {
        self.numa = policy;
        self
    }

    /// Test seam: replaces the machine's NUMA topology (used by [`NumaPolicy::NodeLocal`]) with `nodes` nodes,
    /// the calling thread's being `current()` (memory placed on any of them is `mbind`ed to node 0, which
    /// every machine has). Not part of the stable API.
    ///
    /// [`NumaPolicy::NodeLocal`]: crate::NumaPolicy::NodeLocal
    #[doc(hidden)]
    pub fn numa_test_topology(mut self, nodes: usize, current: fn() -> usize) -> Self {
        self.numa_topology = Some(crate::numa::TestTopology { nodes, current });
        self
    }

    /// Leave the pool's memory out of core dumps (`MADV_DONTDUMP`). Linux only: elsewhere `build` returns
    /// [`ConfigError::Unsupported`](crate::ConfigError::Unsupported). Default: off.
    pub fn dont_dump(mut self, yes: bool) -> Self {
        self.dont_dump = yes;
        self
    }

    /// What a `fork`ed child sees of the pool's memory; see [`ForkPolicy`]. Linux only for anything but
    /// [`ForkPolicy::Inherit`]: elsewhere `build` returns
    /// [`ConfigError::Unsupported`](crate::ConfigError::Unsupported). Default: [`ForkPolicy::Inherit`].
    pub fn on_fork(mut self, policy: ForkPolicy) -> Self {
        self.on_fork = policy;
        self
    }

    /// Put an inaccessible guard page (`PROT_NONE`; `PAGE_NOACCESS` on Windows) before every buffer and after
    /// it, pooled and overflow alike, so an overrun or underrun faults at once instead of corrupting a
    /// neighbour.
    ///
    /// Cost: each slot grows by one page (`buf_size + page` rounded up to the alignment) plus one leading
    /// guard per chunk; guard pages are address space only (never touched, no RSS). Each guard splits the
    /// chunk's mapping, so a pool needs about `2 x capacity` kernel mappings (VMAs) instead of one per chunk;
    /// `build` refuses ([`ConfigError::GuardPagesMapCount`](crate::ConfigError::GuardPagesMapCount)) a
    /// capacity that would use more than half of `vm.max_map_count`. Not combinable with
    /// [`huge_pages`](Self::huge_pages). Default: off.
    pub fn guard_pages(mut self, yes: bool) -> Self {
        self.guard_pages = yes;
        self
    }

    /// Back pooled chunks with huge pages; see [`HugePages`]. Overflow buffers always use normal pages.
    /// Default: [`HugePages::Off`].
    pub fn huge_pages(mut self, mode: HugePages) -> Self {
        self.huge_pages = mode;
        self
    }

    /// Give idle pooled memory back to the OS once it has stayed idle this long: the pool tracks the fewest
    /// buffers idle in its shared freelist during each period of `after`, and at the end of the period returns
    /// that many (the longest-idle ones) with `MADV_DONTNEED` (`MEM_DECOMMIT` on Windows). The buffers stay
    /// in the pool and fault in fresh zeroed pages when next used.
    ///
    /// No thread of the pool's own runs this: the check is made on the pool's slow paths (a thread cache
    /// refilling or flushing, chunk growth, overflow) and by [`PagePool::trim_idle`](crate::PagePool::trim_idle),
    /// which a program with quiet spells calls from its own timer. `Duration::ZERO` is rejected
    /// ([`ConfigError::ZeroIdleTrim`](crate::ConfigError::ZeroIdleTrim)). Default: never.
    ///
    /// Registering the pool's buffers with io_uring (`PagePool::iovecs`, cargo feature `io-uring`) turns idle
    /// trimming off for the rest of the pool's life: registered memory is never discarded (the kernel would keep
    /// using the old pages). Each period's check then gives nothing back and logs a `debug` event saying so.
    pub fn idle_trim_after(mut self, after: std::time::Duration) -> Self {
        self.idle_trim_after = Some(after);
        self
    }

    /// How long a released overflow buffer stays mapped for reuse. Default: [`DEFAULT_OVERFLOW_DECAY`] (1 s).
    ///
    /// Past its capacity (and within `max_overflow` and `max_bytes`) the pool maps a buffer of its own for each
    /// acquire under [`OverflowPolicy::Map`] and [`OverflowPolicy::Wait`]. With a non-zero decay, such a buffer
    /// of the pool's `buf_size` is not unmapped when it is dropped: it is scrubbed as a pooled buffer would be
    /// ([`zero_on_release`](Self::zero_on_release), [`poison_on_release`](Self::poison_on_release)) and kept in
    /// the pool's overflow reserve, and the next overflow acquire (or a waiter) takes it from there, newest
    /// first, with no system call and no page faults. A reserved buffer keeps everything it held: its place
    /// under `max_overflow`, its bytes of `max_bytes` and [`PoolStats::mapped_bytes`](crate::PoolStats), its
    /// locked memory, its guard pages and advice. Buffers of other sizes (`acquire_len` above the largest
    /// class) are unmapped at once, as before; with [`size_classes`](Self::size_classes) each class has a
    /// reserve of its own.
    ///
    /// A reserved buffer idle for longer than `decay` is unmapped by the next slow path of the pool (an overflow
    /// acquire or release, a thread cache refill, a shared-freelist acquire), by
    /// [`PagePool::trim_idle`](crate::PagePool::trim_idle), or at once by [`PagePool::trim`](crate::PagePool::trim),
    /// which empties the reserve; no thread of the pool's own runs. While the pool is at its limit, reserved
    /// buffers are unmapped, longest idle first, to make room for a mapping of another size; dropping the last
    /// pool handle unmaps them all. The reserve holds at most `min(max_overflow, 4096)` buffers, and never
    /// more than the most overflow buffers that were out at once, so it uses no mappings
    /// (`vm.max_map_count`) beyond the overflow path's own peak.
    ///
    /// `Duration::ZERO` turns the reserve off: every overflow buffer is unmapped when dropped.
    /// [`PoolStats`](crate::PoolStats) reports `reserve_buffers`, `reserve_bytes`, `overflow_reuses` and
    /// `decay_unmaps`; decay unmaps emit a `debug` event (target `pagepool`).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = pagepool::PagePool::builder()
    ///     .capacity(1)
    ///     .overflow_decay(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// let pooled = pool.acquire().unwrap();
    /// let over = pool.acquire().unwrap();
    /// let addr = over.as_ptr();
    /// drop(over); // kept mapped in the reserve
    /// assert_eq!(pool.stats().reserve_buffers, 1);
    /// let again = pool.acquire().unwrap(); // no mmap: the same mapping
    /// assert_eq!((again.as_ptr(), pool.stats().overflow_reuses), (addr, 1));
    /// drop(again);
    /// pool.trim(); // empties the reserve
    /// assert_eq!(pool.stats().reserve_buffers, 0);
    /// # drop(pooled);
    /// ```
    pub fn overflow_decay(mut self, decay: std::time::Duration) -> Self {
        self.overflow_decay = decay;
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
    ///
    /// With [`size_classes`](Self::size_classes), each class is a pool of its own with this budget: the whole
    /// pool maps at most `classes x max_bytes`.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Checks every setting and derives the memory layout.
    /// The starting and the largest size of each thread cache.
    fn thread_caches(&self) -> Result<(usize, usize), ConfigError> {
        let capacity = self.capacity;
        let default_start = DEFAULT_THREAD_CACHE.min(capacity / 4).max(1);
        if let Some(n) = self.thread_cache.filter(|&n| n > capacity) {
            return Err(ConfigError::ThreadCacheTooLarge {
                thread_cache: n,
                capacity,
            });
        }
        let (start, max) = match (self.thread_cache, self.max_thread_cache) {
            (None, None) => (default_start, DEFAULT_MAX_THREAD_CACHE.min(capacity)),
            (Some(n), None) => (n, n),
            (None, Some(m)) => (default_start.min(m), m),
            (Some(n), Some(m)) => (n, m),
        };
        if max > capacity || max < start || (start == 0 && max > 0) {
            return Err(ConfigError::MaxThreadCache {
                max_thread_cache: max,
                thread_cache: start,
                capacity,
            });
        }
        Ok((start, max))
    }

    pub(crate) fn layout(&self) -> Result<Layout, ConfigError> {
        if let Some(resolved) = self.resolve_direct_io()? {
            return resolved.layout();
        }
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
        // Guard pages: one inaccessible page (rounded to the alignment) after every buffer, and one before the
        // first buffer of each chunk, so every buffer sits between two.
        let guard = if self.guard_pages { page_size } else { 0 };
        let stride = self
            .buf_size
            .checked_add(guard)
            .and_then(|b| b.checked_next_multiple_of(align))
            .ok_or_else(too_large)?;
        let lead = if self.guard_pages { align } else { 0 };
        let total = stride.checked_mul(self.capacity).ok_or_else(too_large)?;
        // An overflow buffer or a chunk reserves up to `align - granularity` bytes of slack on top, a chunk
        // its leading guard, and a huge-page chunk up to a huge page of rounding.
        let huge = self.huge_pages != HugePages::Off;
        let (huge_align, huge_round) = if huge {
            (sys::HUGE_PAGE, sys::HUGE_PAGE)
        } else {
            (0, 0)
        };
        let extra = lead
            .checked_add(huge_round)
            .and_then(|per_chunk| per_chunk.checked_mul(MAX_CHUNKS))
            .and_then(|e| e.checked_add(sys::align_slack(align.max(huge_align))));
        match extra.and_then(|e| e.checked_add(total)) {
            Some(all) if all <= limit => {}
            _ => return Err(too_large()),
        }
        self.check_memory_options(align)?;
        let (thread_cache, thread_cache_max) = self.thread_caches()?;
        let slots_per_chunk = slots_per_chunk(stride, self.capacity, sys::allocation_granularity());
        let chunk_shift = slots_per_chunk.trailing_zeros();
        let chunks = self.capacity.div_ceil(slots_per_chunk);
        let chunk_round = if huge { sys::HUGE_PAGE } else { page_size };
        let chunk_align = if huge {
            align.max(sys::HUGE_PAGE)
        } else {
            align
        };
        if self.guard_pages {
            // Each guard splits the chunk's mapping: one VMA per buffer, one per guard.
            let needed = 2 * self.capacity + chunks;
            if let Some(max_map_count) = sys::max_map_count() {
                if needed > max_map_count / 2 {
                    return Err(ConfigError::GuardPagesMapCount {
                        capacity: self.capacity,
                        needed,
                        max_map_count,
                    });
                }
            }
        }
        let layout = Layout {
            buf_size: self.buf_size,
            align,
            stride,
            capacity: self.capacity,
            chunk_shift,
            chunks,
            thread_cache,
            thread_cache_max,
            lead,
            chunk_align,
            chunk_round,
            hugetlb: self.huge_pages == HugePages::Explicit,
        };
        self.check_lock_limit(&layout)?;
        self.check_budget(&layout)?;
        Ok(layout)
    }

    /// `LockPolicy::Required`: every chunk must fit under `RLIMIT_MEMLOCK` unless this thread may exceed it.
    fn check_lock_limit(&self, l: &Layout) -> Result<(), ConfigError> {
        if self.lock_memory != LockPolicy::Required || sys::lock_exempt() {
            return Ok(());
        }
        let Some(limit) = sys::memlock_limit() else {
            return Ok(());
        };
        let requested = (0..l.chunks).map(|k| l.chunk_len(k)).sum::<usize>();
        if requested > limit {
            return Err(ConfigError::MemoryLockLimit { limit, requested });
        }
        Ok(())
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

    /// Validates the size-class settings. Returns `(class builders smallest first, index of the default
    /// class)`, or `None` for a single-size pool.
    pub(crate) fn class_builders(&self) -> Result<Option<(Vec<PoolBuilder>, usize)>, ConfigError> {
        if let Some((min, max)) = self.bad_ladder {
            return Err(ConfigError::BadSizeClassLadder { min, max });
        }
        let Some(given) = &self.size_classes else {
            if let Some(&(size, _)) = self.class_capacities.first() {
                return Err(ConfigError::UnknownSizeClass {
                    size,
                    classes: Vec::new(),
                });
            }
            return Ok(None);
        };
        if given.is_empty() || given.len() > MAX_SIZE_CLASSES {
            return Err(ConfigError::SizeClassCount {
                count: given.len(),
                max: MAX_SIZE_CLASSES,
            });
        }
        let mut sizes = given.clone();
        sizes.sort_unstable();
        if let Some(w) = sizes.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateSizeClass { size: w[0] });
        }
        for &(size, _) in &self.class_capacities {
            if !sizes.contains(&size) {
                return Err(ConfigError::UnknownSizeClass {
                    size,
                    classes: sizes,
                });
            }
        }
        let default = if self.buf_size_set {
            sizes
                .iter()
                .position(|&s| s == self.buf_size)
                .ok_or_else(|| ConfigError::BufSizeNotASizeClass {
                    buf_size: self.buf_size,
                    classes: sizes.clone(),
                })?
        } else {
            0
        };
        let builders = sizes
            .iter()
            .map(|&size| {
                let capacity = self
                    .class_capacities
                    .iter()
                    .rev()
                    .find(|&&(s, _)| s == size)
                    .map_or(self.capacity, |&(_, c)| c);
                PoolBuilder {
                    buf_size: size,
                    buf_size_set: true,
                    capacity,
                    size_classes: None,
                    class_capacities: Vec::new(),
                    bad_ladder: None,
                    ..self.clone()
                }
            })
            .collect();
        Ok(Some((builders, default)))
    }

    /// Rejects memory options this platform cannot honour, and combinations that make no sense.
    fn check_memory_options(&self, align: usize) -> Result<(), ConfigError> {
        use sys::Advice;
        if self.idle_trim_after == Some(std::time::Duration::ZERO) {
            return Err(ConfigError::ZeroIdleTrim);
        }
        if self.guard_pages && self.huge_pages != HugePages::Off {
            return Err(ConfigError::Incompatible {
                first: "guard_pages(true)",
                second: "huge_pages(..)",
                why: "a guard page would split every huge page; use one or the other",
            });
        }
        let unsupported = |setting: &'static str| ConfigError::Unsupported {
            setting,
            platform: std::env::consts::OS,
        };
        if self.dont_dump && !sys::supports(Advice::DontDump) {
            return Err(unsupported("dont_dump(true)"));
        }
        if self.on_fork != ForkPolicy::Inherit && !sys::supports(Advice::DontFork) {
            return Err(unsupported("on_fork(..)"));
        }
        if self.huge_pages != HugePages::Off && !sys::supports(Advice::HugePage) {
            return Err(unsupported("huge_pages(..)"));
        }
        if self.numa != crate::numa::NumaPolicy::Local && !sys::numa::supported() {
            return Err(unsupported("numa(..)"));
        }
        crate::numa::validate(&self.numa, sys::numa::online_nodes)?;
        // `MAP_HUGETLB` mappings start on a huge page boundary and nothing stronger can be asked for (no slack
        // to trim: the kernel reserves whole huge pages for all of a mapping). Both are powers of two, so an
        // alignment up to the huge page size divides it and every slot (a multiple of the alignment from the
        // chunk's start) is aligned; a larger one would be silently weakened.
        if self.huge_pages == HugePages::Explicit && align > sys::HUGE_PAGE {
            return Err(ConfigError::HugePageAlignment {
                alignment: align,
                huge_page_size: sys::HUGE_PAGE,
            });
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
    /// The most slots an adaptive thread cache grows to (`thread_cache` for a fixed cache).
    pub(crate) thread_cache_max: usize,
    /// Bytes of each chunk before its first slot: the leading guard (rounded to the alignment), or 0.
    pub(crate) lead: usize,
    /// Alignment of each chunk's mapping (the buffer alignment, or the huge page size with huge pages).
    pub(crate) chunk_align: usize,
    /// Each chunk's mapping length is rounded up to this (the page size, or the huge page size).
    pub(crate) chunk_round: usize,
    /// Chunks are mapped with explicit huge pages (`MAP_HUGETLB`).
    pub(crate) hugetlb: bool,
}

impl Layout {
    /// Slots in chunk `k` (the last chunk may be short).
    pub(crate) fn chunk_slots(&self, k: usize) -> usize {
        let per = 1usize << self.chunk_shift;
        per.min(self.capacity - k * per)
    }

    /// Length of chunk `k`'s mapping: leading guard, slots, rounding.
    pub(crate) fn chunk_len(&self, k: usize) -> usize {
        (self.lead + self.chunk_slots(k) * self.stride).next_multiple_of(self.chunk_round)
    }

    /// Bytes chunk `k` reserves from the OS (counted against `max_bytes`): its mapping plus alignment slack.
    /// Cannot overflow: `layout` checked that the whole capacity plus one slack fits in `isize::MAX`.
    pub(crate) fn chunk_reserved(&self, k: usize) -> usize {
        // Explicit huge pages are mapped exactly (the kernel aligns them to the huge page size, and `layout`
        // refuses larger alignments); other chunks reserve slack for alignments above the allocation
        // granularity.
        let slack = if self.hugetlb {
            0
        } else {
            sys::align_slack(self.chunk_align)
        };
        self.chunk_len(k) + slack
    }

    /// Bytes one overflow buffer reserves from the OS (counted against `max_bytes`).
    pub(crate) fn overflow_reserved(&self) -> usize {
        // With guard pages: leading guard, buffer, trailing guard (see `Overflow::len_for`).
        let len = if self.lead > 0 {
            self.lead + self.stride
        } else {
            self.buf_size
        };
        len + sys::align_slack(self.align)
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
