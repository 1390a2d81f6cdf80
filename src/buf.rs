//! [`AlignedBuf`]: the RAII handle to one buffer.

use crate::overflow::OverflowBuf;
use crate::shared::Inner;
use std::borrow::{Borrow, BorrowMut};
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// One page-aligned buffer from a [`PagePool`](crate::PagePool), returned to the pool when dropped.
///
/// A buffer has a [`capacity`](Self::capacity), the bytes mapped for it (the pool's `buf_size`, its size
/// class's size, or an overflow mapping's size), and a logical length, [`len`](Self::len), the bytes filled:
/// it dereferences to `[u8]` of exactly `len()` bytes. A buffer from [`acquire`](crate::PagePool::acquire) or
/// [`acquire_len`](crate::PagePool::acquire_len) starts full (`len() == capacity()`), ready for a read into
/// `&mut buf[..]`; [`truncate`](Self::truncate) it to the bytes the read returned, or [`clear`](Self::clear) it
/// and append with [`std::io::Write`] (or `bytes::BufMut`, feature `bytes`). Every byte of the capacity is
/// always initialised (anonymous memory is zero-filled), so growing the length back with
/// [`set_len`](Self::set_len) exposes old bytes, never uninitialised memory. It starts on the pool's alignment
/// (at least the page size), and is exclusively yours until dropped, or shared read-only after
/// [`freeze`](Self::freeze). A pooled buffer goes back to the freelist on drop
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
/// assert_eq!(buf.len(), buf.capacity());
/// buf.fill(0xAB);
/// assert!(buf.iter().all(|&b| b == 0xAB));
/// assert_eq!(buf.as_ptr() as usize % pagepool::page_size(), 0);
/// buf.truncate(100); // e.g. a read returned 100 bytes
/// assert_eq!(buf.len(), 100);
/// # Ok(()) }
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    /// The logical length: bytes filled, at most the capacity. The capacity is not stored (the handle stays
    /// five words): it is the pool's `buf_size` for a pooled buffer and the mapping's for an overflow buffer
    /// (see [`capacity`](Self::capacity)). Everything that touches the memory itself (poisoning, scrubbing,
    /// zeroing) uses the capacity, never this.
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

// A panic while a buffer is borrowed leaves nothing half-done that a later use could observe: its bytes are plain
// bytes (any value is valid), and the pool state it points to is changed only by the pool's own operations,
// which keep their books balanced across panics (docs/safety.md, "Foreign code"). `bytes::Bytes` and `Vec<u8>`
// are unwind safe for the same reason. (Not automatic: the handle holds a raw pointer to state with interior
// mutability.)
impl std::panic::UnwindSafe for AlignedBuf {}
impl std::panic::RefUnwindSafe for AlignedBuf {}

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

    /// Overwrites every byte of the buffer's capacity (not only its `len()` filled bytes) with zero now, with
    /// volatile writes the compiler cannot elide (for a secret that must go before the buffer is released; see
    /// also [`PoolBuilder::zero_on_release`](crate::PoolBuilder::zero_on_release)). The length is unchanged:
    /// the filled bytes now read as zeros. With the `zeroize` feature, `zeroize::Zeroize::zeroize` is this
    /// method, so a buffer works inside `zeroize::Zeroizing`.
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
        crate::policy::fill(self.ptr, self.capacity(), 0);
    }

    /// Start, capacity and slot index (`u32::MAX` for an overflow buffer), for the pool's own checks.
    #[inline]
    pub(crate) fn parts(&self) -> (NonNull<u8>, usize, u32) {
        (self.ptr, self.capacity(), self.slot)
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

    /// The buffer's start, valid for reads of its whole [`capacity`](Self::capacity) (not only `len()`) while the
    /// buffer lives and is not written through `&mut`. Unlike `self[..].as_ptr()`, whose provenance covers only
    /// the `len()` filled bytes, this pointer may be used past `len()`: hand it to I/O with `capacity()` as the
    /// length (as `Vec::as_ptr`).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let buf = pool.acquire()?;
    /// assert_eq!(buf.as_ptr() as usize % pagepool::page_size(), 0);
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The buffer's start, valid for reads and writes of its whole [`capacity`](Self::capacity) while the buffer
    /// lives and no other reference to its bytes is used: for I/O that fills the buffer through a pointer, then
    /// [`set_len`](Self::set_len) to the bytes written. Unlike `self[..].as_mut_ptr()` (a pointer to `len()`
    /// bytes only, so writing past `len()` through it is undefined behaviour), this one covers the capacity (as
    /// `Vec::as_mut_ptr`).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.clear();
    /// let p = buf.as_mut_ptr();
    /// // SAFETY: 3 bytes are within the capacity, and no other reference to the bytes is in use.
    /// unsafe { p.copy_from_nonoverlapping(b"abc".as_ptr(), 3) };
    /// // SAFETY: 3 <= capacity, and the bytes were just written.
    /// unsafe { buf.set_len(3) };
    /// assert_eq!(&buf[..], b"abc");
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// True if this buffer came from the overflow path (its own mapping, unmapped on drop) rather than the pool.
    pub fn is_overflow(&self) -> bool {
        self.mapping.is_some()
    }

    /// The filled bytes, `&buf[..buf.len()]`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(3);
    /// assert_eq!(buf.as_slice().len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        self
    }

    /// The filled bytes, mutably.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.as_mut_slice()[0] = 7;
    /// assert_eq!(buf[0], 7);
    /// # Ok(()) }
    /// ```
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }

    /// The logical length: the bytes filled, which the buffer dereferences to. A freshly acquired buffer is
    /// full ([`capacity`](Self::capacity) bytes).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// assert_eq!(buf.len(), pool.buf_size());
    /// buf.clear();
    /// assert_eq!(buf.len(), 0);
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if [`len`](Self::len) is 0 (after [`clear`](Self::clear), say).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// assert!(!buf.is_empty());
    /// buf.clear();
    /// assert!(buf.is_empty());
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes mapped for this buffer: the pool's `buf_size` for a pooled buffer, the size class's size for
    /// one from a size class, and the mapping's size (the requested length rounded up to the page size) for an
    /// overflow buffer. Fixed for the buffer's life; a page multiple.
    ///
    /// # Examples
    /// ```
    /// use pagepool::{page_size, PagePool};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PagePool::builder().size_classes(&[page_size(), 4 * page_size()]).capacity(2).build()?;
    /// let mut buf = pool.acquire_len(page_size() + 1)?;
    /// assert_eq!(buf.capacity(), 4 * page_size());
    /// buf.clear();
    /// assert_eq!(buf.capacity(), 4 * page_size());
    /// let big = pool.acquire_len(5 * page_size() + 1)?; // above every class: an overflow mapping
    /// assert_eq!(big.capacity(), 6 * page_size());
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn capacity(&self) -> usize {
        match &*self.mapping {
            Some(m) => m.buf_size,
            // SAFETY: the buffer's reference keeps Inner alive.
            None => unsafe { self.pool.as_ref() }.buf_size(),
        }
    }

    /// Sets the logical length to `n`, for I/O that wrote into the buffer through a pointer and reports the
    /// bytes written (after [`clear`](Self::clear), into [`spare_capacity_mut`](Self::spare_capacity_mut) or
    /// through [`as_mut_ptr`](Self::as_mut_ptr)).
    ///
    /// # Safety
    /// `n <= self.capacity()`, and bytes `0..n` are initialised. Every byte of a buffer's capacity always is
    /// (its memory comes zero-filled from the OS and nothing this crate offers writes uninitialised bytes into
    /// it), so in practice the one requirement is `n <= capacity()`: a larger `n` would let the slice reach
    /// past the buffer's memory. It is `unsafe`, like `Vec::set_len`, because that bound is not checked in
    /// release builds (a `debug_assert!` checks it in debug builds); [`truncate`](Self::truncate) is the safe,
    /// checked way to shorten.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.clear();
    /// let p = buf.spare_capacity_mut().as_mut_ptr();
    /// // SAFETY: 5 bytes fit in the spare capacity (the whole buffer, after `clear`).
    /// unsafe { p.copy_from_nonoverlapping(b"hello".as_ptr(), 5) };
    /// // SAFETY: 5 <= capacity, and the bytes are initialised (we just wrote them).
    /// unsafe { buf.set_len(5) };
    /// assert_eq!(&buf[..], b"hello");
    /// # Ok(()) }
    /// ```
    #[inline]
    pub unsafe fn set_len(&mut self, n: usize) {
        debug_assert!(
            n <= self.capacity(),
            "AlignedBuf::set_len({n}) above the capacity {}",
            self.capacity()
        );
        self.len = n;
    }

    /// Shortens the logical length to `n` bytes; does nothing if `n >= len()` (as `Vec::truncate`: it never
    /// grows the buffer). The bytes past `n` stay in the buffer's memory until it is released (and are zeroed
    /// then only under [`zero_on_release`](crate::PoolBuilder::zero_on_release)).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(10);
    /// assert_eq!(buf.len(), 10);
    /// buf.truncate(20); // no-op
    /// assert_eq!(buf.len(), 10);
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn truncate(&mut self, n: usize) {
        if n < self.len {
            self.len = n;
        }
    }

    /// Sets the logical length to 0, to start an append ([`std::io::Write`], `bytes::BufMut`). Nothing is
    /// zeroed (see [`zeroize`](Self::zeroize)).
    ///
    /// # Examples
    /// ```
    /// use std::io::Write;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.clear();
    /// write!(buf, "id={}", 42)?;
    /// assert_eq!(&buf[..], b"id=42");
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The bytes between [`len`](Self::len) and [`capacity`](Self::capacity), to fill before growing the length
    /// with [`set_len`](Self::set_len) (a read into the free part of the buffer).
    ///
    /// Unlike `Vec::spare_capacity_mut` this is `&mut [u8]`, not `&mut [MaybeUninit<u8>]`: the spare bytes are
    /// initialised (old contents or zeros), and a `MaybeUninit` slice would let safe code store uninitialised
    /// bytes into memory that the pool hands out again, initialised, to the next holder.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.clear();
    /// let spare = buf.spare_capacity_mut();
    /// assert_eq!(spare.len(), pool.buf_size());
    /// spare[..2].copy_from_slice(b"ok");
    /// // SAFETY: 2 <= capacity; the bytes are initialised.
    /// unsafe { buf.set_len(2) };
    /// assert_eq!(&buf[..], b"ok");
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn spare_capacity_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        // SAFETY: `len <= capacity` (the type's invariant), so `ptr + len .. ptr + capacity` lies in the buffer's
        // mapped, initialised memory. The returned borrow holds `&mut self`, so no other reference to any of the
        // buffer's bytes exists while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), cap - self.len) }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` (`len <= capacity`) is mapped, readable and initialised (anonymous memory is
        // zero-filled, and nothing writes uninitialised bytes into it), and is owned by this handle alone until
        // it is dropped (see the Send impl).
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

/// The filled bytes (`&buf[..len()]`).
///
/// ```
/// fn checksum(data: impl AsRef<[u8]>) -> u32 {
///     data.as_ref().iter().map(|&b| u32::from(b)).sum()
/// }
/// let pool = pagepool::PagePool::builder().capacity(1).build().unwrap();
/// let mut buf = pool.acquire().unwrap();
/// buf.truncate(2);
/// buf.copy_from_slice(&[1, 2]);
/// assert_eq!(checksum(buf), 3);
/// ```
impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The filled bytes, mutably.
///
/// ```
/// fn zero(mut data: impl AsMut<[u8]>) {
///     data.as_mut().fill(0);
/// }
/// let pool = pagepool::PagePool::builder().capacity(1).build().unwrap();
/// let mut buf = pool.acquire().unwrap();
/// zero(&mut buf);
/// assert!(buf.iter().all(|&b| b == 0));
/// ```
impl AsMut<[u8]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// The filled bytes. `AlignedBuf` implements no `Eq`, `Ord` or `Hash` of its own, so nothing can disagree
/// with the slice's.
///
/// ```
/// use std::borrow::Borrow;
/// let pool = pagepool::PagePool::builder().capacity(1).build().unwrap();
/// let mut buf = pool.acquire().unwrap();
/// buf.truncate(4);
/// let bytes: &[u8] = buf.borrow();
/// assert_eq!(bytes.len(), 4);
/// ```
impl Borrow<[u8]> for AlignedBuf {
    fn borrow(&self) -> &[u8] {
        self
    }
}

/// The filled bytes, mutably.
///
/// ```
/// use std::borrow::BorrowMut;
/// let pool = pagepool::PagePool::builder().capacity(1).build().unwrap();
/// let mut buf = pool.acquire().unwrap();
/// let bytes: &mut [u8] = buf.borrow_mut();
/// bytes[0] = 1;
/// assert_eq!(buf[0], 1);
/// ```
impl BorrowMut<[u8]> for AlignedBuf {
    fn borrow_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Appends after [`len`](AlignedBuf::len), up to the capacity. Like `&mut [u8]`'s `Write`, a write that does not
/// fit is short (it writes what fits and returns that count) and a write into a full buffer returns `Ok(0)`,
/// so `write_all` then fails with [`io::ErrorKind::WriteZero`]; nothing else fails. `flush` does nothing.
///
/// ```
/// use std::io::Write;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pagepool::PagePool::builder().capacity(1).build()?;
/// let mut buf = pool.acquire()?;
/// let cap = buf.capacity();
/// buf.truncate(cap - 2);
/// assert_eq!(buf.write(b"abc")?, 2); // short: two bytes of room
/// assert_eq!(buf.write(b"d")?, 0); // full
/// assert_eq!(buf.write_all(b"e").unwrap_err().kind(), std::io::ErrorKind::WriteZero);
/// assert_eq!(&buf[cap - 2..], b"ab");
/// # Ok(()) }
/// ```
impl io::Write for AlignedBuf {
    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let spare = self.spare_capacity_mut();
        let n = data.len().min(spare.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `bytes::BufMut` (feature `bytes`): appends after [`len`](AlignedBuf::len), up to the capacity; the buffer
/// never grows. `remaining_mut()` is `capacity() - len()`. As the trait specifies, its `put*` methods panic
/// when the bytes do not fit (check `remaining_mut()` first, or use [`std::io::Write`], which writes short),
/// and so does `advance_mut` past the capacity.
///
/// ```
/// use bytes::BufMut;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pagepool::PagePool::builder().capacity(1).build()?;
/// let mut buf = pool.acquire()?;
/// buf.clear();
/// buf.put_u32(0xCAFE_F00D);
/// buf.put_slice(b"!");
/// assert_eq!(&buf[..], &[0xCA, 0xFE, 0xF0, 0x0D, b'!']);
/// assert_eq!(buf.remaining_mut(), buf.capacity() - 5);
/// # Ok(()) }
/// ```
#[cfg(feature = "bytes")]
// SAFETY: `remaining_mut` is exactly the length of `chunk_mut` (the spare capacity, which never moves while
// `&mut self` is held), and `advance_mut` grows the length only over bytes of that chunk (checked), which are
// initialised memory of the buffer, so the filled bytes stay initialised and in bounds.
unsafe impl bytes::BufMut for AlignedBuf {
    #[inline]
    fn remaining_mut(&self) -> usize {
        self.capacity() - self.len
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        let room = self.remaining_mut();
        assert!(
            cnt <= room,
            "AlignedBuf::advance_mut({cnt}) past the capacity: {room} bytes remain"
        );
        self.len += cnt;
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        bytes::buf::UninitSlice::new(self.spare_capacity_mut())
    }
}

/// `zeroize::Zeroize` (feature `zeroize`): [`AlignedBuf::zeroize`], volatile zeroing of the whole capacity, so
/// a buffer works inside `zeroize::Zeroizing` (zeroed when dropped, before it goes back to the pool).
///
/// ```
/// use zeroize::Zeroizing;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pagepool::PagePool::builder().capacity(1).build()?;
/// let mut key = Zeroizing::new(pool.acquire()?);
/// key[..6].copy_from_slice(b"secret");
/// drop(key); // zeroed, then released
/// assert!(pool.acquire()?.iter().all(|&b| b == 0));
/// # Ok(()) }
/// ```
#[cfg(feature = "zeroize")]
impl zeroize::Zeroize for AlignedBuf {
    fn zeroize(&mut self) {
        AlignedBuf::zeroize(self);
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
            return drop_scrubbed(self.pool, self.slot, self.ptr);
        }
        // The whole capacity, whatever the logical length (a no-op, the load included, without ASan).
        crate::sys::poison(self.ptr.as_ptr(), inner.buf_size());
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

/// The drop of a pooled buffer of a pool with a memory policy: scrub the whole capacity (not only the logical
/// length: bytes past it may hold a secret too), then release.
#[cold]
#[inline(never)]
fn drop_scrubbed(pool: NonNull<Inner>, slot: u32, ptr: NonNull<u8>) {
    // SAFETY: the dropped buffer owned one reference on `pool`, which keeps Inner alive.
    let inner = unsafe { pool.as_ref() };
    let len = inner.buf_size();
    inner.mem.on_release(ptr, len);
    crate::sys::poison(ptr.as_ptr(), len);
    // SAFETY: the dropped buffer owned the slot and one reference; it is never used again.
    unsafe { Inner::release(pool, slot, ptr) }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AlignedBuf");
        d.field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("capacity", &self.capacity());
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
