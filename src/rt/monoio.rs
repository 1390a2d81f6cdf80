//! `monoio::buf::{IoBuf, IoBufMut}` for [`AlignedBuf`], and `IoBuf` for [`FrozenBuf`] (feature `monoio`).
//!
//! monoio's reads hand the kernel `write_ptr()` and `bytes_total()` (offset by a `SliceMut`'s start), then call
//! `set_init(n)` with the bytes the kernel wrote; its writes send `bytes_init()` bytes from `read_ptr()`.

use crate::{AlignedBuf, FrozenBuf};

// SAFETY: `IoBuf` requires `read_ptr` to return the same valid address while the runtime owns the value (monoio
// pins it in a box, but the guarantee here does not depend on that). `AlignedBuf` stores the address of its
// bytes; the bytes are in a pool chunk mapping (or this buffer's own overflow mapping), never inside the
// handle, so moving the handle moves no byte. The mapping stays at that address for as long as the handle
// lives: the handle owns its slot (released only by its own `Drop`), holds a reference on the pool (chunks are
// unmapped only after the last one goes), owns its overflow mapping outright, and never reallocates (its
// capacity is fixed at acquire). `trim` and idle trimming touch idle slots only. The handle is `Unpin` (no
// self-reference) and `'static` (it borrows nothing).
//
// Length: `bytes_init` is `len()`, the filled bytes, all initialised (every byte of a pool buffer is: its memory
// comes zero-filled from the OS) and within the mapping (`len() <= capacity()`).
#[cfg_attr(docsrs, doc(cfg(feature = "monoio")))]
unsafe impl ::monoio::buf::IoBuf for AlignedBuf {
    #[inline]
    fn read_ptr(&self) -> *const u8 {
        // The mapping's own pointer (valid for the whole capacity), not one derived from `&self[..len]`.
        AlignedBuf::as_ptr(self)
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: `write_ptr` returns the buffer's start with the mapping's provenance over the whole capacity, stable
// for the reasons given on `IoBuf`; `bytes_total` is `capacity()`, so the kernel's writes stay inside the mapping
// this handle owns exclusively (a slot is held by at most one buffer) and race with no other access. `set_init`
// follows the trait's contract: the length becomes `pos`, never past the capacity.
#[cfg_attr(docsrs, doc(cfg(feature = "monoio")))]
unsafe impl ::monoio::buf::IoBufMut for AlignedBuf {
    #[inline]
    fn write_ptr(&mut self) -> *mut u8 {
        AlignedBuf::as_mut_ptr(self)
    }

    #[inline]
    fn bytes_total(&mut self) -> usize {
        self.capacity()
    }

    /// Sets [`len`](AlignedBuf::len) to `pos`, above or below it (monoio's contract).
    #[inline]
    unsafe fn set_init(&mut self, pos: usize) {
        // The caller guarantees bytes `0..pos` are initialised and owned by this buffer, so `pos <= capacity()`;
        // the `min` keeps the length within the mapping even if a caller broke that.
        let pos = pos.min(self.capacity());
        // SAFETY: `pos <= capacity()`, and every byte of the buffer's capacity is initialised memory.
        unsafe { self.set_len(pos) };
    }
}

// SAFETY: a `FrozenBuf` is an `Arc` of the `AlignedBuf` and a range of its filled bytes; `read_ptr` is the start
// of that range, inside the buffer's mapping, which stays at the same address while any handle lives (the
// reasons given on `AlignedBuf`'s impl), however the `FrozenBuf` moves. Its bytes are never written again (it is
// read-only, and the buffer goes home only when the last handle drops), so the kernel reading them while other
// clones read them too is a shared read. `bytes_init` is `len()`, the whole view, initialised. It implements
// `IoBuf` only: nothing may write into it. `Unpin` and `'static` like `AlignedBuf`.
#[cfg_attr(docsrs, doc(cfg(feature = "monoio")))]
unsafe impl ::monoio::buf::IoBuf for FrozenBuf {
    #[inline]
    fn read_ptr(&self) -> *const u8 {
        self.as_ptr()
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.len()
    }
}
