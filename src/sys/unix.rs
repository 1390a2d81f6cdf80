//! unix backend: memmap2 anonymous mappings, `sysconf` for the page size.

use std::io;
use std::ptr::NonNull;

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always a valid name.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// One anonymous mapping, unmapped when dropped.
pub(crate) struct Mapping {
    /// Owns the whole reservation (aligned interior plus alignment slack); its drop calls `munmap`.
    _map: memmap2::MmapMut,
    /// Start of the aligned interior.
    ptr: NonNull<u8>,
    /// Usable bytes from `ptr`.
    len: usize,
    /// Bytes reserved from the OS (`len` plus alignment slack).
    reserved: usize,
    /// Bytes from the start of the reservation to `ptr`.
    offset: usize,
}

// SAFETY: a Mapping is a unique owner of its pages, like memmap2::MmapMut (which is Send + Sync); the cached
// pointer is only an address inside that mapping.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only expose the address and lengths.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // The munmap itself is done by memmap2's drop of `_map`, right after this. Clear any ASan poison first,
        // so a later mapping at the same address starts clean.
        let base = self.ptr.as_ptr().wrapping_sub(self.offset);
        super::unpoison(base, self.reserved);
        #[cfg(all(test, not(loom)))]
        {
            super::fault::unmapping(self.ptr, self.len);
            super::fault::unmapped();
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("reserved", &self.reserved)
            .finish()
    }
}

pub(crate) fn map(reserve: usize, len: usize, align: usize, populate: bool) -> io::Result<Mapping> {
    let mut opts = memmap2::MmapOptions::new();
    opts.len(reserve);
    // MAP_POPULATE is only worth it when there is no slack to fault in for nothing.
    if populate && reserve == len {
        opts.populate();
    }
    let mut map = opts.map_anon()?;
    let base = map.as_mut_ptr();
    let offset = base.align_offset(align);
    if offset == usize::MAX || offset + len > reserve {
        return Err(io::Error::other(
            "mmap returned memory that cannot be aligned",
        ));
    }
    // SAFETY: offset + len <= reserve, so the pointer stays inside the mapping.
    let ptr = unsafe { base.add(offset) };
    let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))?;
    if populate && (reserve != len || !cfg!(target_os = "linux")) {
        touch(ptr, len);
    }
    Ok(Mapping {
        _map: map,
        ptr,
        len,
        reserved: reserve,
        offset,
    })
}

/// Maps `len` bytes (a multiple of the huge page size) backed by explicit huge pages (`MAP_HUGETLB`).
#[cfg(target_os = "linux")]
pub(crate) fn map_hugetlb(len: usize, populate: bool) -> io::Result<Mapping> {
    let mut opts = memmap2::MmapOptions::new();
    opts.len(len).huge(None);
    if populate {
        opts.populate();
    }
    let mut map = opts.map_anon()?;
    let ptr =
        NonNull::new(map.as_mut_ptr()).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(Mapping {
        _map: map,
        ptr,
        len,
        reserved: len,
        offset: 0,
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn map_hugetlb(_len: usize, _populate: bool) -> io::Result<Mapping> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "explicit huge pages (MAP_HUGETLB) are Linux-only",
    ))
}

pub(crate) fn supports(advice: super::Advice) -> bool {
    let _ = advice;
    cfg!(target_os = "linux")
}

pub(crate) fn advise(ptr: NonNull<u8>, len: usize, advice: super::Advice) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use super::Advice::*;
        let flag = match advice {
            DontDump => libc::MADV_DONTDUMP,
            DontFork => libc::MADV_DONTFORK,
            WipeOnFork => libc::MADV_WIPEONFORK,
            HugePage => libc::MADV_HUGEPAGE,
        };
        // SAFETY: the caller passes a page-aligned range inside a live mapping it owns; these advice values only
        // change how the kernel treats the range (dumps, fork, huge pages), never its contents.
        check(unsafe { libc::madvise(ptr.as_ptr().cast(), len, flag) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{advice:?} is Linux-only"),
        ))
    }
}

pub(crate) fn decommit(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the page-aligned range inside a live private anonymous mapping and nobody reads it
    // until it is handed out again; MADV_DONTNEED drops its pages, which then read back as zeros.
    check(unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) })
}

/// Nothing to do: a private anonymous mapping stays usable after `MADV_DONTNEED` (the next touch faults in a
/// zeroed page), so the range is committed already.
pub(crate) fn commit(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Ok(())
}

/// Always true: pages of a live private anonymous mapping are usable whatever `madvise` did to them.
#[cfg(all(test, not(loom)))]
pub(crate) fn committed(_ptr: NonNull<u8>, _len: usize) -> bool {
    true
}

pub(crate) fn lock(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the range lies inside a live mapping the caller owns; mlock changes residency only.
    check(unsafe { libc::mlock(ptr.as_ptr().cast(), len) })
}

pub(crate) fn protect_none(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the page-aligned range lies inside a live mapping the caller owns and never hands out (guard
    // pages); no reference to it exists.
    check(unsafe { libc::mprotect(ptr.as_ptr().cast(), len, libc::PROT_NONE) })
}

pub(crate) fn memlock_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the rlimit struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    usize::try_from(lim.rlim_cur).ok()
}

pub(crate) fn lock_exempt() -> bool {
    // CAP_IPC_LOCK is capability 14; the status file gives the effective set as hex. Capabilities are per
    // thread, and mlock checks the calling thread's: read this thread's (Linux 3.17+), else the process's.
    #[cfg(target_os = "linux")]
    {
        const CAP_IPC_LOCK: u32 = 14;
        std::fs::read_to_string("/proc/thread-self/status")
            .or_else(|_| std::fs::read_to_string("/proc/self/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

// From linux/membarrier.h (libc does not export them on every target).
#[cfg(target_os = "linux")]
#[cfg_attr(loom, allow(dead_code))]
const MEMBARRIER_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(target_os = "linux")]
#[cfg_attr(loom, allow(dead_code))]
const MEMBARRIER_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// See `sys::process_barrier_ready`: registers this process for `MEMBARRIER_CMD_PRIVATE_EXPEDITED` once.
#[cfg(target_os = "linux")]
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier_ready() -> bool {
    // 0: not registered yet; 1: registered; 2: refused. An atomic of our own rather than a `OnceLock`: std is
    // precompiled, and ThreadSanitizer cannot see its `Once` order the value it publishes. Registering twice (two
    // threads racing the first call) is harmless: the command is idempotent, and both see the same outcome.
    use std::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Acquire) {
        0 => {
            // SAFETY: membarrier takes integer arguments only and touches no memory of ours.
            let ok = unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    MEMBARRIER_REGISTER_PRIVATE_EXPEDITED,
                    0,
                    0,
                )
            } == 0;
            STATE.store(if ok { 1 } else { 2 }, Ordering::Release);
            ok
        }
        s => s == 1,
    }
}

/// See `sys::process_barrier`.
#[cfg(target_os = "linux")]
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier() -> bool {
    // SAFETY: as in `process_barrier_ready`; the registration this command requires succeeded.
    process_barrier_ready()
        && unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_PRIVATE_EXPEDITED, 0, 0) } == 0
}

/// See `sys::process_barrier_ready`: no such call on this platform.
#[cfg(not(target_os = "linux"))]
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier_ready() -> bool {
    false
}

/// See `sys::process_barrier`: no such call on this platform.
#[cfg(not(target_os = "linux"))]
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier() -> bool {
    false
}

pub(crate) fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Faults in every page of `[ptr, ptr + len)` by writing a zero to it (the memory is fresh and already zero).
pub(crate) fn touch(ptr: NonNull<u8>, len: usize) {
    let page = super::page_size();
    let mut off = 0;
    while off < len {
        // SAFETY: off < len and the range lies inside a mapping we exclusively own and have not handed out.
        unsafe { ptr.as_ptr().add(off).write_volatile(0) };
        off += page;
    }
}
