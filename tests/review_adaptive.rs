//! Adversarial review of adaptive thread caches (issue #14, commits 24e0097 + 59d98af).
//! Real threads, plain `cargo test`. `cache_room` is private, so its conservation is checked through
//! behaviour: once every cache has trimmed/closed, a fresh thread must be able to grow its cache to the full
//! batch again (`stats().cached == batch`), which needs the room back.

use pagepool::{AcquireError, OverflowPolicy, PagePool, PoolBuilder};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

/// Tests here that look at `stats()` must not run side by side with each other's pools in a way that
/// matters: each builds its own pool, so no lock is needed for correctness; this only keeps the 2-core CI
/// machine from running every thread-heavy test at once.
static SERIAL: Mutex<()> = Mutex::new(());
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn cycle(pool: &PagePool, n: usize, rounds: usize) {
    for _ in 0..rounds {
        let held: Vec<_> = (0..n).map(|_| pool.acquire().unwrap()).collect();
        drop(held);
    }
}

fn builder(capacity: usize) -> PoolBuilder {
    PagePool::builder().buf_size(4096).capacity(capacity)
}

/// A fresh thread cycling `batch` twice must end with its whole batch cached (it grew). Needs the room.
fn fresh_thread_grows_to(pool: &PagePool, batch: usize) -> usize {
    let p = pool.clone();
    thread::spawn(move || {
        cycle(&p, batch, 2);
        p.stats().cached
    })
    .join()
    .unwrap()
}

// (2) Conservation over 1000 short threads: each grows its cache, then exits (close -> trim -> shrink).
#[test]
fn room_conserved_over_thousand_short_growing_threads() {
    let _s = serial();
    let pool = builder(1024).build().unwrap();
    assert_eq!((pool.thread_cache(), pool.max_thread_cache()), (16, 1024));
    for i in 0..1000 {
        let p = pool.clone();
        thread::spawn(move || cycle(&p, 64 + (i % 5) * 37, 2))
            .join()
            .unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.cached, 0, "{s:?}");
    assert_eq!(s.idle, s.pooled_buffers, "{s:?}");
    // All the room must be back: one thread can grow to 1008 = 16 + the whole room... but its batch must fit
    // in capacity: use 1000.
    let got = fresh_thread_grows_to(&pool, 1000);
    assert!((1000..1024).contains(&got), "{got} {:?}", pool.stats());
}

// (2) Conservation with concurrent growers, trims requested from another thread, and a pool of size classes.
#[test]
fn room_conserved_with_concurrent_growers_and_foreign_trims() {
    let _s = serial();
    let pool = PagePool::builder()
        .size_classes(&[4096, 8192])
        .capacity(512)
        .build()
        .unwrap();
    for _ in 0..20 {
        // Spawned and joined (a scope's join does not wait for the threads' exit flush).
        let mut hs = Vec::new();
        for t in 0..3 {
            let p = pool.clone();
            hs.push(thread::spawn(move || {
                for r in 0..30 {
                    let len = if (t + r) % 2 == 0 { 4096 } else { 8192 };
                    let held: Vec<_> = (0..100).map(|_| p.acquire_len(len).unwrap()).collect();
                    drop(held);
                }
            }));
        }
        let p = pool.clone();
        hs.push(thread::spawn(move || {
            for _ in 0..50 {
                p.trim();
                thread::yield_now();
            }
        }));
        for h in hs {
            h.join().unwrap();
        }
    }
    let s = pool.stats();
    assert_eq!(s.cached, 0, "{s:?}");
    // No assertion on `overflow_maps`: idle slots in one thread's cache are out of the others' reach (issue
    // #14 item 2), so a run may overflow (it did under ASan in CI); this test is about the room.
    // Each class: a fresh thread grows to a 500 batch again.
    let p = pool.clone();
    let cached = thread::spawn(move || {
        for len in [4096, 8192] {
            for _ in 0..2 {
                let held: Vec<_> = (0..500).map(|_| p.acquire_len(len).unwrap()).collect();
                drop(held);
            }
        }
        p.stats()
            .classes
            .iter()
            .map(|c| c.cached)
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    // A refill of a grown cache takes up to 32 slots, so the last one may overshoot the batch a little.
    assert!(
        cached.iter().all(|&c| (500..532).contains(&c)),
        "{cached:?}"
    );
}

// (1) Small starting caches (no depot for thread_cache(1), one-slot magazines for 2 and 3, magazines larger
// than the grown refill for 100) under growth, shrink-by-overage and cross-thread release; the pool's
// books must balance. (Capacity violations in `push` would show as heap corruption, at best.)
#[test]
fn small_and_odd_starting_caches_keep_their_books() {
    let _s = serial();
    for (start, max) in [
        (1, 1),
        (1, 2),
        (1, 7),
        (1, 256),
        (2, 3),
        (3, 5),
        (3, 256),
        (100, 256),
        (7, 13),
    ] {
        let pool = builder(256)
            .thread_cache(start)
            .max_thread_cache(max)
            .overflow(OverflowPolicy::Fail)
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut hs = Vec::new();
        {
            let sc = &mut hs;
            for t in 0..2usize {
                let p = pool.clone();
                sc.push(thread::spawn(move || {
                    for r in 0..200usize {
                        let n = 1 + (r * 7 + t * 13) % 100;
                        let held: Vec<_> = (0..n).filter_map(|_| p.acquire().ok()).collect();
                        drop(held);
                    }
                }));
            }
            // Cross-thread release: this thread takes, the receiver releases (flush-only cache).
            let p = pool.clone();
            sc.push(thread::spawn(move || {
                for _ in 0..2000 {
                    if let Ok(b) = p.acquire() {
                        tx.send(b).unwrap();
                    }
                }
            }));
            sc.push(thread::spawn(move || {
                for b in rx {
                    drop(b)
                }
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        let s = pool.stats();
        assert_eq!(s.in_use, 0, "{start}/{max}: {s:?}");
        assert_eq!(s.cached, 0, "{start}/{max}: exited threads flushed: {s:?}");
        assert_eq!(s.idle, s.pooled_buffers, "{start}/{max}: {s:?}");
        // After all threads exited the room is back: a fresh thread grows to min(max, batch).
        // (A batch within max: a batch beyond max shrinks the cache back, see
        // `batch_beyond_max_thread_cache_collapses_cache_to_start`.)
        if max > start {
            let batch = (max - 1).min(200);
            let got = fresh_thread_grows_to(&pool, batch);
            assert!(got >= batch, "{start}/{max}: {got}");
        }
    }
}

// (2) A pool dropped (last handle, on another thread) while caches are grown: the caches close at their
// next operation and the memory goes; nothing panics.
#[test]
fn pool_dropped_while_caches_grown() {
    let _s = serial();
    for _ in 0..50 {
        let pool = builder(512).build().unwrap();
        let other = builder(64).build().unwrap();
        let go = Arc::new(Barrier::new(3));
        thread::scope(|sc| {
            for _ in 0..2 {
                let p = pool.clone();
                let o = &other;
                let go = go.clone();
                sc.spawn(move || {
                    cycle(&p, 200, 3);
                    drop(p);
                    go.wait();
                    go.wait();
                    // Any cache operation on any pool with caches sweeps the closed pool's entry.
                    drop(o.acquire().unwrap());
                });
            }
            go.wait();
            drop(pool);
            go.wait();
        });
    }
}

// (4) Config edges reachable from public API.
#[test]
fn config_edges_build_and_run() {
    let _s = serial();
    let cases: Vec<(&str, PoolBuilder)> = vec![
        ("cap1", builder(1)),
        ("cap1 max1", builder(1).max_thread_cache(1)),
        (
            "cap1 tc1 max1",
            builder(1).thread_cache(1).max_thread_cache(1),
        ),
        ("cap2", builder(2)),
        ("cap3", builder(3)),
        ("cap5", builder(5)),
        ("max0", builder(64).max_thread_cache(0)),
        ("tc0 max0", builder(64).thread_cache(0).max_thread_cache(0)),
        ("max1", builder(64).max_thread_cache(1)),
        ("tc1", builder(64).thread_cache(1)),
        ("max cap", builder(64).max_thread_cache(64)),
        ("tc cap", builder(64).thread_cache(64).max_thread_cache(64)),
    ];
    for (name, b) in cases {
        let pool = b
            .overflow(OverflowPolicy::Fail)
            .build()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let cap = pool.stats().capacity;
        // Spawned and joined (a scope's join does not wait for the threads' exit flush).
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let p = pool.clone();
                thread::spawn(move || {
                    for r in 0..300 {
                        let held: Vec<_> = (0..1 + r % (cap + 1))
                            .filter_map(|_| p.acquire().ok())
                            .collect();
                        drop(held);
                        if r % 50 == 0 {
                            p.trim();
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let s = pool.stats();
        assert_eq!((s.cached, s.in_use), (0, 0), "{name}: {s:?}");
        assert!(pool.thread_cache() <= pool.max_thread_cache(), "{name}");
    }
    // tc0 with a max > 0 must be a config error, not a panic.
    assert!(builder(64)
        .thread_cache(0)
        .max_thread_cache(8)
        .build()
        .is_err());
    // max below an explicit start: error.
    assert!(builder(64)
        .thread_cache(16)
        .max_thread_cache(8)
        .build()
        .is_err());
}

/// Two threads, each takes `n` then releases `n`, `rounds` times, on a pool of capacity `2n` under `Fail`.
/// Returns (exhausted, acquires).
fn two_thread_demand(b: PoolBuilder, n: usize, rounds: usize) -> (u64, u64) {
    let pool = b
        .capacity(2 * n)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let go = Barrier::new(2);
    thread::scope(|sc| {
        for _ in 0..2 {
            let p = &pool;
            let go = &go;
            sc.spawn(move || {
                go.wait();
                for _ in 0..rounds {
                    let mut held = Vec::with_capacity(n);
                    for _ in 0..n {
                        match p.acquire() {
                            Ok(b) => held.push(b),
                            Err(AcquireError::Exhausted { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    drop(held);
                }
            });
        }
    });
    let s = pool.stats();
    (s.exhausted, s.acquires)
}

/// Same with `Map`: overflow mmaps.
fn two_thread_demand_maps(b: PoolBuilder, n: usize, rounds: usize) -> u64 {
    let pool = b.capacity(2 * n).build().unwrap();
    let go = Barrier::new(2);
    thread::scope(|sc| {
        for _ in 0..2 {
            let p = &pool;
            let go = &go;
            sc.spawn(move || {
                go.wait();
                for _ in 0..rounds {
                    let held: Vec<_> = (0..n).map(|_| p.acquire().unwrap()).collect();
                    drop(held);
                }
            });
        }
    });
    pool.stats().overflow_maps
}

// (3) Capacity = demand at 2 threads. Does the adaptive default refuse where the old fixed default
// (`thread_cache(min(64, capacity / 16))`) did not? Prints the numbers; fails if adaptive is worse.
// Measurement, not a pass/fail check: both configurations refuse under races; the numbers are in the
// review report. Run with `--ignored --nocapture`.
#[test]
#[ignore]
fn capacity_equal_to_demand_adaptive_vs_old_default() {
    let _s = serial();
    let mut worse = Vec::new();
    for n in [16usize, 64, 100, 256, 1000] {
        let old = 64.min(2 * n / 16);
        let rounds = 300;
        let (ae, aa) = two_thread_demand(PagePool::builder().buf_size(4096), n, rounds);
        let (fe, fa) = two_thread_demand(
            PagePool::builder().buf_size(4096).thread_cache(old),
            n,
            rounds,
        );
        let am = two_thread_demand_maps(PagePool::builder().buf_size(4096), n, rounds);
        let fm = two_thread_demand_maps(
            PagePool::builder().buf_size(4096).thread_cache(old),
            n,
            rounds,
        );
        println!(
            "n={n} cap={} adaptive: exhausted {ae}/{aa} overflow_maps {am} | fixed({old}): exhausted {fe}/{fa} overflow_maps {fm}",
            2 * n
        );
        if ae > fe || am > fm {
            worse.push((n, ae, fe, am, fm));
        }
    }
    assert!(
        worse.is_empty(),
        "adaptive worse (n, exh adaptive, exh fixed, maps adaptive, maps fixed): {worse:?}"
    );
}

// Probe (prints where refusals happen): n=1000, capacity 2000, 2 threads, adaptive default, Fail.
#[test]
#[ignore]
fn probe_where_refusals_happen() {
    let n: usize = std::env::var("N")
        .map(|v| v.parse().unwrap())
        .unwrap_or(1000);
    let extra: usize = std::env::var("EXTRA")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let pool = PagePool::builder()
        .buf_size(4096)
        .capacity(2 * n + extra)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let go = Barrier::new(2);
    thread::scope(|sc| {
        for t in 0..2 {
            let p = &pool;
            let go = &go;
            sc.spawn(move || {
                go.wait();
                for r in 0..20 {
                    let mut held = Vec::with_capacity(n);
                    let mut fails = Vec::new();
                    for i in 0..n {
                        match p.acquire() {
                            Ok(b) => held.push(b),
                            Err(_) => fails.push(i),
                        }
                    }
                    let s = p.stats();
                    println!(
                        "t{t} r{r} fails at {fails:?} cached(all)={} idle={}",
                        s.cached, s.idle
                    );
                    drop(held);
                }
            });
        }
    });
}

/// Rounds (of the last `tail`) in which some acquire was refused, over `rounds` rounds of 2 threads each
/// taking `n` and releasing `n`, capacity `2n`, `Fail`.
fn refused_rounds(b: PoolBuilder, n: usize, rounds: usize, tail: usize) -> usize {
    let pool = b
        .capacity(2 * n)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let go = Barrier::new(2);
    let bad = std::sync::atomic::AtomicUsize::new(0);
    let refused: Vec<Vec<bool>> = thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (p, go, _bad) = (&pool, &go, &bad);
                sc.spawn(move || {
                    go.wait();
                    (0..rounds)
                        .map(|_| {
                            let held: Vec<_> = (0..n).map(|_| p.acquire()).collect();
                            held.iter().any(|r| r.is_err())
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (rounds - tail..rounds)
        .filter(|&r| refused[0][r] || refused[1][r])
        .count()
}

// FINDING (behaviour, medium): capacity = demand, 2 threads each taking n and giving back n, `Fail`. A refill
// that overshoots the thread's need (a refill takes min(cap/2, max(32, start/2)) slots) leaves the excess in
// the taker's cache; with the adaptive default that cache has grown past n + excess, so it never flushes
// again and the excess stays there for good: the other thread is refused in EVERY round from then on
// (observed 300 of 300 rounds at n = 1000, 1500 refusals in 300 rounds at n = 100). A fixed cache flushes its
// excess at each release phase, so its refusals are transient races. This test fails if, in any of 12 trials,
// at least 5 of the last 20 of 60 rounds saw a refusal (stranding that persists). Timing-dependent: it failed in most but not all local runs. NOTE: the
// old fixed default also showed persistent refusals in one trial (n = 1000: 20 of 20 rounds), so the
// difference is one of frequency, not of kind: in the one fully printed 12-trial run, adaptive had >= 5 of 20
// refused rounds in 5 trials (20, 7, 20, 12, 10), the old default in 1 (20; the others 0, 0, ..., 2). The old default
// (`thread_cache(min(64, capacity / 16))`) is run alongside for comparison and is not asserted on.
// Status: fixed by reclaim (issue #14, item 2): an acquire that finds the shared pool empty takes the idle
// slots of the other thread's cache before it refuses, so nothing stays stranded (0 refused rounds of the last
// 20 in every trial, at every n, since). Earlier attempt, for the record: taking exactly one slot on the shared
// path while the shared pool ran low took it to 0 refused rounds at n = 64, 100 and 256 (not at 1000), but cost
// a quarter of the pool's throughput at 2 threads x 512 per query in `seed_workload --sweep`.
#[test]
fn adaptive_default_strands_refill_excess_permanently_at_capacity_equal_demand() {
    let _s = serial();
    let mut permanent = Vec::new();
    let mut fixed = Vec::new();
    for trial in 0..12 {
        let n = [64, 100, 256, 1000][trial % 4];
        let a = refused_rounds(PagePool::builder().buf_size(4096), n, 60, 20);
        let f = refused_rounds(
            PagePool::builder()
                .buf_size(4096)
                .thread_cache(64.min(2 * n / 16)),
            n,
            60,
            20,
        );
        println!("n={n}: rounds refused of last 20: adaptive {a}, old fixed default {f}");
        fixed.push((n, f));
        if a >= 5 {
            permanent.push(n);
        }
    }
    assert!(permanent.is_empty(), "adaptive: refused in at least 5 of the last 20 rounds at n = {permanent:?} (fixed: {fixed:?})");
}

// FINDING (behaviour, low): a thread whose batch exceeds `max_thread_cache` grows its cache to the max
// during a release phase, then, still in the same phase, flushes three times in a row without a refill in
// between (it is simply releasing its own batch) and `make_room` halves the cache back
// (src/cache.rs `Entry::make_room`, the `overages >= 3` branch). Observed: 13 slots cached after every round
// with max 32 (a cache at 32 keeps >= 16 after its flush), i.e. it ends each round well below its max. Every round then grows it again (a
// `cache_room` read-modify-write per doubling, a shared line) and collapses it again. Expected: a cache that
// stays at (or near) its max, as documented ("shrinks back by halves when the thread keeps flushing
// without refilling (it releases more than it takes ...)" - this thread releases exactly what it takes).
#[test]
fn batch_beyond_max_thread_cache_collapses_cache_to_start() {
    let _s = serial();
    let pool = builder(256)
        .thread_cache(4)
        .max_thread_cache(32)
        .build()
        .unwrap();
    let p = pool.clone();
    let cached = thread::spawn(move || {
        let mut v = Vec::new();
        for _ in 0..4 {
            cycle(&p, 100, 1);
            v.push(p.stats().cached);
        }
        v
    })
    .join()
    .unwrap();
    // After releasing 100 into a cache of max 32, a cache at its max holds at least 16 (it flushes half).
    assert!(
        cached.iter().all(|&c| c >= 16),
        "cached after each round: {cached:?}"
    );
}
