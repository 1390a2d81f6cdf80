//! Buffer traits of io_uring runtimes for pool buffers (Linux): feature `tokio-uring` implements
//! `tokio_uring::buf::{IoBuf, IoBufMut}`, feature `monoio` implements `monoio::buf::{IoBuf, IoBufMut}`.
//!
//! Both runtimes take a buffer by value for the length of an operation and hand the kernel the pointer the
//! buffer reports, so the traits are `unsafe` to implement: that pointer must stay valid and unchanged while the
//! runtime owns the value, even as the value moves. An [`AlignedBuf`](crate::AlignedBuf) holds the address of
//! its bytes, not the bytes: they live in one of the pool's chunk mappings (or in the buffer's own overflow
//! mapping), which no handle move, acquire, release or trim of another buffer relocates, and which stays mapped
//! at least until this handle drops (it holds a reference on the pool). See each impl's `SAFETY` comment.

#[cfg(feature = "monoio")]
mod monoio;
#[cfg(feature = "tokio-uring")]
mod tokio_uring;
