//! `tokio_uring::buf::{IoBuf, IoBufMut}` for [`AlignedBuf`] (feature `tokio-uring`).
//!
//! tokio-uring's read operations hand the kernel `stable_mut_ptr()` and `bytes_total()`, then call
//! `set_init(n)` with the bytes the kernel wrote; its writes send `bytes_init()` bytes from `stable_ptr()`.

use crate::AlignedBuf;

// SAFETY: `IoBuf` requires the pointer from `stable_ptr` to stay valid and unchanged while the runtime owns the
// value, even when the value is moved. `AlignedBuf` stores the address of its bytes; the bytes themselves are in
// a pool chunk mapping (or this buffer's own overflow mapping), never inside the handle, so moving the handle
// into an operation and back moves no byte. That mapping stays mapped at the same address for as long as the
// handle lives: the handle owns its slot (released only by its own `Drop`), holds a reference on the pool (chunks
// are unmapped only after the last one goes), owns its overflow mapping outright, and never reallocates (its
// capacity is fixed at acquire). `trim` and idle trimming touch idle slots only. The handle is `Unpin` (no
// self-reference) and `'static` (it borrows nothing), as the trait requires.
//
// Lengths: `bytes_init` is `len()`, the bytes of the buffer the caller has written or a read filled, and
// `bytes_total` is the whole mapped buffer, every byte of which is readable and writable memory owned by this
// handle alone; `bytes_init <= bytes_total` always.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-uring")))]
unsafe impl ::tokio_uring::buf::IoBuf for AlignedBuf {
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

// SAFETY: `stable_mut_ptr` returns the same address as `stable_ptr` (the buffer's start), stable for the reasons
// given on `IoBuf`; writes through it up to `bytes_total` stay inside the mapping this handle owns exclusively
// (a slot is held by at most one buffer), so the kernel's writes race with no other access.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-uring")))]
unsafe impl ::tokio_uring::buf::IoBufMut for AlignedBuf {
    #[inline]
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }

    /// tokio-uring's contract: `pos` becomes the new `bytes_init` only if it is greater (a high-water mark).
    #[inline]
    unsafe fn set_init(&mut self, _pos: usize) {
        // A fixed-size buffer: every byte is initialised already.
    }
}
