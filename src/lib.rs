//! Page-aligned buffers straight from the OS, pooled, for O_DIRECT I/O and secret scratch space.
//!
//! Taking page-aligned buffers from the malloc heap (`posix_memalign`, or Rust's `System` allocator with an
//! over-aligned `Layout`) fragments glibc's heap: every aligned request carves `size + align + MINSIZE` out of
//! a larger chunk and frees the slack, small long-lived objects settle into that slack, and RSS climbs to
//! several times the live bytes until the process is killed (a production database hit exactly this).
//! `pagepool` never puts these buffers on the malloc heap: it maps page-granular memory from the OS in large
//! chunks, hands out slots through a lock-free freelist of indices, and when the pool is exhausted maps and
//! unmaps overflow buffers directly, so nothing can fragment.
//!
//! ```
//! use pagepool::{AlignedBuf, OverflowPolicy, PagePool};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = PagePool::builder()
//!     .buf_size(8192)                 // a non-zero multiple of pagepool::page_size()
//!     .capacity(1024)                 // pooled buffers, mapped in chunks on demand
//!     .overflow(OverflowPolicy::Map)  // past capacity: map/unmap pages directly
//!     .build()?;
//! let mut buf: AlignedBuf = pool.acquire()?;
//! buf[..4].copy_from_slice(b"page");
//! assert_eq!(buf.as_ptr() as usize % pagepool::page_size(), 0);
//! drop(buf);                          // back on the freelist: one push, no system call
//! assert_eq!(pool.stats().in_use, 0);
//! # Ok(()) }
//! ```
//!
//! For O_DIRECT, [`dio::requirements`] asks the kernel what alignment a file needs and
//! [`PoolBuilder::for_direct_io`] builds a pool whose every buffer meets it; with the `io-uring` feature (Linux),
//! `PagePool::iovecs` and `AlignedBuf::index` register the pool's buffers with io_uring.
//!
//! A buffer's [`len`](AlignedBuf::len) is the bytes filled (what it dereferences to) and its
//! [`capacity`](AlignedBuf::capacity) the bytes mapped; it comes full from `acquire`, shortens with
//! [`truncate`](AlignedBuf::truncate), appends through [`std::io::Write`] after [`clear`](AlignedBuf::clear), and
//! [`freeze`](AlignedBuf::freeze) shares it read-only as a cheap-to-clone [`FrozenBuf`]. Cargo features: `async`
//! (`PagePool::acquire_async`), `io-uring` (registered buffers, Linux), `bytes` (`bytes::BufMut` for
//! `AlignedBuf`, `bytes::Bytes` from a `FrozenBuf` without copying), `zeroize` (`zeroize::Zeroize` for
//! `AlignedBuf`), `tokio-uring` and `monoio` (their `IoBuf`/`IoBufMut` buffer traits, Linux; see below).
//!
//! # io_uring runtimes
//!
//! With the `tokio-uring` feature (Linux) an [`AlignedBuf`] is a `tokio_uring::buf::IoBuf` and `IoBufMut`, and
//! with the `monoio` feature a `monoio::buf::IoBuf` and `IoBufMut`: pass pool buffers by value to the runtime's
//! reads and writes, get them back with the result, and drop them to return them to the pool. The runtime may
//! move the buffer while the kernel uses it; the bytes never move (they live in the pool's mappings, not in the
//! handle). A buffer whose operation is cancelled (its future dropped) stays with the runtime until the kernel
//! is done with it. Do not drop the runtime itself with operations in flight: per their source, monoio 0.2.4
//! drops such buffers at teardown without waiting for the kernel, and tokio-uring 0.5.0 drops them before its
//! cancellations complete, so a buffer could go back to the pool, and to its next holder, while the kernel may
//! still write into it (the same applies to any buffer type, a `Vec`'s memory back in the allocator).
//!
//! ```no_run
//! # #[cfg(all(target_os = "linux", feature = "tokio-uring"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::os::unix::fs::OpenOptionsExt;
//! let std_file = std::fs::File::open("data.bin")?;
//! let pool = pagepool::PagePool::builder()
//!     .buf_size(256 << 10)
//!     .capacity(8)
//!     .for_direct_io(&std_file)?
//!     .build()?;
//! tokio_uring::start(async {
//!     let file = tokio_uring::fs::OpenOptions::new()
//!         .read(true)
//!         .custom_flags(libc::O_DIRECT)
//!         .open("data.bin")
//!         .await?;
//!     let buf = pool.acquire()?;
//!     let (res, buf) = file.read_at(buf, 0).await; // the runtime owns `buf` while the kernel fills it
//!     let n = res?;
//!     println!("{n} bytes: {:?}", &buf[..n.min(16)]);
//!     Ok(())
//! })
//! # }
//! # #[cfg(not(all(target_os = "linux", feature = "tokio-uring")))]
//! # fn main() {}
//! ```
//!
//! See `docs/design.md` in the repository for the architecture and its invariants.
// docs.rs (`[package.metadata.docs.rs]` in Cargo.toml) builds with `--cfg docsrs` on nightly: the feature-gated
// items then carry an "Available on crate feature ... only" badge (`doc(cfg(..))` on each).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    clippy::undocumented_unsafe_blocks
)]

#[cfg(any(feature = "async", loom))]
// For the docs, only `async` (not the loom models' alternative): `Acquire`'s badge.
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
mod acquire;
mod arena;
mod budget;
mod buf;
mod cache;
mod config;
mod depot;
pub mod dio;
mod error;
mod freelist;
mod frozen;
mod gate;
mod numa;
mod overflow;
mod policy;
mod pool;
mod release;
mod reserve;
#[cfg(all(target_os = "linux", any(feature = "tokio-uring", feature = "monoio")))]
mod rt;
mod shared;
mod stats;
mod sync;
mod sys;
mod take;
mod trim;
mod uncommitted;
#[cfg(all(feature = "io-uring", target_os = "linux"))]
mod uring;
mod wait;
mod wake;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(feature = "async")]
pub use acquire::Acquire;
pub use buf::AlignedBuf;
pub use config::{
    ForkPolicy, HugePages, LockPolicy, OverflowPolicy, PoolBuilder, DEFAULT_OVERFLOW_DECAY,
    MAX_CAPACITY, MAX_SIZE_CLASSES,
};
pub use error::{AcquireError, ConfigError};
pub use frozen::FrozenBuf;
pub use numa::NumaPolicy;
pub use pool::PagePool;
pub use stats::PoolStats;
#[cfg(all(feature = "io-uring", target_os = "linux"))]
pub use uring::{RegisterError, MAX_REGISTERED_BUFFERS};

/// The OS page size in bytes: every buffer is aligned to at least this and is a multiple of it.
///
/// # Examples
/// ```
/// assert!(pagepool::page_size().is_power_of_two());
/// ```
pub fn page_size() -> usize {
    sys::page_size()
}
