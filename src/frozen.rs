//! [`FrozenBuf`]: a shared, read-only view of a frozen [`AlignedBuf`].

use crate::AlignedBuf;
use std::borrow::Borrow;
use std::fmt;
use std::ops::{Bound, Deref, RangeBounds};
use std::sync::Arc;

/// The filled bytes of an [`AlignedBuf`], shared read-only: made by [`AlignedBuf::freeze`].
///
/// Cloning is one atomic increment (it is an `Arc<AlignedBuf>` and a range); every clone and every sub-slice
/// ([`slice`](Self::slice), [`split_to`](Self::split_to), [`split_off`](Self::split_off)) is an owned,
/// `Send + Sync`, `'static` handle, so parts of one buffer can go to different threads or tasks. The buffer
/// goes back to its pool when the last handle is dropped, through the buffer's own drop: zeroed first under
/// [`zero_on_release`](crate::PoolBuilder::zero_on_release), poisoned under
/// [`poison_on_release`](crate::PoolBuilder::poison_on_release), and it keeps the pool's memory alive like a
/// buffer does (the `PagePool` handles may go first). With the `bytes` feature it converts into a
/// `bytes::Bytes` without copying.
///
/// The range methods come in pairs: `try_*` returns `None` for an out-of-range argument; the plain one panics
/// on it, as `bytes::Bytes` does (a documented panic for call sites whose range is correct by construction).
///
/// # Examples
/// ```
/// use std::io::Write;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pagepool::PagePool::builder().capacity(1).build()?;
/// let mut buf = pool.acquire()?;
/// buf.clear();
/// buf.write_all(b"GET /index.html")?;
/// let mut req = buf.freeze();
/// let method = req.split_to(3); // req is now b" /index.html"
/// assert_eq!(&method[..], b"GET");
/// assert_eq!(req.try_slice(1..).as_deref(), Some(&b"/index.html"[..]));
/// assert!(req.try_slice(..100).is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FrozenBuf {
    buf: Arc<AlignedBuf>,
    /// `start <= end <= buf.len()`.
    start: usize,
    end: usize,
}

impl AlignedBuf {
    /// Shares the filled bytes read-only: a cheap-to-clone, `Send + Sync` [`FrozenBuf`](crate::FrozenBuf) over
    /// `self[..len()]`, whose sub-slices are owned handles too. The buffer goes back to the pool (zeroed first
    /// under [`zero_on_release`](crate::PoolBuilder::zero_on_release)) when the last handle is dropped. Costs
    /// one small heap allocation (the shared count).
    ///
    /// # Examples
    /// ```
    /// use std::io::Write;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.clear();
    /// buf.write_all(b"header:body")?;
    /// let frozen = buf.freeze();
    /// let body = frozen.slice(7..);
    /// std::thread::spawn(move || assert_eq!(&body[..], b"body")).join().unwrap();
    /// assert_eq!(&frozen[..6], b"header");
    /// drop(frozen); // the last handle: the buffer is home
    /// assert_eq!(pool.stats().in_use, 0);
    /// # Ok(()) }
    /// ```
    pub fn freeze(self) -> FrozenBuf {
        FrozenBuf::new(self)
    }
}

impl FrozenBuf {
    pub(crate) fn new(buf: AlignedBuf) -> Self {
        let end = buf.len();
        FrozenBuf {
            buf: Arc::new(buf),
            start: 0,
            end,
        }
    }

    /// The bytes this handle views.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(8);
    /// let frozen = buf.freeze();
    /// assert_eq!(frozen.len(), 8);
    /// assert_eq!(frozen.slice(2..5).len(), 3);
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True if this handle views no bytes.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let frozen = pool.acquire()?.freeze();
    /// assert!(!frozen.is_empty());
    /// assert!(frozen.slice(..0).is_empty());
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The viewed bytes (also through `Deref`).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf[..2].copy_from_slice(b"hi");
    /// buf.truncate(2);
    /// assert_eq!(buf.freeze().as_slice(), b"hi");
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Handles that view the same buffer, this one included (the buffer goes home when this reaches 0). A
    /// `bytes::Bytes` made from a handle (feature `bytes`) counts as one, however many clones of the `Bytes`
    /// exist: they share that handle.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let frozen = pool.acquire()?.freeze();
    /// let half = frozen.slice(..10);
    /// assert_eq!(frozen.handles(), 2);
    /// drop(half);
    /// assert_eq!(frozen.handles(), 1);
    /// # Ok(()) }
    /// ```
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.buf)
    }

    /// The bytes of `range` (relative to this handle's view) as a new handle on the same buffer, or `None` if
    /// the range is out of bounds or decreasing (`start > end`). No copy.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(10);
    /// let frozen = buf.freeze();
    /// assert_eq!(frozen.try_slice(2..=4).map(|s| s.len()), Some(3));
    /// assert!(frozen.try_slice(5..11).is_none());
    /// assert!(frozen.try_slice(6..5).is_none());
    /// # Ok(()) }
    /// ```
    pub fn try_slice(&self, range: impl RangeBounds<usize>) -> Option<Self> {
        let len = self.len();
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1)?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => len,
        };
        if start > end || end > len {
            return None;
        }
        Some(FrozenBuf {
            buf: Arc::clone(&self.buf),
            start: self.start + start,
            end: self.start + end,
        })
    }

    /// [`try_slice`](Self::try_slice) for a range known to be in bounds.
    ///
    /// # Panics
    /// If the range is out of bounds or decreasing (where `try_slice` returns `None`), like `bytes::Bytes::slice`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(10);
    /// let tail = buf.freeze().slice(4..);
    /// assert_eq!(tail.len(), 6);
    /// # Ok(()) }
    /// ```
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Self {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        match self.try_slice((start, end)) {
            Some(s) => s,
            None => panic!(
                "FrozenBuf::slice({start:?}, {end:?}) out of bounds for a view of {} bytes",
                self.len()
            ),
        }
    }

    /// Splits off the first `at` bytes: this handle keeps `[at, len)` and the returned one views `[0, at)`.
    /// `None` (and this handle unchanged) if `at > len()`. No copy.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(10);
    /// let mut rest = buf.freeze();
    /// let head = rest.try_split_to(4).unwrap();
    /// assert_eq!((head.len(), rest.len()), (4, 6));
    /// assert!(rest.try_split_to(7).is_none());
    /// # Ok(()) }
    /// ```
    pub fn try_split_to(&mut self, at: usize) -> Option<Self> {
        let head = self.try_slice(..at)?;
        self.start += at;
        Some(head)
    }

    /// [`try_split_to`](Self::try_split_to) for `at <= len()`.
    ///
    /// # Panics
    /// If `at > len()`, like `bytes::Bytes::split_to`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(10);
    /// let mut rest = buf.freeze();
    /// assert_eq!(rest.split_to(4).len(), 4);
    /// assert_eq!(rest.len(), 6);
    /// # Ok(()) }
    /// ```
    pub fn split_to(&mut self, at: usize) -> Self {
        let len = self.len();
        match self.try_split_to(at) {
            Some(head) => head,
            None => panic!("FrozenBuf::split_to({at}) out of bounds for a view of {len} bytes"),
        }
    }

    /// Splits off the bytes from `at` on: this handle keeps `[0, at)` and the returned one views `[at, len)`.
    /// `None` (and this handle unchanged) if `at > len()`. No copy.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(10);
    /// let mut head = buf.freeze();
    /// let tail = head.try_split_off(4).unwrap();
    /// assert_eq!((head.len(), tail.len()), (4, 6));
    /// assert!(head.try_split_off(5).is_none());
    /// # Ok(()) }
    /// ```
    pub fn try_split_off(&mut self, at: usize) -> Option<Self> {
        let tail = self.try_slice(at..)?;
        self.end = self.start + at;
        Some(tail)
    }

    /// [`try_split_off`](Self::try_split_off) for `at <= len()`.
    ///
    /// # Panics
    /// If `at > len()`, like `bytes::Bytes::split_off`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let mut buf = pool.acquire()?;
    /// buf.truncate(10);
    /// let mut head = buf.freeze();
    /// assert_eq!(head.split_off(4).len(), 6);
    /// assert_eq!(head.len(), 4);
    /// # Ok(()) }
    /// ```
    pub fn split_off(&mut self, at: usize) -> Self {
        let len = self.len();
        match self.try_split_off(at) {
            Some(tail) => tail,
            None => panic!("FrozenBuf::split_off({at}) out of bounds for a view of {len} bytes"),
        }
    }

    /// The buffer back, writable, if this is its last handle (`handles() == 1`); its logical length is what it
    /// was at [`freeze`](AlignedBuf::freeze), whatever this handle's view. Otherwise the handle comes back
    /// unchanged in `Err`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = pagepool::PagePool::builder().capacity(1).build()?;
    /// let frozen = pool.acquire()?.freeze();
    /// let part = frozen.slice(..8);
    /// let frozen = frozen.try_unfreeze().unwrap_err(); // `part` still views it
    /// drop(part);
    /// let mut buf = frozen.try_unfreeze().unwrap();
    /// buf[0] = 1;
    /// # Ok(()) }
    /// ```
    pub fn try_unfreeze(self) -> Result<AlignedBuf, Self> {
        let FrozenBuf { buf, start, end } = self;
        Arc::try_unwrap(buf).map_err(|buf| FrozenBuf { buf, start, end })
    }
}

impl Deref for FrozenBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The viewed bytes.
///
/// ```
/// let pool = pagepool::PagePool::builder().capacity(1).build().unwrap();
/// let frozen = pool.acquire().unwrap().freeze();
/// let bytes: &[u8] = frozen.as_ref();
/// assert_eq!(bytes.len(), pool.buf_size());
/// ```
impl AsRef<[u8]> for FrozenBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// The viewed bytes. `FrozenBuf` implements no `Eq`, `Ord` or `Hash` of its own, so nothing can disagree with
/// the slice's.
///
/// ```
/// use std::borrow::Borrow;
/// let pool = pagepool::PagePool::builder().capacity(1).build().unwrap();
/// let frozen = pool.acquire().unwrap().freeze();
/// let bytes: &[u8] = frozen.borrow();
/// assert_eq!(bytes.len(), pool.buf_size());
/// ```
impl Borrow<[u8]> for FrozenBuf {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for FrozenBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrozenBuf")
            .field("ptr", &self.as_slice().as_ptr())
            .field("len", &self.len())
            .field("handles", &self.handles())
            .finish()
    }
}

/// A `bytes::Bytes` over the same bytes, without copying (feature `bytes`; `Bytes::from_owner`): the buffer
/// goes back to the pool when the last `Bytes` (and the last `FrozenBuf`) over it is dropped, on whichever
/// thread that is.
///
/// ```
/// use std::io::Write;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = pagepool::PagePool::builder().capacity(1).build()?;
/// let mut buf = pool.acquire()?;
/// buf.clear();
/// buf.write_all(b"payload")?;
/// let frozen = buf.freeze();
/// let ptr = frozen.as_ptr();
/// let bytes = bytes::Bytes::from(frozen);
/// assert_eq!((bytes.as_ptr(), &bytes[..]), (ptr, &b"payload"[..]));
/// drop(bytes);
/// assert_eq!(pool.stats().in_use, 0);
/// # Ok(()) }
/// ```
#[cfg(feature = "bytes")]
impl From<FrozenBuf> for bytes::Bytes {
    fn from(f: FrozenBuf) -> bytes::Bytes {
        bytes::Bytes::from_owner(f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn frozen_buf_is_send_sync_static() {
        assert_send_sync_static::<super::FrozenBuf>();
    }
}
