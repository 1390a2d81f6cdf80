//! Windows backend: `VirtualAlloc` / `VirtualFree` on private memory, `GetSystemInfo` for the page size and the
//! allocation granularity.
//!
//! Every [`Mapping`] is one `VirtualAlloc` reservation of its own, released whole with
//! `VirtualFree(base, 0, MEM_RELEASE)` when dropped (Windows cannot release part of a reservation):
//!
//! - `align <= ` granularity (64 KiB on every Windows so far, page size 4 KiB): reservation bases are always
//!   granularity-aligned, so one `VirtualAlloc(MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)` of exactly `len` bytes
//!   does it; the facade passes `reserve == len`.
//! - larger alignments: `VirtualAlloc(MEM_RESERVE, PAGE_NOACCESS)` of `len + align - granularity` bytes, then
//!   `VirtualAlloc(MEM_COMMIT, PAGE_READWRITE)` of the aligned interior only. The slack stays reserved but
//!   uncommitted: address space, no commit charge, no memory.
//!
//! Committed pages are charged against the system commit limit at once but get physical memory only when first
//! touched (they read as zero), so `populate` touches one byte per page.
//!
//! The memory options: [`lock`] is `VirtualLock`; trimming (`sys::discard`) is [`decommit`]
//! (`VirtualFree(MEM_DECOMMIT)`) of the range then [`commit`] (`VirtualAlloc(MEM_COMMIT)`) of it again, so the
//! pages go but the freelist keeps naming committed memory. The recommit can fail under commit pressure; the
//! facade then reports the range as uncommitted and the pool keeps it out of the freelist until a later
//! `commit` succeeds (`uncommitted.rs`);
//! [`protect_none`] (guard pages) is `VirtualProtect(PAGE_NOACCESS)`. The `madvise` hints have no Windows
//! equivalent: [`supports`] says no, and the builder refuses them with `ConfigError::Unsupported`.

use std::io;
use std::ptr::{self, NonNull};

use windows_sys::Win32::System::Memory::{
    VirtualAlloc, VirtualFree, VirtualLock, VirtualProtect, MEM_COMMIT, MEM_DECOMMIT, MEM_RELEASE,
    MEM_RESERVE, PAGE_NOACCESS, PAGE_PROTECTION_FLAGS, PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

fn system_info() -> SYSTEM_INFO {
    let mut info = SYSTEM_INFO::default();
    // SAFETY: GetSystemInfo only writes the SYSTEM_INFO it is given, which is a valid, exclusively borrowed
    // struct of the right type; it cannot fail.
    unsafe { GetSystemInfo(&mut info) };
    info
}

pub(crate) fn page_size() -> usize {
    match system_info().dwPageSize as usize {
        0 => 4096,
        size => size,
    }
}

/// The alignment and size granule of `VirtualAlloc` reservations (64 KiB on every Windows so far).
pub(crate) fn allocation_granularity() -> usize {
    match system_info().dwAllocationGranularity as usize {
        g if g.is_power_of_two() => g,
        _ => 64 << 10,
    }
}

/// One `VirtualAlloc` reservation, released whole when dropped.
pub(crate) struct Mapping {
    /// Base of the reservation, as `VirtualAlloc(MEM_RESERVE)` returned it: what `MEM_RELEASE` needs.
    base: NonNull<u8>,
    /// Start of the aligned, committed interior.
    ptr: NonNull<u8>,
    /// Usable (committed) bytes from `ptr`.
    len: usize,
    /// Bytes reserved from the OS (`len` plus alignment slack).
    reserved: usize,
}

// SAFETY: a Mapping is the unique owner of its reservation (nothing else frees it), and the pointers are only
// addresses inside it; VirtualFree may be called from any thread of the process.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only expose the addresses and lengths.
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
        #[cfg(all(test, not(loom)))]
        super::fault::unmapping(self.ptr, self.len);
        release(self.base);
        #[cfg(all(test, not(loom)))]
        super::fault::unmapped();
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

/// Releases the whole reservation starting at `base`.
fn release(base: NonNull<u8>) {
    // SAFETY: `base` is the base address `VirtualAlloc(MEM_RESERVE)` returned for a reservation that we own and
    // release exactly once (from Mapping's drop, or on the error path of `map` before any Mapping exists). Size 0
    // with MEM_RELEASE frees the whole reservation, committed or not.
    let ok = unsafe { VirtualFree(base.as_ptr().cast(), 0, MEM_RELEASE) };
    // Nothing sensible can be done about a failure in drop; it would mean `base` is not a reservation base.
    debug_assert!(ok != 0, "VirtualFree: {}", io::Error::last_os_error());
}

pub(crate) fn map(reserve: usize, len: usize, align: usize, populate: bool) -> io::Result<Mapping> {
    let (base, ptr) = if reserve == len {
        // SAFETY: a null address asks the OS to choose where; no existing memory is affected.
        let p = unsafe { VirtualAlloc(ptr::null(), len, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE) };
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        if base.as_ptr().align_offset(align) != 0 {
            release(base);
            return Err(io::Error::other(
                "VirtualAlloc returned memory that is not aligned",
            ));
        }
        (base, base)
    } else {
        // SAFETY: as above; this only reserves address space.
        let p = unsafe { VirtualAlloc(ptr::null(), reserve, MEM_RESERVE, PAGE_NOACCESS) };
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let offset = base.as_ptr().align_offset(align);
        if offset == usize::MAX || offset + len > reserve {
            release(base);
            return Err(io::Error::other(
                "VirtualAlloc returned memory that cannot be aligned",
            ));
        }
        // SAFETY: offset + len <= reserve, so the pointer stays inside the reservation.
        let interior = unsafe { base.as_ptr().add(offset) };
        // SAFETY: [interior, interior + len) lies inside our own reservation, which nothing else uses yet;
        // committing it changes no memory anyone can observe.
        let p = unsafe { VirtualAlloc(interior.cast(), len, MEM_COMMIT, PAGE_READWRITE) };
        if p.is_null() {
            let e = io::Error::last_os_error();
            release(base);
            return Err(e);
        }
        // SAFETY: `interior` is derived from the non-null `base` by an in-bounds offset.
        (base, unsafe { NonNull::new_unchecked(interior) })
    };
    if populate {
        touch(ptr, len);
    }
    Ok(Mapping {
        base,
        ptr,
        len,
        reserved: reserve,
    })
}

/// Explicit huge pages (`MEM_LARGE_PAGES`) need `SeLockMemoryPrivilege`; not offered on Windows.
pub(crate) fn map_hugetlb(_len: usize, _populate: bool) -> io::Result<Mapping> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "explicit huge pages are not supported on Windows",
    ))
}

/// None of the advice has a Windows equivalent (no core-dump exclusion, no fork, no transparent huge pages).
pub(crate) fn supports(_advice: super::Advice) -> bool {
    false
}

pub(crate) fn advise(_ptr: NonNull<u8>, _len: usize, advice: super::Advice) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{advice:?} has no Windows equivalent"),
    ))
}

/// `MEM_DECOMMIT` of the range: its pages go back to the OS and it is reserved but not committed (any access
/// faults) until [`commit`] succeeds.
pub(crate) fn decommit(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the page-aligned range, which lies inside our own reservation, and nobody reads it
    // until it is handed out again (and it is not handed out before `commit` succeeds). Decommitting frees its
    // pages.
    if unsafe { VirtualFree(ptr.as_ptr().cast(), len, MEM_DECOMMIT) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `MEM_COMMIT` of the range, read-write: it can fail under commit pressure (`ERROR_COMMITMENT_LIMIT`), and then
/// the range stays uncommitted. Committing pages that are committed already is allowed and changes nothing.
pub(crate) fn commit(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the range lies inside our own reservation and nobody reads it meanwhile; committing it again makes
    // it usable. Fresh commits read as zeros and take no memory until touched.
    let p = unsafe { VirtualAlloc(ptr.as_ptr().cast(), len, MEM_COMMIT, PAGE_READWRITE) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True if every page of `[ptr, ptr + len)` is committed (`VirtualQuery`), so the tests can see what a failed
/// recommit leaves behind.
#[cfg(all(test, not(loom)))]
pub(crate) fn committed(ptr: NonNull<u8>, len: usize) -> bool {
    use windows_sys::Win32::System::Memory::{VirtualQuery, MEMORY_BASIC_INFORMATION};
    let (mut addr, end) = (ptr.as_ptr() as usize, ptr.as_ptr() as usize + len);
    while addr < end {
        let mut mbi = MEMORY_BASIC_INFORMATION::default();
        let size = std::mem::size_of::<MEMORY_BASIC_INFORMATION>();
        // SAFETY: VirtualQuery only reads the process's page tables and writes at most `size` bytes to `mbi`,
        // which is exclusively borrowed; any address is a valid query.
        if unsafe { VirtualQuery(addr as *const _, &mut mbi, size) } != size
            || mbi.State != MEM_COMMIT
        {
            return false;
        }
        match (mbi.BaseAddress as usize).checked_add(mbi.RegionSize) {
            Some(next) if next > addr => addr = next,
            _ => return false,
        }
    }
    true
}

pub(crate) fn lock(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the range is committed memory of a reservation the caller owns; VirtualLock changes residency only.
    if unsafe { VirtualLock(ptr.as_ptr().cast(), len) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn protect_none(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    let mut old: PAGE_PROTECTION_FLAGS = 0;
    // SAFETY: the range is committed memory of a reservation the caller owns and never hands out (guard pages);
    // `old` is a valid place for the previous protection.
    if unsafe { VirtualProtect(ptr.as_ptr().cast(), len, PAGE_NOACCESS, &mut old) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Windows bounds locked pages by the process working-set size, known only when `VirtualLock` fails.
pub(crate) fn memlock_limit() -> Option<usize> {
    None
}

pub(crate) fn lock_exempt() -> bool {
    false
}

/// See `sys::process_barrier_ready`: `FlushProcessWriteBuffers` needs no registration.
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier_ready() -> bool {
    true
}

/// See `sys::process_barrier`.
// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier() -> bool {
    // SAFETY: takes no arguments and cannot fail; it only interrupts the process's running threads.
    unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
    true
}

pub(crate) fn max_map_count() -> Option<usize> {
    None
}

/// Faults in every page of `[ptr, ptr + len)` by writing a zero to it (the memory is fresh and already zero).
pub(crate) fn touch(ptr: NonNull<u8>, len: usize) {
    let page = super::page_size();
    let mut off = 0;
    while off < len {
        // SAFETY: off < len and the range is committed read-write memory we exclusively own and have not handed
        // out yet.
        unsafe { ptr.as_ptr().add(off).write_volatile(0) };
        off += page;
    }
}
