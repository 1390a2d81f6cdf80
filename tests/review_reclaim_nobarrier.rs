//! Review of reclaim where the OS refuses `membarrier` (a seccomp filter, as in many sandboxes) and a tracing
//! subscriber panics on the one-time "membarrier unavailable" event (foreign code). `reclaim` sets `claim` on
//! every cache of the pool, then calls `process_barrier`, whose first call emits that event outside
//! `foreign_quiet`: the panic unwinds out of `reclaim` with every claim still set, and each owner of such a
//! cache then spins forever in `Stash::enter` (claim set, never dead).
//!
//! Linux x86_64 only (the filter checks the syscall number only).

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use pagepool::{OverflowPolicy, PagePool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const FOREIGN: &str = "subscriber panics (on purpose)";

struct Panicky;
impl tracing::Subscriber for Panicky {
    fn register_callsite(
        &self,
        m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if m.target() == "pagepool" {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "pagepool"
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct V(String);
        impl tracing::field::Visit for V {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut v = V(String::new());
        event.record(&mut v);
        if v.0.contains("membarrier") {
            std::panic::panic_any(FOREIGN);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Makes `membarrier` fail with ENOSYS for this thread and the threads it spawns from now on.
fn refuse_membarrier() {
    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    let prog = [
        SockFilter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ld [nr]
        SockFilter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::SYS_membarrier as u32,
        }, // jeq membarrier
        SockFilter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x0005_0000 | libc::ENOSYS as u32,
        }, // ret ERRNO(ENOSYS)
        SockFilter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }, // ret ALLOW
    ];
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: plain prctl calls with a valid filter program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, 2, &fprog as *const SockFprog, 0, 0),
            0
        );
    }
}

#[test]
fn panicking_subscriber_on_membarrier_refusal_strands_claims() {
    std::panic::set_hook(Box::new(|info| {
        if info.payload().downcast_ref::<&str>() != Some(&FOREIGN) {
            eprintln!("{info}");
        }
    }));
    refuse_membarrier();
    let pool = PagePool::builder()
        .buf_size(4096)
        .capacity(8)
        .thread_cache(4)
        .overflow(OverflowPolicy::Map)
        .build()
        .unwrap();
    // A worker caches idle slots, then waits.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let p = pool.clone();
    let worker = thread::spawn(move || {
        let held: Vec<_> = (0..4).map(|_| p.acquire().unwrap()).collect();
        drop(held); // into this thread's cache
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // An ordinary acquire: its cache holds slots.
        drop(p.acquire().unwrap());
        ready_tx.send(()).unwrap();
    });
    ready_rx.recv().unwrap();
    assert!(pool.stats().cached > 0);
    // Empty the shared pool on a third thread (filtered too, with the panicking subscriber): its acquire at the
    // empty shared pool reclaims; the first process_barrier emits the event, which panics out of `reclaim`.
    let (done_tx, done_rx) = mpsc::channel::<bool>();
    let p = pool.clone();
    thread::spawn(move || {
        // Control: REVIEW_NO_PANIC=1 runs the same program without the panicking subscriber (passes).
        let _sub = std::env::var("REVIEW_NO_PANIC")
            .is_err()
            .then(|| tracing::subscriber::set_default(Panicky));
        let mut held = Vec::new();
        let mut panicked = false;
        for _ in 0..8 {
            match catch_unwind(AssertUnwindSafe(|| p.acquire().unwrap())) {
                Ok(b) => held.push(b),
                Err(_) => panicked = true,
            }
        }
        done_tx.send(panicked).unwrap();
        drop(held); // home (no leak: ASan's LeakSanitizer runs this test)
    });
    let r = done_rx.recv_timeout(Duration::from_secs(5));
    assert!(
        r.is_ok(),
        "the acquiring thread hangs in Stash::enter on its own cache: the unwound reclaim left its claim set"
    );
    go_tx.send(()).unwrap();
    let r2 = ready_rx.recv_timeout(Duration::from_secs(5));
    assert!(
        r2.is_ok(),
        "the worker's acquire hangs: its cache's claim was left set by the unwound reclaim (panicked={r:?})"
    );
    worker.join().unwrap();
}
