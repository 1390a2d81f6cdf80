//! The portable facade over the operating system's virtual memory calls.
//!
//! Everything above this module is portable and never calls the OS itself. The facade is small on purpose:
//!
//! | function | unix | elsewhere |
//! |---|---|---|
//! | [`page_size`] | `sysconf(_SC_PAGESIZE)` | 4096 |
//! | [`map`] | anonymous private `mmap` through memmap2 (`MAP_POPULATE` when asked) | `Unsupported` |
//! | drop of [`Mapping`] | `munmap` of the whole reservation | - |
//!
//! A [`Mapping`] owns its reservation: dropping it returns the pages to the OS. Alignments above the page size
//! are honoured by reserving `len + align - page` bytes and handing out the aligned interior; the slack is
//! address space only (never touched, so it costs no RSS) and is released with the rest.
//!
//! In unit tests, [`fault`] can make the Nth `map` call on the current thread fail with a chosen errno, so every
//! error path above this layer is exercised against real mappings.

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(not(unix), path = "other.rs")]
mod imp;

pub(crate) use imp::Mapping;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

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

/// Maps `len` bytes of zeroed, readable and writable anonymous memory whose start is aligned to `align`.
///
/// `len` must be a non-zero multiple of the page size and `align` a power of two at least the page size; the
/// callers validate both (see `config.rs`). With `populate`, every page is faulted in before returning.
pub(crate) fn map(len: usize, align: usize, populate: bool) -> io::Result<Mapping> {
    debug_assert!(len > 0 && len % page_size() == 0);
    debug_assert!(align.is_power_of_two() && align >= page_size());
    #[cfg(all(test, not(loom)))]
    fault::check_map()?;
    let slack = align - page_size();
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
