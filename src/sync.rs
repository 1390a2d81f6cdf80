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
    Arc, Mutex,
};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;

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
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs foreign code that a drop may reach (a buffer, a future, a pool handle, a thread-local destructor at
/// thread exit) or a waker: its panic is caught and dropped. A panic escaping a thread-local destructor aborts
/// the process whatever the caller does, and neither `std::thread::panicking` nor anything else tells such a
/// destructor apart, so these calls never let a panic out (docs/safety.md, "Foreign code").
#[inline]
pub(crate) fn foreign_quiet(f: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
}
