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
//!
//! A [`Mapping`] owns its reservation: dropping it returns the pages to the OS. Every reservation starts on an
//! allocation-granularity boundary, so alignments up to the granularity cost nothing; larger ones are honoured
//! by reserving `len + align - granularity` bytes and handing out the aligned interior. The slack is address
//! space only (never touched, and on Windows never committed, so it costs no RSS or commit charge) and is
//! released with the rest.
//!
//! In unit tests, [`fault`] can make the Nth `map` call on the current thread fail with a chosen errno (a Windows
//! error code on Windows), so every error path above this layer is exercised against real mappings.

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
#[cfg_attr(not(any(unix, windows)), path = "other.rs")]
mod imp;

pub(crate) use imp::Mapping;

pub(crate) mod dio;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
#[cfg(windows)]
static GRANULARITY: AtomicUsize = AtomicUsize::new(0);

/// The OS page size in bytes (cached after the first call).
pub(crate) fn page_size() -> usize {
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
    let m = imp::map(reserve, len, align, populate)?;
    #[cfg(all(test, not(loom)))]
    fault::mapped();
    Ok(m)
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

#[cfg(pagepool_asan)]
mod asan {
    extern "C" {
        pub(super) fn __asan_poison_memory_region(addr: *const std::ffi::c_void, size: usize);
        pub(super) fn __asan_unpoison_memory_region(addr: *const std::ffi::c_void, size: usize);
    }
}

/// Test-only fault injection: fail the Nth `map` call made on this thread.
#[cfg(all(test, not(loom)))]
pub(crate) mod fault {
    use std::cell::Cell;
    use std::io;

    thread_local! {
        static MAP_PLAN: Cell<Option<(u64, i32)>> = const { Cell::new(None) };
        static MAP_CALLS: Cell<u64> = const { Cell::new(0) };
        static LIVE: Cell<i64> = const { Cell::new(0) };
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
