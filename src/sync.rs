//! The one place that picks `std` or `loom` synchronisation primitives.
//!
//! Everything in the crate that the loom models must see (atomics, `Arc`, `Mutex`) is imported from here.
//! Under `--cfg loom` these are loom's instrumented twins, so the models explore every interleaving of the
//! pool's own logic; in normal builds they are the `std` types at zero cost.

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize},
    Arc, Mutex,
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize},
    Arc,
};

#[cfg(all(not(loom), not(pagepool_tsan)))]
pub(crate) use std::sync::Mutex;
#[cfg(all(not(loom), pagepool_tsan))]
pub(crate) use tsan::Mutex;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicBool;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicBool;

/// Loom's `UnsafeCell` under `--cfg loom` (which reports two threads reaching the contents without an order
/// between them), and a zero-cost twin with the same `with_mut` interface otherwise.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// See the loom version: `std::cell::UnsafeCell` behind loom's interface.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(t: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(t))
    }

    /// Calls `f` with a pointer to the contents; the caller dereferences it under its own exclusion rule.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// The owner's half of an asymmetric barrier: between a store and a load of the owner's hit path, this costs
/// nothing at run time (it only stops the compiler from moving the accesses across it). It orders them because
/// the other half, [`heavy_barrier`], makes every running thread of the process execute a full barrier (the
/// pair `membarrier(2)` and `FlushProcessWriteBuffers` exist for), so of "owner: store, light, load" and
/// "other: store, heavy, load" one side's load always sees the other side's store. Loom has no such pair: it
/// models both halves as `SeqCst` fences, the ordering they give together.
#[inline(always)]
pub(crate) fn light_barrier() {
    #[cfg(loom)]
    fence(std::sync::atomic::Ordering::SeqCst);
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Whether [`heavy_barrier`] can work here (its one-time setup done); `false`: the OS offers none.
pub(crate) fn heavy_barrier_ready() -> bool {
    #[cfg(loom)]
    {
        true
    }
    #[cfg(not(loom))]
    {
        crate::sys::process_barrier_ready()
    }
}

/// The rare side's half of the asymmetric barrier (see [`light_barrier`]). `false`: the OS offers none
/// (`membarrier` refused or missing, or a platform without one), and the caller must not rely on the pair.
pub(crate) fn heavy_barrier() -> bool {
    #[cfg(loom)]
    {
        fence(std::sync::atomic::Ordering::SeqCst);
        true
    }
    #[cfg(not(loom))]
    {
        crate::sys::process_barrier()
    }
}

#[cfg(loom)]
pub(crate) use loom::thread::{current, yield_now, Thread};
#[cfg(not(loom))]
pub(crate) use std::thread::{current, yield_now, Thread};

/// Parks this thread until unparked, or until `deadline` (spurious wake-ups are possible: callers loop).
/// Under loom there is no time: the deadline is ignored and the models never rely on it.
#[cfg(not(loom))]
pub(crate) fn park_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => {
            std::thread::park_timeout(d.saturating_duration_since(std::time::Instant::now()))
        }
        None => std::thread::park(),
    }
}

/// See the non-loom version.
#[cfg(loom)]
pub(crate) fn park_until(_deadline: Option<std::time::Instant>) {
    loom::thread::park();
}

/// Locks `m`, ignoring poisoning: the data behind our mutexes (chunk bookkeeping) stays consistent even if a
/// holder panicked, because every critical section is a single store.
#[cfg(not(all(not(loom), pagepool_tsan)))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// See the other `lock`.
#[cfg(all(not(loom), pagepool_tsan))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    m.lock()
}

/// `std::sync::Mutex` as ThreadSanitizer builds see it (`--cfg pagepool_tsan`, set by `ci/sanitizers.sh`).
///
/// std is precompiled here (no `rust-src`, so no `-Zbuild-std`): the inlined uncontended lock and the unlock
/// are instrumented, but a lock that had to wait takes its `Acquire` inside std's uninstrumented slow path,
/// and TSan then reports the critical sections of two threads as a race (it did, on the overflow reserve's
/// list). This wrapper adds what TSan can see: each holder stores to `handoff` with `Release` before it
/// unlocks, and each new holder loads it with `Acquire` once it holds the lock. The edge it shows TSan is one
/// the mutex really provides; it adds none the pool relies on. Normal builds use std's `Mutex` itself.
#[cfg(all(not(loom), pagepool_tsan))]
mod tsan {
    use std::sync::atomic::{
        AtomicUsize,
        Ordering::{Acquire, Release},
    };

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T> {
        inner: std::sync::Mutex<T>,
        handoff: AtomicUsize,
    }

    impl<T> Mutex<T> {
        pub(crate) const fn new(t: T) -> Self {
            Mutex {
                inner: std::sync::Mutex::new(t),
                handoff: AtomicUsize::new(0),
            }
        }

        /// Locks, ignoring poisoning (as `super::lock`).
        pub(crate) fn lock(&self) -> Guard<'_, T> {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            // Acquire: pairs with the previous holder's Release store in `Guard::drop`.
            self.handoff.load(Acquire);
            Guard {
                inner,
                handoff: &self.handoff,
            }
        }
    }

    pub(crate) struct Guard<'a, T> {
        inner: std::sync::MutexGuard<'a, T>,
        handoff: &'a AtomicUsize,
    }

    impl<T> Drop for Guard<'_, T> {
        fn drop(&mut self) {
            // Release, before `inner` (dropped after this body) unlocks.
            self.handoff.store(0, Release);
        }
    }

    impl<T> std::ops::Deref for Guard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.inner
        }
    }

    impl<T> std::ops::DerefMut for Guard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.inner
        }
    }
}

/// Runs foreign code that a drop may reach (a buffer, a future, a pool handle, a thread-local destructor at
/// thread exit) or a waker: its panic is caught and dropped. A panic escaping a thread-local destructor aborts
/// the process whatever the caller does, and neither `std::thread::panicking` nor anything else tells such a
/// destructor apart, so these calls never let a panic out (docs/safety.md, "Foreign code").
#[inline]
pub(crate) fn foreign_quiet(f: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
}
