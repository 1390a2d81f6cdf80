//! [`Acquire`]: the future of [`PagePool::acquire_async`](crate::PagePool::acquire_async).
//!
//! Runtime-agnostic: a plain [`Future`] that registers the task's [`Waker`](std::task::Waker) in the pool's
//! waiter queue (`wait.rs`) and is woken by the release that hands it a buffer. No thread waits.

use crate::error::AcquireError;
use crate::pool::PagePool;
use crate::wait::{Waiters, Wake};
use crate::AlignedBuf;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Future returned by [`PagePool::acquire_async`]; resolves to a buffer or an error.
///
/// Dropping it while it waits (cancellation) withdraws it from the queue; a buffer that was handed to it in
/// the meantime is passed on to the next waiter, so cancelling never loses a buffer or a wake-up. Polling it
/// again after it has completed starts a fresh acquisition.
///
/// # Examples
/// ```
/// use pagepool::{OverflowPolicy, PagePool};
/// use std::future::Future;
/// use std::task::{Context, Poll};
/// let pool = PagePool::builder().capacity(1).max_overflow(0).overflow(OverflowPolicy::Wait).build().unwrap();
/// let held = pool.acquire().unwrap();
/// let mut fut = Box::pin(pool.acquire_async());
/// let waker = futures::task::noop_waker();
/// assert!(fut.as_mut().poll(&mut Context::from_waker(&waker)).is_pending()); // queued
/// assert_eq!(pool.stats().waiters, 1);
/// drop(held); // handed to the future
/// assert!(matches!(fut.as_mut().poll(&mut Context::from_waker(&waker)), Poll::Ready(Ok(_))));
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
#[must_use = "futures do nothing unless awaited or polled"]
pub struct Acquire<'a> {
    pool: &'a PagePool,
    /// Our place in the waiter queue once registered.
    id: Option<u64>,
}

impl<'a> Acquire<'a> {
    pub(crate) fn new(pool: &'a PagePool) -> Self {
        Acquire { pool, id: None }
    }
}

impl Future for Acquire<'_> {
    type Output = Result<AlignedBuf, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let pool = this.pool;
        if let Some(id) = this.id {
            return match pool.waiters().poll(id, Some(cx.waker())) {
                Some(g) => {
                    this.id = None;
                    Poll::Ready(pool.grant_to_buf(g))
                }
                None => Poll::Pending,
            };
        }
        match pool.take_or_exhausted() {
            Ok(Some(b)) => return Poll::Ready(Ok(b)),
            Ok(None) => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        match pool.register(Wake::Task(cx.waker().clone())) {
            Ok(Ok(b)) => Poll::Ready(Ok(b)),
            Ok(Err(id)) => {
                this.id = Some(id);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Some(g) = self.pool.waiters().cancel(id) {
                self.pool.give_back(g);
                // After the grant is passed on: a subscriber may panic (the future may be dropped while its
                // thread unwinds).
                crate::sync::foreign_quiet(
                    || tracing::trace!(target: "pagepool", "cancelled waiter passes its grant on"),
                );
            }
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("waiting", &self.id.is_some())
            .finish_non_exhaustive()
    }
}

impl PagePool {
    #[cfg(any(feature = "async", loom))]
    pub(crate) fn waiters(&self) -> &Waiters {
        &self.inner().waiters
    }

    /// Takes a buffer, waiting without a thread when the pool is at its limit under
    /// [`OverflowPolicy::Wait`](crate::OverflowPolicy::Wait) (cargo feature `async`). Runtime-agnostic: the returned
    /// [`Acquire`](crate::Acquire) future only uses the task's `Waker`, so it runs on any executor.
    ///
    /// Behaves like [`acquire_timeout`](Self::acquire_timeout) without a deadline: the same queue, hand-off
    /// and cache bypass. Wrap it in your runtime's timeout to bound the wait; dropping the future cancels it
    /// safely (a buffer handed to it meanwhile goes to the next waiter).
    ///
    /// # Errors
    /// - [`AcquireError::Exhausted`] at the limit under `Map` or `Fail` (it waits only under `Wait`).
    /// - [`AcquireError::Os`] when the OS refuses to map a chunk or an overflow buffer.
    ///
    /// # Examples
    /// ```
    /// use pagepool::{OverflowPolicy, PagePool};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PagePool::builder()
    ///     .capacity(1)
    ///     .max_overflow(0)
    ///     .overflow(OverflowPolicy::Wait)
    ///     .build()?;
    /// let held = pool.acquire()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(move || drop(held)); // wakes the task below
    ///     let buf = futures::executor::block_on(pool.acquire_async()).unwrap();
    ///     assert_eq!(buf.len(), pool.buf_size());
    /// });
    /// # Ok(()) }
    /// ```
    #[cfg(any(feature = "async", loom))]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    #[must_use = "the future does nothing unless awaited or polled"]
    pub fn acquire_async(&self) -> crate::acquire::Acquire<'_> {
        crate::acquire::Acquire::new(self)
    }
}
