//! io_uring registered buffers (cargo feature `io-uring`, Linux): every pooled buffer as an `iovec`, in slot
//! order, so that a buffer's [`AlignedBuf::index`] is its registered buffer index.
//!
//! The registration recipe is in the docs of [`PagePool::iovecs`].

use crate::{AlignedBuf, PagePool};
use std::io;

/// The most buffers one io_uring registration can index: buffer indices are `u16`. (The kernel currently
/// accepts at most 16384, `IORING_MAX_REG_BUFFERS`; a larger registration fails with `EINVAL`.)
///
/// # Examples
/// ```
/// assert_eq!(pagepool::MAX_REGISTERED_BUFFERS, u16::MAX as usize + 1);
/// ```
pub const MAX_REGISTERED_BUFFERS: usize = 1 << 16;

/// [`PagePool::iovecs`] could not describe the pool's buffers.
///
/// # Examples
/// ```
/// use pagepool::{PagePool, RegisterError, MAX_REGISTERED_BUFFERS};
/// let pool = PagePool::builder().capacity(MAX_REGISTERED_BUFFERS + 1).build().unwrap();
/// assert!(matches!(pool.iovecs(), Err(RegisterError::TooManyBuffers { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The pool has more buffers than io_uring buffer indices (`u16`) can name.
    #[error("the pool has {capacity} buffers but io_uring buffer indices are u16 (at most {max} buffers, and the kernel currently accepts 16384): build a registrable pool with at most that capacity")]
    TooManyBuffers {
        /// The pool's capacity.
        capacity: usize,
        /// [`MAX_REGISTERED_BUFFERS`].
        max: usize,
    },
    /// The pool has several size classes: buffer indices are per class, so one registration cannot name them
    /// all. Register a single-size pool.
    #[error("the pool has size classes {classes:?}: io_uring buffer indices are per class; register a single-size pool")]
    SizeClasses {
        /// The pool's size classes.
        classes: Vec<usize>,
    },
    /// The OS refused to map a chunk of the pool.
    #[error("the OS refused to map the pool's memory for registration ({bytes} bytes of buffers): {source}")]
    Os {
        /// Bytes of pooled buffers the registration needs mapped (`capacity x buf_size`).
        bytes: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl PagePool {
    /// Every pooled buffer as an `iovec` (`buf_size` bytes each), indexed by slot: `iovecs()[i]` is the buffer
    /// whose [`AlignedBuf::index`] is `i`. Pass them to `io_uring::Submitter::register_buffers`.
    ///
    /// Maps (and faults in) every chunk not mapped yet, as [`prealloc`](crate::PoolBuilder::prealloc) does, so
    /// the addresses are final. They stay valid until the pool and all of its buffers are gone: unregister the
    /// buffers (or drop the ring) before dropping the pool. Overflow buffers are not in the list (they come and
    /// go); their [`index`](AlignedBuf::index) is `None`. Calling it again returns the same list.
    ///
    /// # Registering with io_uring
    /// The kernel pins registered buffers and `READ_FIXED` / `WRITE_FIXED` name one by its index (a `u16`) instead
    /// of pinning the pages on every request. Pool memory never moves and is never unmapped while the pool or any
    /// of its buffers lives, so it can be registered once:
    ///
    /// ```no_run
    /// # // Needs the io-uring crate (a dev-dependency here) and a kernel that permits io_uring.
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().buf_size(64 << 10).capacity(64).build()?;
    /// let iovecs = pool.iovecs()?;                // maps every chunk; one iovec per pooled buffer
    /// # let ring = io_uring::IoUring::new(8)?;
    /// // SAFETY: the iovecs stay valid while `pool` (or any of its buffers) lives; unregister or drop the ring first.
    /// unsafe { ring.submitter().register_buffers(&iovecs)? };
    /// let mut buf = pool.acquire()?;
    /// let index = buf.index().expect("a pooled buffer of a registrable pool");
    /// # let fd = 0;
    /// let read = io_uring::opcode::ReadFixed::new(io_uring::types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32, index)
    ///     .offset(0)
    ///     .build();
    /// # let _ = read;
    /// # Ok(()) }
    /// ```
    ///
    /// Registered pages are pinned and, without `CAP_IPC_LOCK`, counted against `RLIMIT_MEMLOCK` (often 8 MiB):
    /// `register_buffers` fails with `ENOMEM` past it. [`PagePool::iovecs`] logs a `warn` (target `pagepool`) when
    /// the pool is larger than the limit.
    ///
    /// # Errors
    /// - [`RegisterError::TooManyBuffers`] if the capacity exceeds [`MAX_REGISTERED_BUFFERS`] (checked before
    ///   mapping anything).
    /// - [`RegisterError::SizeClasses`] for a pool with several size classes (indices are per class).
    /// - [`RegisterError::Os`] if the OS refuses to map a chunk; the pool stays usable.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().buf_size(8192).capacity(4).build()?;
    /// let iovecs = pool.iovecs()?;
    /// assert_eq!(iovecs.len(), 4);
    /// let buf = pool.acquire()?;
    /// let i = buf.index().unwrap() as usize;
    /// assert_eq!(iovecs[i].iov_base as *const u8, buf.as_ptr());
    /// assert_eq!(iovecs[i].iov_len, 8192);
    /// # Ok(()) }
    /// ```
    pub fn iovecs(&self) -> Result<Vec<libc::iovec>, RegisterError> {
        let classes = self.size_classes();
        if classes.len() > 1 {
            return Err(RegisterError::SizeClasses { classes });
        }
        let capacity = self.capacity();
        if capacity > MAX_REGISTERED_BUFFERS {
            return Err(RegisterError::TooManyBuffers {
                capacity,
                max: MAX_REGISTERED_BUFFERS,
            });
        }
        if let Err(source) = self.map_all_chunks() {
            let bytes = capacity.saturating_mul(self.buf_size());
            tracing::error!(target: "pagepool", error = %source, "mapping the pool for io_uring registration failed");
            return Err(RegisterError::Os { bytes, source });
        }
        let len = self.buf_size();
        let iovecs: Vec<libc::iovec> = (0..capacity as u32)
            .map(|slot| libc::iovec {
                iov_base: self.slot_ptr(slot).as_ptr().cast(),
                iov_len: len,
            })
            .collect();
        let bytes = (capacity * len) as u64;
        match crate::sys::dio::memlock_limit() {
            Some(limit) if bytes > limit => tracing::warn!(
                target: "pagepool",
                bytes,
                limit,
                "registering these buffers pins more than RLIMIT_MEMLOCK: register_buffers fails with ENOMEM \
                 unless the process has CAP_IPC_LOCK"
            ),
            _ => {}
        }
        tracing::debug!(target: "pagepool", buffers = capacity, bytes, "iovecs for io_uring registration");
        Ok(iovecs)
    }
}

impl AlignedBuf {
    /// The registered-buffer index of a pooled buffer (its slot in [`PagePool::iovecs`]); `None` for an
    /// overflow buffer, and for slots past `u16::MAX` in a pool too large to register.
    ///
    /// # Examples
    /// ```
    /// use pagepool::{OverflowPolicy, PagePool};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PagePool::builder().capacity(1).overflow(OverflowPolicy::Map).build()?;
    /// let pooled = pool.acquire()?;
    /// let overflow = pool.acquire()?;
    /// assert_eq!(pooled.index(), Some(0));
    /// assert_eq!(overflow.index(), None);
    /// # Ok(()) }
    /// ```
    pub fn index(&self) -> Option<u16> {
        self.slot().and_then(|s| u16::try_from(s).ok())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sys::fault;

    #[test]
    fn too_many_buffers_is_refused_before_mapping() {
        let pool = PagePool::builder()
            .capacity(MAX_REGISTERED_BUFFERS + 1)
            .build()
            .unwrap();
        let e = pool.iovecs().unwrap_err();
        assert!(
            matches!(e, RegisterError::TooManyBuffers { capacity, max } if capacity == MAX_REGISTERED_BUFFERS + 1 && max == MAX_REGISTERED_BUFFERS),
            "{e:?}"
        );
        assert_eq!(pool.stats().chunks, 0, "nothing mapped");
        // The largest registrable pool is accepted.
        let pool = PagePool::builder()
            .capacity(MAX_REGISTERED_BUFFERS)
            .build()
            .unwrap();
        assert_eq!(pool.iovecs().unwrap().len(), MAX_REGISTERED_BUFFERS);
    }

    #[test]
    fn a_refused_mapping_is_a_typed_error_and_the_pool_stays_usable() {
        // 4096 pages per chunk target: 1024 x 16 KiB buffers in several chunks; fail the second chunk's map.
        let pool = PagePool::builder()
            .buf_size(16 << 10)
            .capacity(1024)
            .build()
            .unwrap();
        let held = pool.acquire().unwrap(); // maps the first chunk
        fault::fail_map_at(0, libc::ENOMEM);
        let e = pool.iovecs().unwrap_err();
        fault::clear();
        assert!(
            matches!(&e, RegisterError::Os { source, .. } if source.raw_os_error() == Some(libc::ENOMEM)),
            "{e:?}"
        );
        let iovecs = pool.iovecs().unwrap();
        assert_eq!(iovecs.len(), 1024);
        assert_eq!(pool.stats().pooled_buffers, 1024);
        assert_eq!(
            iovecs[held.index().unwrap() as usize].iov_base as *const u8,
            held.as_ptr()
        );
    }

    #[test]
    fn size_class_pools_are_refused() {
        let pool = PagePool::builder()
            .size_classes(&[4096, 8192])
            .capacity(4)
            .build()
            .unwrap();
        let e = pool.iovecs().unwrap_err();
        assert!(
            matches!(&e, RegisterError::SizeClasses { classes } if classes == &[4096, 8192]),
            "{e:?}"
        );
        assert_eq!(pool.stats().chunks, 0, "nothing mapped");
    }

    #[test]
    fn every_held_buffer_matches_its_iovec() {
        let pool = PagePool::builder()
            .buf_size(8192)
            .capacity(700)
            .thread_cache(16)
            .build()
            .unwrap();
        let iovecs = pool.iovecs().unwrap();
        assert_eq!(pool.stats().pooled_buffers, 700, "iovecs maps every chunk");
        let held: Vec<_> = (0..700).map(|_| pool.acquire().unwrap()).collect();
        let mut seen = vec![false; 700];
        for b in &held {
            let i = b.index().unwrap() as usize;
            assert!(!std::mem::replace(&mut seen[i], true), "index {i} twice");
            assert_eq!(iovecs[i].iov_base as *const u8, b.as_ptr());
            assert_eq!(iovecs[i].iov_len, b.len());
        }
        // Calling again describes the same memory.
        let again = pool.iovecs().unwrap();
        assert!(iovecs
            .iter()
            .zip(&again)
            .all(|(a, b)| a.iov_base == b.iov_base && a.iov_len == b.iov_len));
    }
}
