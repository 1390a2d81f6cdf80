//! `tokio_uring::buf::{IoBuf, IoBufMut}` for [`AlignedBuf`], and `IoBuf` for [`FrozenBuf`] (feature
//! `tokio-uring`).
//!
//! tokio-uring's reads hand the kernel `stable_mut_ptr()` and `bytes_total()` (through its `BoundedBufMut`,
//! offset by a slice's start), then call `set_init(n)` with the bytes the kernel wrote; its writes send
//! `bytes_init()` bytes from `stable_ptr()`.

use crate::{AlignedBuf, FrozenBuf};

// SAFETY: `IoBuf` requires the pointer from `stable_ptr` to stay valid and unchanged while the runtime owns the
// value, even when the value is moved. `AlignedBuf` stores the address of its bytes; the bytes themselves are in
// a pool chunk mapping (or this buffer's own overflow mapping), never inside the handle, so moving the handle
// into an operation and back moves no byte. That mapping stays mapped at the same address for as long as the
// handle lives: the handle owns its slot (released only by its own `Drop`), holds a reference on the pool (chunks
// are unmapped only after the last one goes), owns its overflow mapping outright, and never reallocates (its
// capacity is fixed at acquire). `trim` and idle trimming touch idle slots only. The handle is `Unpin` (no
// self-reference) and `'static` (it borrows nothing), as the trait requires.
//
// Lengths: `bytes_init` is `len()`, the filled bytes (initialised: every byte of a pool buffer is, as its memory
// comes zero-filled from the OS), and `bytes_total` is `capacity()`, the whole mapped buffer, readable and
// writable memory owned by this handle alone; `len() <= capacity()` is the buffer's invariant.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-uring")))]
unsafe impl ::tokio_uring::buf::IoBuf for AlignedBuf {
    #[inline]
    fn stable_ptr(&self) -> *const u8 {
        // The mapping's own pointer (valid for the whole capacity), not one derived from `&self[..len]`.
        AlignedBuf::as_ptr(self)
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.len()
    }

    #[inline]
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: `stable_mut_ptr` returns the same address as `stable_ptr` (the buffer's start, with the mapping's
// provenance over the whole capacity), stable for the reasons given on `IoBuf`; the kernel's writes through it
// stay within `bytes_total` = `capacity()` bytes of the mapping this handle owns exclusively (a slot is held by
// at most one buffer), so they race with no other access. `set_init` follows the trait's contract: the length
// is raised to `pos` only if `pos` is greater, and never past the capacity.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-uring")))]
unsafe impl ::tokio_uring::buf::IoBufMut for AlignedBuf {
    #[inline]
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        AlignedBuf::as_mut_ptr(self)
    }

    /// Raises [`len`](AlignedBuf::len) to `pos` if `pos` is greater (tokio-uring's contract: a high-water mark).
    #[inline]
    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.len() {
            // The caller guarantees bytes `0..pos` are initialised and owned by this buffer, so `pos <=
            // capacity()`; the `min` keeps the length within the mapping even if a caller broke that.
            let pos = pos.min(self.capacity());
            // SAFETY: `pos <= capacity()`, and every byte of the buffer's capacity is initialised memory.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: a `FrozenBuf` is an `Arc` of the `AlignedBuf` and a range of its filled bytes; `stable_ptr` is the start
// of that range, inside the buffer's mapping, which stays at the same address while any handle lives (the
// reasons given on `AlignedBuf`'s impl), however the `FrozenBuf` moves. Its bytes are never written again (it is
// read-only, and the buffer goes home only when the last handle drops), so the kernel reading them while other
// clones read them too is a shared read. `bytes_init` = `bytes_total` = `len()`: the whole view, initialised,
// with nothing for a read to fill (it implements `IoBuf` only). `Unpin` and `'static` like `AlignedBuf`.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-uring")))]
unsafe impl ::tokio_uring::buf::IoBuf for FrozenBuf {
    #[inline]
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.len()
    }

    #[inline]
    fn bytes_total(&self) -> usize {
        self.len()
    }
}
