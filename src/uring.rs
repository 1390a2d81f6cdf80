//! io_uring registered buffers (cargo feature `io-uring`, Linux): every pooled buffer as an `iovec`, in slot
//! order, so that a buffer's [`AlignedBuf::index`] is its registered buffer index.
//!
//! The registration recipe is in the docs of [`PagePool::iovecs`].

use crate::pool::MapAllError;
use crate::{AlignedBuf, PagePool};
use std::io;

/// The most buffers one io_uring registration can index: buffer indices are `u16`. (The kernel currently
/// accepts at most 16384, `IORING_MAX_REG_BUFFERS`; a larger registration fails with `EINVAL`.)
///
/// # Examples
/// ```
/// assert_eq!(pagepool::MAX_REGISTERED_BUFFERS, u16::MAX as usize + 1);
/// ```
#[cfg_attr(docsrs, doc(cfg(all(feature = "io-uring", target_os = "linux"))))]
pub const MAX_REGISTERED_BUFFERS: usize = 1 << 16;

/// [`PagePool::iovecs`] could not describe the pool's buffers.
///
/// # Examples
/// ```
/// use pagepool::{PagePool, RegisterError, MAX_REGISTERED_BUFFERS};
/// let pool = PagePool::builder().capacity(MAX_REGISTERED_BUFFERS + 1).build().unwrap();
/// assert!(matches!(pool.iovecs(), Err(RegisterError::TooManyBuffers { .. })));
/// ```
#[cfg_attr(docsrs, doc(cfg(all(feature = "io-uring", target_os = "linux"))))]
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
    /// [`max_bytes`](crate::PoolBuilder::max_bytes) is below what the pool's full capacity reserves:
    /// registration maps every chunk, so it cannot succeed with this budget. Refused before mapping anything.
    #[error("max_bytes is {max_bytes} bytes, but registering maps the pool's whole capacity ({capacity} buffers), whose chunks reserve {needed} bytes: raise max_bytes to at least {needed}, or lower capacity")]
    OverBudget {
        /// The pool's `max_bytes`.
        max_bytes: usize,
        /// Bytes every chunk of the pool reserves together (the smallest `max_bytes` that can register it).
        needed: usize,
        /// The pool's capacity.
        capacity: usize,
    },
    /// The whole capacity fits in [`max_bytes`](crate::PoolBuilder::max_bytes), but overflow buffers out now
    /// hold part of the budget, so a chunk could not be mapped. The chunks mapped so far stay mapped; call
    /// again once those overflow buffers are dropped.
    #[error("max_bytes ({max_bytes} bytes) holds the pool's chunks ({needed} bytes), but overflow buffers out now hold {held} bytes of it, so a chunk could not be mapped: drop them and call iovecs again, or raise max_bytes by {held}")]
    BudgetHeld {
        /// The pool's `max_bytes`.
        max_bytes: usize,
        /// Bytes every chunk of the pool reserves together.
        needed: usize,
        /// Bytes of the budget held by other mappings (overflow buffers) when the chunk was refused.
        held: usize,
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
    /// the addresses are final, and turns trimming off for good (see below). They stay valid until the pool and
    /// all of its buffers are gone: unregister the buffers (or drop the ring) before dropping the pool. Overflow
    /// buffers are not in the list (they come and go); their [`index`](AlignedBuf::index) is `None`. Calling it
    /// again returns the same list.
    ///
    /// # Registering with io_uring
    /// The kernel pins registered buffers and `READ_FIXED` / `WRITE_FIXED` name one by its index (a `u16`) instead
    /// of pinning the pages on every request. Pool memory never moves and is never unmapped while the pool or any
    /// of its buffers lives, and once registered it is never discarded, so it can be registered once:
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
    /// let read = io_uring::opcode::ReadFixed::new(io_uring::types::Fd(fd), buf.as_mut_ptr(), buf.capacity() as u32, index)
    ///     .offset(0)
    ///     .build();
    /// # let _ = read;
    /// # Ok(()) }
    /// ```
    ///
    /// # Registered memory is never discarded
    /// Trimming would break a registration: `MADV_DONTNEED` gives the process fresh pages at the same addresses
    /// while the kernel keeps using the pinned old ones, so `READ_FIXED` would land where the program no longer
    /// looks and `WRITE_FIXED` would send stale bytes. So once `iovecs` has returned `Ok`, the pool never
    /// discards its memory again, for the rest of its life: [`trim`](PagePool::trim),
    /// [`trim_idle`](PagePool::trim_idle) and [`idle_trim_after`](crate::PoolBuilder::idle_trim_after) give
    /// nothing back (they return 0 and log a `debug` event, target `pagepool`, saying that trimming is disabled
    /// by registration), whether the idle buffers are in the shared pool or in a thread cache. A trim running
    /// on another thread when `iovecs` is called finishes the batch it is discarding before `iovecs` returns,
    /// and discards nothing after. There is no way to end this: the pool cannot know when the kernel lets go
    /// of the pages (after `unregister_buffers` and the completion of every request that used them). A pool
    /// that must give memory back between registrations is a pool of its own per registration.
    ///
    /// Registered pages are pinned and, without `CAP_IPC_LOCK`, counted against `RLIMIT_MEMLOCK` (often 8 MiB):
    /// `register_buffers` fails with `ENOMEM` past it. [`PagePool::iovecs`] logs a `warn` (target `pagepool`) when
    /// the pool is larger than the limit.
    ///
    /// # Errors
    /// - [`RegisterError::TooManyBuffers`] if the capacity exceeds [`MAX_REGISTERED_BUFFERS`] (checked before
    ///   mapping anything).
    /// - [`RegisterError::SizeClasses`] for a pool with several size classes (indices are per class).
    /// - [`RegisterError::OverBudget`] if [`max_bytes`](crate::PoolBuilder::max_bytes) is below what the whole
    ///   capacity reserves (checked before mapping anything): registration maps every chunk.
    /// - [`RegisterError::BudgetHeld`] if the capacity fits in `max_bytes` but overflow buffers out now hold
    ///   the part a chunk needs; the chunks mapped so far stay mapped and a later call can succeed.
    /// - [`RegisterError::Os`] if the OS refuses to map a chunk; the pool stays usable.
    ///
    /// After an error nothing is registered and trimming still works.
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
    #[cfg_attr(docsrs, doc(cfg(all(feature = "io-uring", target_os = "linux"))))]
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
        match self.map_all_chunks() {
            Ok(()) => {}
            Err(MapAllError::Os(source)) => {
                let bytes = capacity.saturating_mul(self.buf_size());
                tracing::error!(target: "pagepool", error = %source, "mapping the pool for io_uring registration failed");
                return Err(RegisterError::Os { bytes, source });
            }
            Err(MapAllError::OverBudget { max_bytes, needed }) => {
                return Err(RegisterError::OverBudget {
                    max_bytes,
                    needed,
                    capacity,
                })
            }
            Err(MapAllError::BudgetHeld {
                max_bytes,
                needed,
                held,
            }) => {
                return Err(RegisterError::BudgetHeld {
                    max_bytes,
                    needed,
                    held,
                })
            }
        }
        // From here on no trim discards the pool's memory, and none that started earlier is still discarding:
        // the addresses below stay backed by the pages the kernel will pin.
        self.close_discard_gate();
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
    #[cfg_attr(docsrs, doc(cfg(all(feature = "io-uring", target_os = "linux"))))]
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

    /// Fills `buf` with a pattern of its slot and `round`: non-zero in every byte.
    fn stamp(buf: &mut AlignedBuf, round: u8) {
        let v = (buf.index().unwrap() as u8 ^ round) | 1;
        buf.fill(v);
    }

    /// Whether `buf` still holds what `stamp` wrote (a discarded buffer reads back as zeros).
    fn stamped(buf: &AlignedBuf, round: u8) -> bool {
        let v = (buf.index().unwrap() as u8 ^ round) | 1;
        buf.iter().all(|&b| b == v)
    }

    /// Takes every pooled buffer it can get (a concurrent trim may hold some: those come as overflow buffers,
    /// or not at all), stamps each and gives them back (to this thread's cache, the depot or the freelist).
    /// Returns which slots it stamped.
    fn stamp_all(pool: &PagePool, round: u8) -> Vec<bool> {
        let mut all: Vec<_> = (0..pool.capacity())
            .filter_map(|_| pool.acquire().ok())
            .collect();
        let mut done = vec![false; pool.capacity()];
        for b in all.iter_mut().filter(|b| !b.is_overflow()) {
            stamp(b, round);
            done[b.index().unwrap() as usize] = true;
        }
        done
    }

    /// Takes every pooled buffer it can get and counts those stamped in `round` that lost their stamp.
    fn lost_stamps(pool: &PagePool, round: u8, done: &[bool]) -> usize {
        let all: Vec<_> = (0..pool.capacity())
            .filter_map(|_| pool.acquire().ok())
            .collect();
        all.iter()
            .filter(|b| !b.is_overflow() && done[b.index().unwrap() as usize] && !stamped(b, round))
            .count()
    }

    #[test]
    fn trim_keeps_the_contents_of_registered_buffers() {
        // Without a ring (tests/uring.rs has the io_uring versions): a discarded buffer reads back as zeros, so
        // a stamp that survives `trim` proves its pages were not replaced.
        for cache in [0, 4] {
            let pool = PagePool::builder()
                .capacity(64)
                .thread_cache(cache)
                .build()
                .unwrap();
            let done = stamp_all(&pool, 1);
            assert!(done.iter().all(|&d| d));
            let iovecs = pool.iovecs().unwrap();
            assert_eq!(iovecs.len(), 64);
            // Buffers now rest in this thread's cache, in another thread's (flushed at its exit), in the depot
            // and in the freelist.
            std::thread::scope(|s| {
                s.spawn(|| drop((0..8).map(|_| pool.acquire().unwrap()).collect::<Vec<_>>()));
            });
            let trimmed = pool.trim();
            assert_eq!(lost_stamps(&pool, 1, &done), 0, "cache {cache}");
            assert_eq!(trimmed, 0, "cache {cache}");
            let s = pool.stats();
            assert_eq!((s.trimmed_bytes, s.in_use), (0, 0), "cache {cache}: {s:?}");
        }
    }

    #[test]
    fn idle_trim_keeps_the_contents_of_registered_buffers() {
        let period = std::time::Duration::from_millis(10);
        let pool = PagePool::builder()
            .capacity(64)
            .thread_cache(0)
            .idle_trim_after(period)
            .build()
            .unwrap();
        pool.iovecs().unwrap();
        let done = stamp_all(&pool, 2);
        assert!(done.iter().all(|&d| d));
        // Whole periods with every buffer idle, ended by `trim_idle` and by the pool's own slow path.
        std::thread::sleep(period * 2);
        let mut trimmed = pool.trim_idle();
        std::thread::sleep(period * 2);
        drop(pool.acquire().unwrap());
        std::thread::sleep(period * 2);
        trimmed += pool.trim_idle();
        assert_eq!(lost_stamps(&pool, 2, &done), 0);
        assert_eq!((trimmed, pool.stats().trimmed_bytes), (0, 0));
    }

    #[test]
    fn trim_racing_iovecs_discards_nothing_once_iovecs_returns() {
        // A thread trims in a loop while `iovecs` runs: whatever the interleaving, once `iovecs` has returned
        // no buffer loses its contents (src/loom_tests.rs models the same race exhaustively).
        let pool = PagePool::builder()
            .capacity(256)
            .thread_cache(8)
            .overflow(crate::OverflowPolicy::Map)
            .build()
            .unwrap();
        stamp_all(&pool, 0);
        /// Stops the trimmer however the test ends, so a failed assertion cannot leave it spinning.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let trimmer = s.spawn(|| {
                let mut rounds = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    pool.trim();
                    rounds += 1;
                }
                rounds
            });
            let guard = Stop(&stop);
            // Let the trimmer get going, then register while it trims.
            let start = std::time::Instant::now();
            while pool.stats().trimmed_bytes == 0 {
                assert!(start.elapsed().as_secs() < 60, "the trimmer never trimmed");
                std::thread::yield_now();
            }
            pool.iovecs().unwrap();
            let mut lost = 0;
            for round in 1..=20u8 {
                let done = stamp_all(&pool, round);
                std::thread::yield_now();
                lost += lost_stamps(&pool, round, &done);
            }
            drop(guard);
            assert!(trimmer.join().unwrap() > 0);
            assert_eq!(lost, 0, "buffers discarded after iovecs returned");
        });
    }
}
