//! The releaser's side of the wake handshake (`wait.rs`): the wake check after a buffer, a permit or budget
//! became available, serving queued waiters, and the overflow permits (with their budget) that waiters and the
//! overflow path take and give back.

use crate::shared::Inner;
use crate::wait::Grant;
use std::sync::atomic::Ordering::SeqCst;

impl Inner {
    /// The releaser's half of the wake handshake (`wait.rs`), after making a buffer, a permit or budget
    /// available: fence, then serve waiters if there are any. Needs a caller that holds a reference.
    #[cold]
    #[inline(never)]
    pub(crate) fn after_release(&self) {
        crate::sync::fence(SeqCst);
        if self.waiters.any() {
            self.serve();
        }
    }

    /// Hands whatever is available to queued waiters, front first.
    fn serve(&self) {
        self.waiters.serve(|| self.take_for_waiter());
    }

    /// One grant for a waiter, without blocking or calling the OS: an idle slot (freelist, then a depot
    /// magazine, whose other slots go to the freelist) with a reference taken for it, or an overflow permit
    /// with its budget.
    fn take_for_waiter(&self) -> Option<Grant> {
        let slot = self.free.pop().or_else(|| {
            let d = self.depot.as_ref()?;
            let mut slots = Vec::new();
            if !d.take(self.free.links(), &mut slots) {
                return None;
            }
            let first = slots.pop();
            slots.into_iter().for_each(|s| self.free.push(s));
            first
        });
        if let Some(slot) = slot {
            // A waiter holds a handle, so the count cannot be zero here.
            self.add_refs(1);
            return Some(Grant::Slot(slot));
        }
        // A reserved mapping beats a permit: no system call for the waiter. (No lock is held but the list's:
        // the reserve's own lock is always taken inside it, never the other way round.)
        if let Some(b) = self.overflow.reserve.take() {
            return Some(Grant::Mapping(b));
        }
        // Under the list lock: a permit rolled back here needs no wake check, since any waiter that could
        // want it registers (under the same lock) after this serve and looks again.
        self.reserve_overflow().ok().map(|_| Grant::Permit)
    }

    /// Takes an overflow permit and its bytes of budget, both or neither: `Ok(overflow buffers out before)`.
    /// `Err(true)`: a permit was taken and given back because the budget refused, so a waiter that looked
    /// meanwhile may have missed it; callers outside the list lock then run the wake check.
    pub(crate) fn reserve_overflow(&self) -> Result<usize, bool> {
        let before = self.overflow.take_permit().ok_or(false)?;
        if self.budget.try_reserve(self.overflow.reserve_bytes()) {
            return Ok(before);
        }
        self.overflow.return_permit();
        Err(true)
    }

    /// Gives back an overflow permit and the `bytes` of budget it held: to the front waiter if there is one
    /// (a permit grant stands for one buffer of the pool's size, so the bytes of a larger buffer from
    /// `acquire_len` above that go back to the budget first), else to the pool (then the wake check). Needs a
    /// caller that holds a reference.
    pub(crate) fn give_back_permit(&self, bytes: usize) {
        if self.waitable && self.waiters.any() {
            let own = self.overflow.reserve_bytes();
            let extra = bytes.saturating_sub(own);
            if extra > 0 {
                self.budget.give_back(extra);
            }
            if self.waiters.offer(Grant::Permit).is_ok() {
                return;
            }
            self.overflow.return_permit();
            self.budget.give_back(bytes - extra);
            self.after_release();
            return;
        }
        self.overflow.return_permit();
        self.budget.give_back(bytes);
        if self.waitable {
            self.after_release();
        }
    }
}
