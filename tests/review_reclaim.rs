//! Adversarial review of the reclaim protocol (issue #14 item 2). Stress programs; iterations scale with
//! REVIEW_ITERS (default small so `cargo test` stays quick).

mod common;
use common::{maps_lock, tag, tagged_mapping_of};
use pagepool::{AlignedBuf, OverflowPolicy, PagePool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

fn iters(d: usize) -> usize {
    std::env::var("REVIEW_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

/// Fill with a pattern unique to (thread, seq); checked before release: a slot handed to two holders at once
/// shows up as a foreign pattern.
fn stamp(b: &mut AlignedBuf, id: u64) {
    let cap = b.capacity();
    // SAFETY: we hold the buffer; capacity bytes are valid and writable.
    let s = unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr(), cap) };
    let w = 512.min(s.len()) / 8 * 8;
    for c in s[..w].chunks_exact_mut(8) {
        c.copy_from_slice(&id.to_ne_bytes());
    }
    let n = s.len();
    s[n - 8..].copy_from_slice(&id.to_ne_bytes());
}
fn check(b: &AlignedBuf, id: u64) {
    let p = b.as_ptr();
    let cap = b.capacity();
    // SAFETY: we hold the buffer; capacity bytes are valid.
    let s = unsafe { std::slice::from_raw_parts(p, cap) };
    for c in s[..512.min(cap) / 8 * 8].chunks_exact(8) {
        assert_eq!(
            u64::from_ne_bytes(c.try_into().unwrap()),
            id,
            "slot shared by two holders"
        );
    }
    assert_eq!(
        u64::from_ne_bytes(s[cap - 8..].try_into().unwrap()),
        id,
        "slot shared"
    );
}

fn assert_quiet(pool: &PagePool) {
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.in_use, 0, "{s:?}");
    assert_eq!(s.idle + s.uncommitted, s.pooled_buffers, "{s:?}");
    assert_eq!(s.overflow_in_use, 0, "{s:?}");
}

/// Many threads, capacity below their joint demand (so every thread's take hits the shared-empty path and
/// reclaims), a trimmer, and pattern checks.
#[test]
fn hammer_reclaim_steal_and_trim() {
    let _g = maps_lock();
    for policy in [OverflowPolicy::Map, OverflowPolicy::Fail] {
        let pool = PagePool::builder()
            .buf_size(4096)
            .capacity(24)
            .thread_cache(4)
            .max_thread_cache(16)
            .overflow(policy)
            .build()
            .unwrap();
        let stop = AtomicBool::new(false);
        let fin = AtomicUsize::new(0);
        let ops = iters(20_000);
        thread::scope(|s| {
            for t in 0..4u64 {
                let (pool, fin) = (&pool, &fin);
                s.spawn(move || {
                    let mut held: Vec<(AlignedBuf, u64)> = Vec::new();
                    let mut seq = 0u64;
                    for i in 0..ops {
                        let want = (i * 7 + t as usize * 3) % 9;
                        while held.len() < want {
                            seq += 1;
                            let id = (t << 48) | seq;
                            match pool.acquire() {
                                Ok(mut b) => {
                                    stamp(&mut b, id);
                                    held.push((b, id));
                                }
                                Err(_) => break,
                            }
                        }
                        while held.len() > want / 2 {
                            let (b, id) = held.swap_remove(i % held.len());
                            check(&b, id);
                            drop(b);
                        }
                    }
                    for (b, id) in held {
                        check(&b, id);
                    }
                    fin.fetch_add(1, Release);
                });
            }
            let (pool, stop) = (&pool, &stop);
            s.spawn(move || {
                while !stop.load(Relaxed) {
                    pool.trim();
                    thread::yield_now();
                }
            });
            while fin.load(Acquire) < 4 {
                thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Relaxed);
        });
        let s = pool.stats();
        eprintln!("{policy:?}: {s:?}");
        assert_quiet(&pool);
    }
}

/// Closes racing many threads' hit paths (releases of buffers of a pool whose last handle goes), threads that
/// persist across pools (dead entries at addresses that new pools reuse), then checks the pool unmapped.
#[test]
fn close_races_hit_path_releases_and_address_reuse() {
    let _g = maps_lock();
    let rounds = iters(2_000);
    let workers = 3;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| mpsc::channel::<Option<(PagePool, Arc<Barrier>)>>())
        .unzip();
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let done = done.clone();
            thread::spawn(move || {
                let mut seq = 0u64;
                while let Ok(Some((pool, bar))) = rx.recv() {
                    // Use the pool: register an entry, fill the cache, hold some buffers.
                    let mut held = Vec::new();
                    for _ in 0..6 {
                        seq += 1;
                        let id = ((t as u64) << 48) | seq;
                        let mut b = pool.acquire().unwrap();
                        stamp(&mut b, id);
                        held.push((b, id));
                    }
                    drop(
                        held.drain(..3)
                            .map(|(b, id)| {
                                check(&b, id);
                                b
                            })
                            .collect::<Vec<_>>(),
                    );
                    drop(pool);
                    bar.wait();
                    // Release while the main thread drops the last handle (hit path push vs Kill).
                    for (b, id) in held.drain(..) {
                        check(&b, id);
                        drop(b);
                        thread::yield_now();
                    }
                    done.fetch_add(1, Release);
                }
            })
        })
        .collect();
    let mut addrs = std::collections::HashSet::new();
    for r in 0..rounds {
        let pool = PagePool::builder()
            .buf_size(4096)
            .capacity(32)
            .thread_cache(4)
            .build()
            .unwrap();
        let mut probe = pool.acquire().unwrap();
        tag(&probe);
        let addr = probe.as_mut_ptr() as usize;
        drop(probe);
        let bar = Arc::new(Barrier::new(workers + 1));
        for tx in &txs {
            tx.send(Some((pool.clone(), bar.clone()))).unwrap();
        }
        bar.wait();
        drop(pool);
        while done.load(Acquire) < (r + 1) * workers {
            thread::yield_now();
        }
        // Every buffer is home and the last handle gone: the memory must be unmapped now.
        assert_eq!(
            tagged_mapping_of(addr),
            None,
            "round {r}: pool still mapped"
        );
        addrs.insert(addr);
    }
    for tx in &txs {
        tx.send(None).unwrap();
    }
    for h in handles {
        h.join().unwrap();
    }
}

/// Wait pools: demand equals capacity; every acquire must succeed without timing out (reclaim serves waiters).
#[test]
fn wait_pool_with_reclaim() {
    let _g = maps_lock();
    let n = 8;
    let pool = PagePool::builder()
        .buf_size(4096)
        .capacity(2 * n)
        .max_overflow(0)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let rounds = iters(2_000);
    thread::scope(|s| {
        for t in 0..2u64 {
            let pool = &pool;
            s.spawn(move || {
                let mut seq = 0;
                for r in 0..rounds {
                    let take = if (r + t as usize) % 2 == 0 {
                        n + n / 2
                    } else {
                        n - n / 2
                    };
                    let mut held = Vec::new();
                    for _ in 0..take {
                        seq += 1;
                        let id = (t << 48) | seq;
                        // Each thread holds at most 3n/2 and the pair at most 2n... but not in lockstep here, so
                        // hold no more than n to stay deadlock-free.
                        if held.len() >= n {
                            break;
                        }
                        let mut b = pool
                            .acquire_timeout(Duration::from_secs(10))
                            .expect("timed out");
                        stamp(&mut b, id);
                        held.push((b, id));
                    }
                    for (b, id) in held {
                        check(&b, id);
                    }
                }
            });
        }
        let pool = &pool;
        s.spawn(move || {
            for _ in 0..rounds / 10 {
                pool.trim();
                thread::yield_now();
            }
        });
    });
    assert_quiet(&pool);
}

/// Size-class pools: reclaims per class, close with many threads' caches across classes.
#[test]
fn size_classes_reclaim_and_close() {
    let _g = maps_lock();
    for _ in 0..iters(200) / 10 + 1 {
        let pool = PagePool::builder()
            .size_class_ladder(4096, 65536)
            .capacity(8)
            .overflow(OverflowPolicy::Map)
            .build()
            .unwrap();
        thread::scope(|s| {
            for t in 0..3u64 {
                let pool = pool.clone();
                s.spawn(move || {
                    let mut seq = 0;
                    for i in 0..2000usize {
                        let len = 4096 << (i % 5);
                        let mut held = Vec::new();
                        for _ in 0..(i % 7) {
                            seq += 1;
                            let id = (t << 48) | seq;
                            let mut b = pool.acquire_len(len).unwrap();
                            stamp(&mut b, id);
                            held.push((b, id));
                        }
                        for (b, id) in held {
                            check(&b, id);
                        }
                        if i % 100 == 0 {
                            pool.trim();
                        }
                    }
                });
            }
        });
        let s = pool.stats();
        assert_eq!(s.in_use, 0, "{s:?}");
    }
}

/// A thread that used many pools and then blocks forever: every close must unmap at once.
#[test]
fn blocked_thread_after_many_pools() {
    let _g = maps_lock();
    let pools: Vec<PagePool> = (0..50)
        .map(|_| {
            PagePool::builder()
                .buf_size(4096)
                .capacity(16)
                .build()
                .unwrap()
        })
        .collect();
    let mut addrs = Vec::new();
    for p in &pools {
        let b = p.acquire().unwrap();
        tag(&b);
        addrs.push(b.as_ptr() as usize);
    }
    let (tx, rx) = mpsc::channel::<()>();
    let (rtx, rrx) = mpsc::channel::<()>();
    let ps: Vec<PagePool> = pools.to_vec();
    let h = thread::spawn(move || {
        for p in &ps {
            let v: Vec<_> = (0..10).map(|_| p.acquire().unwrap()).collect();
            drop(v);
        }
        drop(ps);
        rtx.send(()).unwrap();
        rx.recv().unwrap();
    });
    rrx.recv().unwrap();
    drop(pools);
    for a in addrs {
        assert_eq!(tagged_mapping_of(a), None);
    }
    tx.send(()).unwrap();
    h.join().unwrap();
}

/// Trims racing closes racing thread exits: threads that start, use a pool, and exit while the main thread
/// trims and then drops it.
#[test]
fn trims_race_closes_and_thread_exits() {
    let _g = maps_lock();
    for r in 0..iters(300) {
        let pool = PagePool::builder()
            .buf_size(4096)
            .capacity(16)
            .thread_cache(4)
            .build()
            .unwrap();
        let mut probe = pool.acquire().unwrap();
        tag(&probe);
        let addr = probe.as_mut_ptr() as usize;
        drop(probe);
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..20u64 {
                        let id = (t << 48) | i;
                        let mut b = pool.acquire().unwrap();
                        stamp(&mut b, id);
                        held.push((b, id));
                        if i % 3 == 0 {
                            let (b, id) = held.remove(0);
                            check(&b, id);
                        }
                    }
                    let keep = held;
                    drop(pool);
                    for (b, id) in keep {
                        check(&b, id);
                        thread::yield_now();
                    }
                })
            })
            .collect();
        pool.trim();
        thread::yield_now();
        pool.trim();
        drop(pool);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(tagged_mapping_of(addr), None, "round {r}");
    }
}

/// Cost of an acquire refused at an exhausted `Fail` pool: each one runs a reclaim, i.e. a process-wide
/// membarrier (IPIs to every CPU running the process), even when no cache holds anything. Prints the cost;
/// run with --nocapture.
#[test]
fn refused_acquire_cost() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .buf_size(4096)
        .capacity(4)
        .thread_cache(1)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let held: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    let n = 20_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(pool.acquire().is_err());
    }
    let per = t.elapsed() / n;
    eprintln!(
        "refused acquire with thread caches: {per:?} each; stats {:?}",
        pool.stats().reclaimed
    );
    drop(held);
    let pool = PagePool::builder()
        .buf_size(4096)
        .capacity(4)
        .thread_cache(0)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap();
    let _held: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(pool.acquire().is_err());
    }
    eprintln!(
        "refused acquire without thread caches: {:?} each",
        t.elapsed() / n
    );
}
