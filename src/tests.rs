//! Unit tests that need crate internals: fault injection into the `sys` layer at every `map` call site.
//!
//! Failures are injected per thread (see `sys::fault`), so these tests run in parallel with others safely, and
//! mapping leaks are counted per thread too (`sys::fault::live`).

use crate::sys::fault;
use crate::{AcquireError, ConfigError, OverflowPolicy, PagePool};

const ENOMEM: i32 = 12;

fn page() -> usize {
    crate::page_size()
}

/// A pool with 4 one-chunk-sized growth steps: 4 MiB chunks of `page` buffers is 1024 per chunk. No overflow
/// reserve: every overflow acquire maps (and every release unmaps), so each is a `map` call to fail.
fn multi_chunk(prealloc: bool, overflow: OverflowPolicy) -> Result<PagePool, ConfigError> {
    PagePool::builder()
        .overflow_decay(std::time::Duration::ZERO)
        .buf_size(page())
        .capacity(4 * ((4 << 20) / page()))
        .overflow(overflow)
        .prealloc(prealloc)
        .build()
}

fn os_errno(e: &AcquireError) -> Option<i32> {
    match e {
        AcquireError::Os { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

/// The scenario walked by the fault-injection test: build, grow through every chunk, overflow, release.
/// Returns the first error met, after checking the pool is consistent and still serves.
fn scenario(prealloc: bool) -> Result<(), String> {
    let pool = multi_chunk(prealloc, OverflowPolicy::Map).map_err(|e| {
        assert!(
            matches!(e, ConfigError::Os { ref source, .. } if source.raw_os_error() == Some(ENOMEM))
        );
        format!("build: {e}")
    })?;
    let cap = pool.capacity();
    let mut held = Vec::with_capacity(cap + 2);
    let mut first_err = None;
    for _ in 0..cap + 2 {
        match pool.acquire() {
            Ok(b) => held.push(b),
            Err(e) => {
                assert_eq!(os_errno(&e), Some(ENOMEM), "{e}");
                let s = pool.stats();
                assert_eq!(s.idle + s.in_use, s.pooled_buffers, "{s:?}");
                assert_eq!(s.in_use + s.overflow_in_use, held.len(), "{s:?}");
                assert_eq!(s.os_errors, 1, "{s:?}");
                first_err.get_or_insert(format!("acquire: {e}"));
            }
        }
    }
    // Each plan fails exactly one call, so from here on the pool must serve normally.
    while held.len() < cap + 2 {
        held.push(
            pool.acquire()
                .expect("pool serves after a transient failure"),
        );
    }
    let s = pool.stats();
    assert_eq!(s.pooled_buffers, cap);
    assert_eq!(s.overflow_in_use, 2);
    drop(held);
    let s = pool.stats();
    assert_eq!((s.idle, s.in_use, s.overflow_in_use), (cap, 0, 0), "{s:?}");
    assert_eq!(s.mapped_bytes, cap * page(), "{s:?}");
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[test]
fn fault_injection_walks_every_map_call() {
    for prealloc in [false, true] {
        let live0 = fault::live();
        // Dry run: count the map calls of the scenario (4 chunks + 2 overflow buffers).
        fault::fail_map_at(u64::MAX, ENOMEM);
        scenario(prealloc).expect("no failure injected");
        let calls = fault::clear();
        assert_eq!(calls, 6, "4 chunks and 2 overflow buffers");
        assert_eq!(fault::live(), live0, "dry run leaked a mapping");
        for n in 0..calls {
            fault::fail_map_at(n, ENOMEM);
            let r = scenario(prealloc);
            fault::clear();
            let err = r.expect_err("the injected failure must surface");
            let site = if prealloc && n < 4 {
                "build"
            } else {
                "acquire"
            };
            assert!(
                err.starts_with(site),
                "call {n} (prealloc {prealloc}): {err}"
            );
            assert_eq!(
                fault::live(),
                live0,
                "call {n} (prealloc {prealloc}) leaked a mapping"
            );
        }
    }
}

#[test]
fn chunk_failure_leaves_pool_empty_and_usable() {
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(8)
        .build()
        .unwrap();
    fault::fail_map_at(0, ENOMEM);
    let e = pool.acquire().unwrap_err();
    fault::clear();
    assert_eq!(os_errno(&e), Some(ENOMEM));
    assert!(e.to_string().contains("refused to map"), "{e}");
    let s = pool.stats();
    assert_eq!(
        (
            s.chunks,
            s.pooled_buffers,
            s.mapped_bytes,
            s.os_errors,
            s.acquires
        ),
        (0, 0, 0, 1, 1)
    );
    let b = pool.acquire().unwrap();
    assert!(!b.is_overflow());
    assert_eq!(pool.stats().chunks, 1);
}

#[test]
fn overflow_failure_returns_permit() {
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(1)
        .max_overflow(1)
        .build()
        .unwrap();
    let a = pool.acquire().unwrap();
    let before = pool.stats().mapped_bytes;
    fault::fail_map_at(0, ENOMEM);
    let e = pool.acquire().unwrap_err();
    fault::clear();
    assert_eq!(os_errno(&e), Some(ENOMEM));
    let s = pool.stats();
    assert_eq!(
        (s.overflow_in_use, s.overflow_maps, s.mapped_bytes),
        (0, 0, before)
    );
    // The permit came back: the single allowed overflow buffer can still be mapped.
    let b = pool.acquire().unwrap();
    assert!(b.is_overflow());
    drop((a, b));
}

#[test]
fn prealloc_failure_unmaps_what_was_mapped() {
    let live0 = fault::live();
    fault::fail_map_at(2, ENOMEM);
    let e = multi_chunk(true, OverflowPolicy::Fail).unwrap_err();
    fault::clear();
    assert!(
        matches!(e, ConfigError::Os { ref source, .. } if source.raw_os_error() == Some(ENOMEM)),
        "{e}"
    );
    assert_eq!(fault::live(), live0);
}

#[test]
fn other_errnos_pass_through() {
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(1)
        .build()
        .unwrap();
    fault::fail_map_at(0, 1 /* EPERM */);
    let e = pool.acquire().unwrap_err();
    fault::clear();
    assert_eq!(os_errno(&e), Some(1));
}

/// Every memory-policy call made for a fresh chunk or overflow buffer (guard pages, dump and fork advice,
/// locking, huge-page advice), failed in turn: each failure surfaces as the typed error with its errno, the
/// half-prepared mapping is unmapped, lock accounting stays exact, and the pool serves normally afterwards.
#[test]
fn fault_injection_walks_every_policy_call() {
    use crate::LockPolicy;
    #[cfg(target_os = "linux")]
    use crate::{ForkPolicy, HugePages};
    type MakePool = Box<dyn Fn() -> PagePool>;
    let configs: Vec<(&str, MakePool)> = vec![
        (
            "secrets",
            Box::new(|| {
                PagePool::builder()
                    .buf_size(page())
                    .capacity(4)
                    .thread_cache(0)
                    .guard_pages(true)
                    .lock_memory(LockPolicy::Required)
                    .build()
                    .unwrap()
            }),
        ),
        #[cfg(target_os = "linux")]
        (
            "advice",
            Box::new(|| {
                PagePool::builder()
                    .buf_size(page())
                    .capacity(4)
                    .thread_cache(0)
                    .dont_dump(true)
                    .on_fork(ForkPolicy::WipeOnFork)
                    .huge_pages(HugePages::Transparent)
                    .lock_memory(LockPolicy::BestEffort)
                    .build()
                    .unwrap()
            }),
        ),
    ];
    // Acquires the whole pool plus one overflow buffer under the injection plan; returns the first error and
    // the number of policy calls made.
    let run = |pool: &PagePool| -> (Option<AcquireError>, u64) {
        let mut held = Vec::new();
        let mut err = None;
        for _ in 0..pool.capacity() + 2 {
            match pool.acquire() {
                Ok(b) => held.push(b),
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        }
        // One acquire failed at most; top up to capacity + 1 without injection.
        let calls = fault::clear_calls();
        while held.len() < pool.capacity() + 1 {
            held.push(pool.acquire().expect("serves after the failure"));
        }
        let s = pool.stats();
        assert_eq!(s.pooled_buffers, pool.capacity(), "{s:?}");
        assert!(s.locked_bytes <= s.mapped_bytes, "{s:?}");
        drop(held);
        let s = pool.stats();
        assert_eq!((s.in_use, s.overflow_in_use), (0, 0), "{s:?}");
        (err, calls)
    };
    for (name, make) in &configs {
        let live0 = fault::live();
        fault::fail_call_at(u64::MAX, ENOMEM);
        let pool = make();
        let (err, calls) = run(&pool);
        assert!(err.is_none(), "{err:?}");
        drop(pool);
        assert_eq!(fault::live(), live0);
        assert!(calls >= 3, "{name}: {calls} policy calls");
        println!("{name}: {calls} policy calls, each failed in turn");
        for n in 0..calls {
            let pool = make();
            let locked0 = pool.stats().locked_bytes;
            fault::fail_call_at(n, ENOMEM);
            let (err, _) = run(&pool);
            match (name, err) {
                // BestEffort swallows a failed lock (it warns instead); every other failure surfaces.
                (&"advice", None) => {}
                (_, Some(e)) => assert_eq!(os_errno(&e), Some(ENOMEM), "{name} call {n}: {e}"),
                (_, None) => panic!("{name} call {n}: the injected failure did not surface"),
            }
            // Lock accounting covers exactly the memory still mapped: nothing counted for an unmapped failure.
            let s = pool.stats();
            assert!(
                s.locked_bytes >= locked0 && s.locked_bytes <= s.mapped_bytes,
                "{s:?}"
            );
            drop(pool);
            assert_eq!(fault::live(), live0, "{name} call {n} leaked a mapping");
        }
    }
}

#[test]
fn trim_failure_keeps_every_buffer() {
    let pool = PagePool::builder()
        .buf_size(page())
        .capacity(8)
        .thread_cache(0)
        .build()
        .unwrap();
    let held: Vec<_> = (0..8).map(|_| pool.acquire().unwrap()).collect();
    drop(held);
    fault::fail_call_at(0, 22 /* EINVAL */);
    let given = pool.trim();
    fault::clear_calls();
    assert_eq!(given, 0);
    let s = pool.stats();
    assert_eq!(
        (s.idle, s.pooled_buffers, s.trimmed_bytes),
        (8, 8, 0),
        "{s:?}"
    );
    // A later trim works, and every buffer is still there.
    assert_eq!(pool.trim(), 8 * page());
    let held: Vec<_> = (0..8).map(|_| pool.acquire().unwrap()).collect();
    assert!(held.iter().all(|b| !b.is_overflow()));
}

/// Also through the overflow reserve: the buffer is zeroed when it enters it, and unmapped by `trim`.
#[test]
fn overflow_buffers_are_zeroed_before_unmap() {
    use std::time::Duration;
    for (zero, decay) in [true, false]
        .into_iter()
        .flat_map(|z| [(z, Duration::ZERO), (z, Duration::from_secs(3600))])
    {
        let pool = PagePool::builder()
            .buf_size(page())
            .capacity(1)
            .zero_on_release(zero)
            .overflow_decay(decay)
            .build()
            .unwrap();
        let _pooled = pool.acquire().unwrap();
        let mut o = pool.acquire().unwrap();
        assert!(o.is_overflow());
        o.fill(0x5A);
        fault::watch_unmaps(true);
        drop(o);
        if !decay.is_zero() {
            assert_eq!(pool.stats().reserve_buffers, 1);
            pool.trim();
        }
        let seen = fault::watch_unmaps(false);
        // With the option the mapping holds only zeros when it is unmapped; without, the secret is still there.
        assert_eq!(seen, vec![zero]);
    }
}

/// A subscriber that panics on pagepool events whose message contains `.0` (the foreign-code tests:
/// tests/foreign_code.rs).
struct PanickingSubscriber(&'static str);

/// Reads an event's message (also for `tests/recommit.rs`).
pub(super) struct Message(pub(super) String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for PanickingSubscriber {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "pagepool"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        if m.0.contains(self.0) {
            std::panic::panic_any("subscriber panics (on purpose)");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The `BestEffort` locking warning was emitted while its chunk was half mapped (state `MAPPING`, budget
/// reserved, mapping not stored): a panicking subscriber left the chunk "being mapped" for good, and every later
/// acquire spun waiting for it. An mlock failure is injected (root's CAP_IPC_LOCK makes real ones rare here).
#[test]
fn lock_shortfall_warning_panics() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let capacity = 4;
        let build = || {
            PagePool::builder()
                .capacity(capacity)
                .thread_cache(0)
                .overflow(OverflowPolicy::Fail)
                .lock_memory(crate::LockPolicy::BestEffort)
                .build()
                .unwrap()
        };
        // Find the call to fail: the first `lock` of the first chunk (advice calls may come before it).
        let mut tried = 0;
        let pool = loop {
            let pool = build();
            fault::fail_call_at(tried, ENOMEM);
            let r =
                tracing::subscriber::with_default(PanickingSubscriber("could not lock"), || {
                    // Scoped subscribers on parallel test threads race with callsite registration, which can
                    // cache "never" for a callsite: re-ask every callsite now that this one is in place.
                    tracing::callsite::rebuild_interest_cache();
                    catch_unwind(AssertUnwindSafe(|| pool.acquire()))
                });
            fault::clear_calls();
            if r.is_err() {
                break pool;
            }
            tried += 1;
            assert!(tried < 16, "no call made the lock warning");
        };
        // Every slot of the chunk is still there, and nothing waits for a mapping that will never finish.
        let bufs: Vec<_> = (0..capacity).map(|_| pool.acquire().unwrap()).collect();
        tx.send(bufs.iter().filter(|b| !b.is_overflow()).count())
            .unwrap();
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert_eq!(got, Ok(4), "acquire hung or lost the chunk");
}

mod reclaim;
mod recommit;

/// Issue #13, item 6, at the OS layer: a `MAP_HUGETLB` mapping is aligned to the huge page size and no further,
/// so `map_with` refuses a stronger alignment (and a length that is not whole huge pages) with `InvalidInput`
/// before calling the OS, in every build (it used to be a `debug_assert!` only).
#[test]
fn hugetlb_mapping_refuses_what_it_cannot_give() {
    let huge = crate::sys::HUGE_PAGE;
    for (len, align) in [(huge, 2 * huge), (2 * huge, 1 << 30), (page(), page())] {
        let e = crate::sys::map_with(len, align, false, true).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::InvalidInput,
            "{len} {align}: {e}"
        );
    }
    assert_eq!(fault::live(), 0);
}
