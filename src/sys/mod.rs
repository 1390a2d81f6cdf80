//! The portable facade over the operating system's virtual memory calls.
//!
//! Everything above this module is portable and never calls the OS itself. The facade is small on purpose:
//!
//! | function | unix (`unix.rs`) | Windows (`windows.rs`) | elsewhere (`other.rs`) |
//! |---|---|---|---|
//! | [`page_size`] | `sysconf(_SC_PAGESIZE)` | `GetSystemInfo().dwPageSize` | 4096 |
//! | [`allocation_granularity`] | page size | `GetSystemInfo().dwAllocationGranularity` (64 KiB) | page size |
//! | [`map`] | anonymous private `mmap` through memmap2 (`MAP_POPULATE` when asked) | `VirtualAlloc(MEM_RESERVE \| MEM_COMMIT, PAGE_READWRITE)` (pages touched when asked) | `Unsupported` |
//! | [`dio`] (direct I/O alignment, `O_DIRECT`, `RLIMIT_MEMLOCK`) | `statx`, `BLKSSZGET`, sysfs, `fstatfs`, `getrlimit` on Linux | 4096 default, `Unsupported` | 4096 default, `Unsupported` |
//! | drop of [`Mapping`] | `munmap` of the whole reservation | `VirtualFree(base, 0, MEM_RELEASE)` of the whole reservation | - |
//! | [`map_with`] `hugetlb` | `MAP_HUGETLB` (Linux) | `Unsupported` | `Unsupported` |
//! | [`advise`] | `madvise(MADV_DONTDUMP \| MADV_DONTFORK \| MADV_WIPEONFORK \| MADV_HUGEPAGE)` (Linux) | `Unsupported` | `Unsupported` |
//! | [`discard`] | `madvise(MADV_DONTNEED)` | `VirtualFree(MEM_DECOMMIT)` + `VirtualAlloc(MEM_COMMIT)` | `Unsupported` |
//! | [`recommit`] (after [`DiscardError::Uncommitted`]) | nothing (always usable) | `VirtualAlloc(MEM_COMMIT)` | nothing |
//! | [`lock`] | `mlock` | `VirtualLock` | `Unsupported` |
//! | [`numa`] (`mbind`, `getcpu`, online nodes) | `mbind`, `getcpu`, `/sys/devices/system/node/online` (Linux) | `Unsupported`, node 0 | `Unsupported`, node 0 |
//! | [`protect_none`] | `mprotect(PROT_NONE)` | `VirtualProtect(PAGE_NOACCESS)` | `Unsupported` |
//! | [`memlock_limit`], [`lock_exempt`] | `getrlimit(RLIMIT_MEMLOCK)`, `CAP_IPC_LOCK` in `/proc/thread-self/status` | none, no | none, no |
//!
//! A [`Mapping`] owns its reservation: dropping it returns the pages to the OS. Every reservation starts on an
//! allocation-granularity boundary, so alignments up to the granularity cost nothing; larger ones are honoured
//! by reserving `len + align - granularity` bytes and handing out the aligned interior. The slack is address
//! space only (never touched, and on Windows never committed, so it costs no RSS or commit charge) and is
//! released with the rest.
//!
//! In unit tests, [`fault`] can make the Nth `map` call, the Nth `advise`/`discard`/`lock`/`protect_none`
//! call, or the Nth recommit (the second half of `discard`, or [`recommit`]), on the current thread fail with a
//! chosen errno (a Windows error code on Windows), so every error path above this layer is exercised against
//! real mappings. A failed recommit is injected where the real one would fail: on Windows after the
//! `MEM_DECOMMIT`, so the range really is uncommitted; on unix after the `madvise`, so the pool takes the same
//! path although the pages would still be usable.

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
#[cfg_attr(not(any(unix, windows)), path = "other.rs")]
mod imp;

pub(crate) use imp::Mapping;

pub(crate) mod dio;
pub(crate) mod numa;

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
#[cfg(windows)]
static GRANULARITY: AtomicUsize = AtomicUsize::new(0);

/// The OS page size in bytes (cached after the first call).
pub(crate) fn page_size() -> usize {
    // Relaxed (as the store below, and `GRANULARITY`): a cache of a value every thread computes identically;
    // a thread that sees 0 asks the OS again and stores the same value.
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let size = imp::page_size();
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// The granule in which the OS places reservations (cached after the first call): every mapping starts on a
/// multiple of it, and on Windows a reservation occupies whole granules of address space. A power of two, at
/// least the page size; equal to it on unix.
pub(crate) fn allocation_granularity() -> usize {
    #[cfg(windows)]
    {
        // Relaxed: see `page_size`.
        let cached = GRANULARITY.load(Ordering::Relaxed);
        if cached != 0 {
            return cached;
        }
        let size = imp::allocation_granularity().max(page_size());
        GRANULARITY.store(size, Ordering::Relaxed);
        size
    }
    #[cfg(not(windows))]
    {
        page_size()
    }
}

/// Extra bytes a mapping aligned to `align` reserves on top of its length: none up to the allocation
/// granularity (reservations start on a granule), `align - granularity` above it.
pub(crate) fn align_slack(align: usize) -> usize {
    align.saturating_sub(allocation_granularity())
}

/// Maps `len` bytes of zeroed, readable and writable anonymous memory whose start is aligned to `align`.
///
/// `len` must be a non-zero multiple of the page size and `align` a power of two at least the page size; the
/// callers validate both (see `config.rs`). With `populate`, every page is faulted in before returning.
pub(crate) fn map(len: usize, align: usize, populate: bool) -> io::Result<Mapping> {
    map_with(len, align, populate, false)
}

/// [`map`], with `hugetlb` asking for explicit huge pages (`MAP_HUGETLB`, Linux only): `len` must then be a
/// multiple of [`HUGE_PAGE`] and `align` at most [`HUGE_PAGE`] (else `InvalidInput`: the kernel aligns such a
/// mapping to the huge page size and no further), and the call fails with `ENOMEM` when the kernel has no free
/// huge pages reserved (`vm.nr_hugepages`).
pub(crate) fn map_with(
    len: usize,
    align: usize,
    populate: bool,
    hugetlb: bool,
) -> io::Result<Mapping> {
    debug_assert!(len > 0 && len % page_size() == 0);
    debug_assert!(align.is_power_of_two() && align >= page_size());
    #[cfg(all(test, not(loom)))]
    fault::check_map()?;
    let slack = align_slack(align);
    let reserve = len
        .checked_add(slack)
        .filter(|&r| r <= isize::MAX as usize)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                "mapping size exceeds isize::MAX",
            )
        })?;
    let m = if hugetlb {
        // Huge-page mappings are aligned to the huge page size by the kernel, and no further: no slack, and no
        // stronger alignment (`build` refuses one first: `ConfigError::HugePageAlignment`).
        if len % HUGE_PAGE != 0 || align > HUGE_PAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "explicit huge pages: length {len} must be a multiple of, and alignment {align} at most, \
                     the huge page size {HUGE_PAGE}"
                ),
            ));
        }
        imp::map_hugetlb(len, populate)?
    } else {
        imp::map(reserve, len, align, populate)?
    };
    #[cfg(all(test, not(loom)))]
    fault::mapped();
    Ok(m)
}

/// The huge page size the pool aligns chunks to for [`HugePages`](crate::HugePages): 2 MiB, the PMD size of
/// x86_64 and of aarch64 with 4 KiB pages.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// A hint or protection applied to a range of a live mapping with [`advise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advice {
    /// Leave the range out of core dumps (`MADV_DONTDUMP`).
    DontDump,
    /// Do not map the range into a forked child at all (`MADV_DONTFORK`).
    DontFork,
    /// A forked child sees the range zero-filled (`MADV_WIPEONFORK`).
    WipeOnFork,
    /// Back the range with transparent huge pages where possible (`MADV_HUGEPAGE`).
    HugePage,
}

/// True if [`advise`] can apply `advice` on this platform (checked at build, so an unsupported setting is a
/// `ConfigError` rather than a failure at the first acquire).
pub(crate) fn supports(advice: Advice) -> bool {
    imp::supports(advice)
}

/// Applies `advice` to `[ptr, ptr + len)`, a page-aligned range of a live mapping the caller owns.
pub(crate) fn advise(ptr: NonNull<u8>, len: usize, advice: Advice) -> io::Result<()> {
    #[cfg(all(test, not(loom)))]
    fault::check_call()?;
    imp::advise(ptr, len, advice)
}

/// Why [`discard`] failed, and what it left the range as.
#[derive(Debug)]
pub(crate) enum DiscardError {
    /// The OS refused to take the pages back: the range is still committed and usable (its contents are
    /// unspecified, as after a successful discard). It may go back to the freelist.
    Kept(io::Error),
    /// The pages went back but the range could not be made usable again (Windows: `MEM_COMMIT` failed after
    /// `MEM_DECOMMIT`, under commit pressure): it is reserved but not committed, and any access faults. It must
    /// not reach the freelist until [`recommit`] succeeds on it.
    Uncommitted(io::Error),
}

/// Gives the physical pages of `[ptr, ptr + len)` back to the OS while keeping the range mapped: later reads
/// see zeros and touching it faults in fresh pages (`MADV_DONTNEED`; on Windows `MEM_DECOMMIT` then
/// `MEM_COMMIT` again). The caller owns the range and no one reads it meanwhile.
///
/// `Ok` and [`DiscardError::Kept`] leave the range usable; [`DiscardError::Uncommitted`] does not (see there).
/// The recommit is attempted even when the decommit failed, so that the range's state is known either way:
/// committing committed pages changes nothing.
pub(crate) fn discard(ptr: NonNull<u8>, len: usize) -> Result<(), DiscardError> {
    #[cfg(all(test, not(loom)))]
    fault::check_call().map_err(DiscardError::Kept)?;
    let given_back = imp::decommit(ptr, len);
    recommit(ptr, len).map_err(DiscardError::Uncommitted)?;
    given_back.map_err(DiscardError::Kept)
}

/// Makes `[ptr, ptr + len)`, a range [`discard`] left [`DiscardError::Uncommitted`], usable again (Windows:
/// `VirtualAlloc(MEM_COMMIT)`; nothing to do on unix). On error the range is still uncommitted. The caller owns
/// the range and no one reads it meanwhile.
pub(crate) fn recommit(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    #[cfg(all(test, not(loom)))]
    fault::check_recommit()?;
    imp::commit(ptr, len)
}

/// Locks `[ptr, ptr + len)` in RAM (`mlock`, `VirtualLock`), faulting it in. Unlocked by the unmap.
pub(crate) fn lock(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    #[cfg(all(test, not(loom)))]
    fault::check_call()?;
    imp::lock(ptr, len)
}

/// Makes `[ptr, ptr + len)` inaccessible (`PROT_NONE`, `PAGE_NOACCESS`): any access faults. Guard pages.
pub(crate) fn protect_none(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    #[cfg(all(test, not(loom)))]
    fault::check_call()?;
    imp::protect_none(ptr, len)
}

/// The soft `RLIMIT_MEMLOCK` in bytes, `None` if unlimited or unknown (Windows bounds locking by the working
/// set instead, which is only known when `VirtualLock` fails).
pub(crate) fn memlock_limit() -> Option<usize> {
    imp::memlock_limit()
}

/// True if the process may lock memory past [`memlock_limit`] (`CAP_IPC_LOCK` in its effective set on Linux).
pub(crate) fn lock_exempt() -> bool {
    imp::lock_exempt()
}

/// The most mappings (VMAs) a process may have (`vm.max_map_count`), `None` where there is no such limit or it
/// cannot be read.
pub(crate) fn max_map_count() -> Option<usize> {
    imp::max_map_count()
}

/// Makes every thread of this process that is running now execute a full memory barrier before this returns
/// (threads not running pass one at their next context switch): the rare half of the asymmetric barrier
/// (`sync::heavy_barrier`). Linux: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, after a one-time
/// registration; Windows: `FlushProcessWriteBuffers`. `false` where there is none (other platforms, a kernel
/// without it, a seccomp filter refusing it); the caller then does without.
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier() -> bool {
    #[cfg(all(test, not(loom)))]
    if fault::barrier_refused() {
        return false;
    }
    imp::process_barrier()
}

/// Whether [`process_barrier`] can work here, doing its one-time setup (Linux: the `membarrier` registration,
/// which can take milliseconds in a process that is already multi-threaded) if not done yet. Called before a
/// caller commits to needing the barrier (reclaim, before it claims any cache).
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier_ready() -> bool {
    #[cfg(all(test, not(loom)))]
    if fault::barrier_refused() {
        return false;
    }
    imp::process_barrier_ready()
}

/// Faults in every page of `[ptr, ptr + len)`, a fresh range the caller owns (for `prealloc` when the mapping
/// could not be populated at `map` time, e.g. because advice had to come first).
pub(crate) fn populate(ptr: NonNull<u8>, len: usize) {
    imp::touch(ptr, len)
}

/// Marks `[ptr, ptr + len)` as off limits for AddressSanitizer (idle pooled memory), so a use after release is
/// reported. A no-op unless the crate is built with `--cfg pagepool_asan` (and `-Zsanitizer=address`), as
/// `ci/sanitizers.sh` does.
#[inline]
pub(crate) fn poison(ptr: *const u8, len: usize) {
    #[cfg(pagepool_asan)]
    // SAFETY: the ASan runtime is linked (-Zsanitizer=address) and the range lies inside a live mapping we
    // own; poisoning changes only ASan's shadow memory.
    unsafe {
        asan::__asan_poison_memory_region(ptr.cast(), len)
    };
    #[cfg(not(pagepool_asan))]
    let _ = (ptr, len);
}

/// Undoes [`poison`]: the range is handed out (acquire) or about to be unmapped (so a later mapping at the same
/// address does not inherit the poison).
#[inline]
pub(crate) fn unpoison(ptr: *const u8, len: usize) {
    #[cfg(pagepool_asan)]
    // SAFETY: as for `poison`.
    unsafe {
        asan::__asan_unpoison_memory_region(ptr.cast(), len)
    };
    #[cfg(not(pagepool_asan))]
    let _ = (ptr, len);
}

/// A monotonic clock for the overflow reserve's decay, as a `Duration` since an arbitrary start (only
/// differences mean anything). On Linux `CLOCK_MONOTONIC_COARSE`: the last kernel tick, a few nanoseconds to
/// read (a vDSO read of the tick's time, no counter read) instead of the ~20 ns of `Instant::now()`, which the
/// reserve would pay on every overflow release; its resolution (1-4 ms) is far below any useful decay.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn coarse_clock() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32 and
    // clock_gettime only writes `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    debug_assert_eq!(rc, 0);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// See the Linux version: elsewhere (and under loom) `Instant`, measured from the first call.
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn coarse_clock() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(pagepool_asan)]
mod asan {
    extern "C" {
        pub(super) fn __asan_poison_memory_region(addr: *const std::ffi::c_void, size: usize);
        pub(super) fn __asan_unpoison_memory_region(addr: *const std::ffi::c_void, size: usize);
    }
}

/// Test-only fault injection: fail the Nth `map` call, policy call or recommit made on this thread.
#[cfg(all(test, not(loom)))]
pub(crate) mod fault {
    use std::cell::Cell;
    use std::io;

    thread_local! {
        static MAP_PLAN: Cell<Option<(u64, i32)>> = const { Cell::new(None) };
        static MAP_CALLS: Cell<u64> = const { Cell::new(0) };
        static LIVE: Cell<i64> = const { Cell::new(0) };
        static CALL_PLAN: Cell<Option<(u64, i32)>> = const { Cell::new(None) };
        static CALLS: Cell<u64> = const { Cell::new(0) };
    }

    /// From now on, the `n`th (0-based) call of `advise`, `discard`, `lock` or `protect_none` on this thread
    /// fails with `errno`; counting restarts.
    pub(crate) fn fail_call_at(n: u64, errno: i32) {
        CALL_PLAN.with(|p| p.set(Some((n, errno))));
        CALLS.with(|c| c.set(0));
    }

    /// Stops injecting failures into those calls and returns how many were made since the plan was set.
    pub(crate) fn clear_calls() -> u64 {
        CALL_PLAN.with(|p| p.set(None));
        CALLS.with(|c| c.replace(0))
    }

    pub(super) fn check_call() -> io::Result<()> {
        let n = CALLS.with(|c| {
            let n = c.get();
            c.set(n + 1);
            n
        });
        match CALL_PLAN.with(|p| p.get()) {
            Some((at, errno)) if at == n => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }

    thread_local! {
        static BARRIER_REFUSED: Cell<bool> = const { Cell::new(false) };
    }

    /// From now on (until called with `false`), `process_barrier` on this thread reports that the OS has no
    /// process-wide barrier, as on a kernel without `membarrier` or under a seccomp filter refusing it.
    pub(crate) fn refuse_barrier(refused: bool) {
        BARRIER_REFUSED.with(|b| b.set(refused));
    }

    pub(super) fn barrier_refused() -> bool {
        BARRIER_REFUSED.with(|b| b.get())
    }

    thread_local! {
        static RECOMMIT_PLAN: Cell<Option<(u64, i32)>> = const { Cell::new(None) };
        static RECOMMITS: Cell<u64> = const { Cell::new(0) };
    }

    /// From now on, the `n`th (0-based) recommit on this thread fails with `errno`; counting restarts. Every
    /// `discard` that gets past its own injection point (`fail_call_at`) makes one recommit, and so does every
    /// `recommit`. The failure is injected in place of the OS call: on Windows the decommitted range really
    /// stays uncommitted.
    pub(crate) fn fail_recommit_at(n: u64, errno: i32) {
        RECOMMIT_PLAN.with(|p| p.set(Some((n, errno))));
        RECOMMITS.with(|c| c.set(0));
    }

    /// Stops injecting recommit failures and returns how many recommits were made since the plan was set.
    pub(crate) fn clear_recommits() -> u64 {
        RECOMMIT_PLAN.with(|p| p.set(None));
        RECOMMITS.with(|c| c.replace(0))
    }

    pub(super) fn check_recommit() -> io::Result<()> {
        let n = RECOMMITS.with(|c| {
            let n = c.get();
            c.set(n + 1);
            n
        });
        match RECOMMIT_PLAN.with(|p| p.get()) {
            Some((at, errno)) if at == n => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }

    /// True if every page of `[ptr, ptr + len)` is committed (`VirtualQuery` on Windows; always true on unix,
    /// where a live anonymous mapping is always usable).
    pub(crate) fn committed(ptr: std::ptr::NonNull<u8>, len: usize) -> bool {
        super::imp::committed(ptr, len)
    }

    /// Mappings made minus mappings dropped on this thread since it started.
    pub(crate) fn live() -> i64 {
        LIVE.with(|l| l.get())
    }

    pub(super) fn mapped() {
        LIVE.with(|l| l.set(l.get() + 1));
    }

    pub(crate) fn unmapped() {
        LIVE.with(|l| l.set(l.get() - 1));
    }

    thread_local! {
        static WATCH: std::cell::RefCell<Option<Vec<bool>>> = const { std::cell::RefCell::new(None) };
    }

    /// Starts (`true`) or stops recording, for each mapping dropped on this thread, whether its bytes were all
    /// zero just before the unmap. Returns what was recorded since the last call. Only for mappings without
    /// inaccessible (guard) pages.
    pub(crate) fn watch_unmaps(on: bool) -> Vec<bool> {
        WATCH.with(|w| w.replace(on.then(Vec::new)).unwrap_or_default())
    }

    /// Called by `Mapping::drop` before the unmap.
    pub(crate) fn unmapping(ptr: std::ptr::NonNull<u8>, len: usize) {
        WATCH.with(|w| {
            if let Some(seen) = w.borrow_mut().as_mut() {
                // SAFETY: the mapping is still live and readable (the watcher uses no guard pages), and nobody
                // else refers to it any more: it is being dropped.
                let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
                seen.push(bytes.iter().all(|&b| b == 0));
            }
        });
    }

    /// From now on, the `n`th (0-based) `map` call on this thread fails with `errno`; counting restarts.
    pub(crate) fn fail_map_at(n: u64, errno: i32) {
        MAP_PLAN.with(|p| p.set(Some((n, errno))));
        MAP_CALLS.with(|c| c.set(0));
    }

    /// Stops injecting failures on this thread and returns how many `map` calls were made since the plan was set.
    pub(crate) fn clear() -> u64 {
        MAP_PLAN.with(|p| p.set(None));
        MAP_CALLS.with(|c| c.replace(0))
    }

    pub(super) fn check_map() -> io::Result<()> {
        let n = MAP_CALLS.with(|c| {
            let n = c.get();
            c.set(n + 1);
            n
        });
        match MAP_PLAN.with(|p| p.get()) {
            Some((at, errno)) if at == n => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}
