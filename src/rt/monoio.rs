//! `monoio::buf::{IoBuf, IoBufMut}` for [`AlignedBuf`] (feature `monoio`).
//!
//! monoio's read operations hand the kernel `write_ptr()` and `bytes_total()`, then call `set_init(n)` with the
//! bytes the kernel wrote; its writes send `bytes_init()` bytes from `read_ptr()`.

use crate::AlignedBuf;

// SAFETY: `IoBuf` requires `read_ptr` to return the same valid address while the runtime owns the value (monoio
// pins it in a box, but the guarantee here does not depend on that). `AlignedBuf` stores the address of its
// bytes; the bytes are in a pool chunk mapping (or this buffer's own overflow mapping), never inside the
// handle, so moving the handle moves no byte. The mapping stays at that address for as long as the handle
// lives: the handle owns its slot (released only by its own `Drop`), holds a reference on the pool (chunks are
// unmapped only after the last one goes), owns its overflow mapping outright, and never reallocates. `trim`
// and idle trimming touch idle slots only. The handle is `Unpin` and `'static`.
//
// Length: `bytes_init` is `len()`, every byte of which is initialised memory of this buffer.
#[cfg_attr(docsrs, doc(cfg(feature = "monoio")))]
unsafe impl ::monoio::buf::IoBuf for AlignedBuf {
    #[inline]
    fn read_ptr(&self) -> *const u8 {
        self.as_ptr()
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: `write_ptr` returns the buffer's start, stable for the reasons given on `IoBuf`; writes through it up to
// `bytes_total` stay inside the mapping this handle owns exclusively (a slot is held by at most one buffer), so
// the kernel's writes race with no other access.
#[cfg_attr(docsrs, doc(cfg(feature = "monoio")))]
unsafe impl ::monoio::buf::IoBufMut for AlignedBuf {
    #[inline]
    fn write_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }

    #[inline]
    fn bytes_total(&mut self) -> usize {
        self.len()
    }

    /// monoio's contract: `pos` becomes the new `bytes_init`, whether above or below it.
    #[inline]
    unsafe fn set_init(&mut self, _pos: usize) {
        // A fixed-size buffer: every byte is initialised already.
    }
}
