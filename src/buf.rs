//! [`AlignedBuf`]: the RAII handle to one buffer.

use crate::overflow::OverflowBuf;
use crate::pool::Inner;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// One page-aligned buffer from a [`PagePool`](crate::PagePool), returned to the pool when dropped.
///
/// It dereferences to `[u8]` of exactly the pool's `buf_size` bytes, starts on the pool's alignment (at least
/// the page size), and is exclusively yours until dropped. A pooled buffer goes back to the freelist on drop
/// (one lock-free push, no system call); an overflow buffer goes to the pool's overflow reserve or is unmapped
/// on drop ([`overflow_decay`](crate::PoolBuilder::overflow_decay)). The contents of a freshly
/// acquired buffer are unspecified (zero for memory fresh from the OS, the previous holder's bytes for a reused
/// pooled buffer).
///
/// A buffer keeps its pool's memory alive: dropping every `PagePool` handle while buffers are out is safe, and
/// the memory is unmapped when the last buffer comes home.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pagepool::PagePool::builder().buf_size(pagepool::page_size()).capacity(2).build()?;
/// let mut buf = pool.acquire()?;
/// buf.fill(0xAB);
/// assert!(buf.iter().all(|&b| b == 0xAB));
/// assert_eq!(buf.as_ptr() as usize % pagepool::page_size(), 0);
/// # Ok(()) }
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// Slot index for a pooled buffer; `u32::MAX` for an overflow buffer.
    slot: u32,
    /// The buffer's own mapping, for an overflow buffer. Boxed so that the common pooled buffer stays small
    /// (40 bytes instead of 72): the handle is moved on every acquire, and the box's allocation only happens on
    /// the overflow path, next to an `mmap`.
    ///
    /// `ManuallyDrop` because `Drop for AlignedBuf` takes it (leaving `None`): without it, the drop glue would
    /// test the field again after `drop`, and that test's dealloc call would cost the inlined pooled drop its
    /// call-free fast path.
    mapping: ManuallyDrop<Option<Box<OverflowBuf>>>,
    /// The pool's shared state; this buffer owns one reference on it (see `cache.rs`).
    pool: NonNull<Inner>,
}

// SAFETY: an AlignedBuf is the unique owner of its bytes (the freelist invariant in freelist.rs: a slot is held
// by at most one buffer; an overflow mapping belongs to this buffer alone), so moving it to another thread
// moves that ownership. The reference on Inner is a counted one released with atomic operations, and Inner is
// Send + Sync.
unsafe impl Send for AlignedBuf {}
// SAFETY: `&AlignedBuf` only gives `&[u8]` access; mutation needs `&mut`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub(crate) fn pooled(pool: NonNull<Inner>, slot: u32, ptr: NonNull<u8>, len: usize) -> Self {
        AlignedBuf {
            ptr,
            len,
            slot,
            mapping: ManuallyDrop::new(None),
            pool,
        }
    }

    pub(crate) fn overflow(pool: NonNull<Inner>, b: OverflowBuf) -> Self {
        Self::overflow_boxed(pool, Box::new(b))
    }

    /// [`overflow`](Self::overflow) of a mapping already boxed (one from the overflow reserve: its box travels
    /// with it, so a reuse allocates nothing).
    pub(crate) fn overflow_boxed(pool: NonNull<Inner>, b: Box<OverflowBuf>) -> Self {
        AlignedBuf {
            ptr: b.ptr,
            len: b.buf_size,
            slot: u32::MAX,
            mapping: ManuallyDrop::new(Some(b)),
            pool,
        }
    }

    /// Overwrites every byte of the buffer with zero now, with volatile writes the compiler cannot elide
    /// (for a secret that must go before the buffer is released; see also
    /// [`PoolBuilder::zero_on_release`](crate::PoolBuilder::zero_on_release)).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf[..6].copy_from_slice(b"secret");
    /// buf.zeroize();
    /// assert!(buf.iter().all(|&b| b == 0));
    /// # Ok(()) }
    /// ```
    pub fn zeroize(&mut self) {
        crate::policy::fill(self.ptr, self.len, 0);
    }

    /// Start, length and slot index (`u32::MAX` for an overflow buffer), for the pool's own checks.
    #[inline]
    pub(crate) fn parts(&self) -> (NonNull<u8>, usize, u32) {
        (self.ptr, self.len, self.slot)
    }

    /// The pool slot index of a pooled buffer; `None` for an overflow buffer.
    #[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn slot(&self) -> Option<u32> {
        (self.mapping.is_none()).then_some(self.slot)
    }

    /// The number of mappings its pool's overflow reserve holds (the loom models' view of a closed pool, which
    /// no handle can ask any more).
    #[cfg(all(loom, test))]
    pub(crate) fn loom_reserved(&self) -> usize {
        // SAFETY: the buffer's reference keeps Inner alive.
        unsafe { self.pool.as_ref() }.loom_reserved()
    }

    /// True if this buffer came from the overflow path (its own mapping, unmapped on drop) rather than the pool.
    pub fn is_overflow(&self) -> bool {
        self.mapping.is_some()
    }

    /// The buffer's bytes.
    pub fn as_slice(&self) -> &[u8] {
        self
    }

    /// The buffer's bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is mapped, readable and initialised (anonymous memory is zero-filled), and is
        // owned by this handle alone until it is dropped (see the Send impl).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` guarantees no other reference to the bytes exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Drop for AlignedBuf {
    /// The common case (a pooled buffer of a pool without a memory policy, going back into this thread's
    /// cache) inlines and makes no calls; everything else is a tail call to an out-of-line path. The cold
    /// paths take the fields by value, never `&mut self`: a buffer whose address escapes cannot be kept in
    /// registers by the caller, and copying it through memory costs store-forwarding stalls.
    #[inline]
    fn drop(&mut self) {
        if let Some(m) = self.mapping.take() {
            return drop_overflow(self.pool, m);
        }
        // SAFETY: the buffer's reference keeps Inner alive.
        let inner = unsafe { self.pool.as_ref() };
        if inner.scrub != 0 {
            return drop_scrubbed(self.pool, self.slot, self.ptr, self.len);
        }
        crate::sys::poison(self.ptr.as_ptr(), self.len);
        // SAFETY: this buffer owns the slot and one reference; it is never used again after drop.
        unsafe { Inner::release(self.pool, self.slot, self.ptr) }
    }
}

/// The drop of an overflow buffer: `m` is its mapping, and the buffer owned one reference on `pool`.
#[cold]
#[inline(never)]
fn drop_overflow(pool: NonNull<Inner>, m: Box<OverflowBuf>) {
    // SAFETY: the dropped buffer owned this mapping and one reference on `pool`; it is never used again.
    unsafe { Inner::release_overflow(pool, m) }
}

/// The drop of a pooled buffer of a pool with a memory policy: scrub, then release.
#[cold]
#[inline(never)]
fn drop_scrubbed(pool: NonNull<Inner>, slot: u32, ptr: NonNull<u8>, len: usize) {
    // SAFETY: the dropped buffer owned one reference on `pool`, which keeps Inner alive.
    let inner = unsafe { pool.as_ref() };
    inner.mem.on_release(ptr, len);
    crate::sys::poison(ptr.as_ptr(), len);
    // SAFETY: the dropped buffer owned the slot and one reference; it is never used again.
    unsafe { Inner::release(pool, slot, ptr) }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AlignedBuf");
        d.field("ptr", &self.ptr).field("len", &self.len);
        if self.is_overflow() {
            d.field("overflow", &true);
        } else {
            d.field("slot", &self.slot);
        }
        d.finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn handle_is_five_words() {
        assert_eq!(
            std::mem::size_of::<super::AlignedBuf>(),
            5 * std::mem::size_of::<usize>()
        );
    }
}
