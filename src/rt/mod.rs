//! Buffer traits of io_uring runtimes for pool buffers (Linux): feature `tokio-uring` implements
//! `tokio_uring::buf::{IoBuf, IoBufMut}`, feature `monoio` implements `monoio::buf::{IoBuf, IoBufMut}`, both for
//! [`AlignedBuf`](crate::AlignedBuf) and (read-only) [`FrozenBuf`](crate::FrozenBuf).
//!
//! Both runtimes take a buffer by value for the length of an operation and hand the kernel the pointer the
//! buffer reports, so the traits are `unsafe` to implement: that pointer must stay valid and unchanged while the
//! runtime owns the value, even as the value moves. A pool buffer holds the address of its bytes, not the bytes:
//! they live in one of the pool's chunk mappings (or in the buffer's own overflow mapping), which no move of the
//! handle, and no acquire, release or trim of another buffer, relocates, and which stays mapped at least until
//! the handle drops (it holds a reference on the pool). See each impl's `SAFETY` comment.
//!
//! The two traits differ in one contract: tokio-uring's `set_init(pos)` only raises the initialised length
//! (a high-water mark, like `Vec`'s impl), monoio's sets it to `pos`. So after a read of `n` bytes at the start
//! of a buffer, monoio leaves `len() == n`, while tokio-uring leaves `len() == max(len(), n)`: call
//! [`clear`](crate::AlignedBuf::clear) before a tokio-uring read (a buffer comes full from `acquire`) to get
//! `len() == n`.
//!
//! Method resolution: with `tokio_uring::buf::BoundedBuf` or `monoio::buf::IoBuf` in scope, `frozen.slice(r)`
//! on a [`FrozenBuf`](crate::FrozenBuf) resolves to the runtime trait's by-value `slice` (a runtime `Slice`
//! that consumes the handle), not to `FrozenBuf::slice(&self, r)`; call `FrozenBuf::slice(&frozen, r)` to get
//! a sub-handle (found by review; `bytes::Bytes` behaves the same).
//!
//! Cancellation: a dropped operation's buffer is kept by the runtime until the kernel completes it (tested in
//! tests/runtimes.rs). Runtime teardown with operations in flight is the runtimes' business and not safe for
//! any buffer type (monoio 0.2.4 drops the buffers without waiting; tokio-uring 0.5.0 drops them before its
//! cancellations complete): the crate docs tell users to finish their operations first.

#[cfg(feature = "monoio")]
mod monoio;
#[cfg(feature = "tokio-uring")]
mod tokio_uring;
