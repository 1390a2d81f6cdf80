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
    pub(crate) fn len(&self) -> usize {
        self.len
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

/// Faults in every page of `[ptr, ptr + len)` by writing a zero to it (the memory is fresh and already zero).
fn touch(ptr: NonNull<u8>, len: usize) {
    let page = super::page_size();
    let mut off = 0;
    while off < len {
        // SAFETY: off < len and the range lies inside a mapping we exclusively own and have not handed out.
        unsafe { ptr.as_ptr().add(off).write_volatile(0) };
        off += page;
    }
}
