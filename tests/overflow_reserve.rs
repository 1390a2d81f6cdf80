//! The overflow reserve (`PoolBuilder::overflow_decay`): released overflow buffers of the pool's size stay
//! mapped for reuse, holding their permit, budget and locked bytes, and are unmapped by decay, `trim()`, to make
//! room at the limit, or when the pool closes. Mapping checks by address: /proc/self/maps on Linux (tagged
//! mappings, see tests/common), `VirtualQuery` on Windows.

mod common;
use common::{until_waiting, WATCHDOG};
use pagepool::{LockPolicy, OverflowPolicy, PagePool, PoolBuilder};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

fn page() -> usize {
    pagepool::page_size()
}

/// No decay by time during a test.
const LONG: Duration = Duration::from_secs(3600);

/// One pooled buffer and a reserve that never decays by itself.
fn reserving() -> PoolBuilder {
    PagePool::builder()
        .buf_size(page())
        .capacity(1)
        .thread_cache(0)
        .overflow_decay(LONG)
}

/// Whether the page at `addr` is still mapped by the pool (Linux: only a tagged mapping counts; Windows: any).
#[cfg(any(target_os = "linux", windows))]
fn mapped(addr: usize) -> bool {
    common::tagged_mapping_of(addr).is_some()
}

/// Whether the pool's page at `addr` is gone (always "yes" where mappings are not inspected).
#[cfg(any(target_os = "linux", windows))]
fn gone(addr: usize) -> bool {
    !mapped(addr)
}

#[cfg(not(any(target_os = "linux", windows)))]
fn mapped(_addr: usize) -> bool {
    true
}

#[cfg(not(any(target_os = "linux", windows)))]
fn gone(_addr: usize) -> bool {
    true
}

#[test]
fn reuse_with_zero_on_release_returns_zeros() {
    for poison in [false, true] {
        let pool = reserving()
            .zero_on_release(true)
            .poison_on_release(poison)
            .build()
            .unwrap();
        let _pooled = pool.acquire().unwrap();
        let mut o = pool.acquire().unwrap();
        assert!(o.is_overflow());
        o.fill(0xA5);
        let p = o.as_ptr();
        drop(o);
        assert_eq!(pool.stats().reserve_buffers, 1);
        // While it waits in the reserve, the secret is already gone (read through the raw address: the mapping
        // is still the pool's; ASan builds poison idle buffers, so not there).
        #[cfg(not(pagepool_asan))]
        {
            // SAFETY: the reserved mapping stays mapped until a trim, decay or the pool's end; nothing writes
            // it meanwhile (one thread), and a read of mapped anonymous memory is defined.
            let waiting = unsafe { std::slice::from_raw_parts(p, page()) };
            // Zeroed, or (with poisoning) overwritten by the poison pattern.
            assert!(!waiting.contains(&0xA5), "secret left in the reserve");
            if !poison {
                assert!(waiting.iter().all(|&b| b == 0));
            }
        }
        let again = pool.acquire().unwrap();
        assert_eq!(again.as_ptr(), p, "the reserved mapping is reused");
        assert!(again.iter().all(|&b| b == 0), "poison {poison}");
        let s = pool.stats();
        assert_eq!(
            (s.overflow_maps, s.overflow_reuses, s.poison_violations),
            (1, 1, 0),
            "{s:?}"
        );
    }
}

#[test]
fn a_write_after_release_into_the_reserve_is_caught() {
    let pool = reserving().poison_on_release(true).build().unwrap();
    let _pooled = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    let p = o.as_ptr() as *mut u8;
    drop(o);
    // SAFETY: the reserved mapping stays mapped (see above); a deliberate write after release, which the poison
    // check exists to catch.
    #[cfg(not(pagepool_asan))]
    unsafe {
        p.add(8).write(1)
    };
    let again = pool.acquire().unwrap();
    assert_eq!(again.as_ptr(), p);
    #[cfg(not(pagepool_asan))]
    assert_eq!(pool.stats().poison_violations, 1);
}

/// Decay unmaps: by `trim_idle()`, and by a later overflow release (a slow path). Only the address checks are
/// Linux/Windows-specific.
#[test]
fn decay_really_unmaps() {
    let _g = common::maps_lock();
    let decay = Duration::from_millis(300);
    let pool = reserving()
        .max_overflow(4)
        .overflow_decay(decay)
        .build()
        .unwrap();
    let _pooled = pool.acquire().unwrap();
    let start = Instant::now();
    let held: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
    held.iter().for_each(|b| common::tag(b));
    let addrs: Vec<usize> = held.iter().map(|b| b.as_ptr() as usize).collect();
    drop(held);
    // Guarded, not a threshold: on a machine slow enough to take the whole decay here, the first buffers may
    // already be gone, which the checks below allow.
    if start.elapsed() < decay {
        assert_eq!(pool.stats().reserve_buffers, 3);
        assert!(addrs.iter().all(|&a| mapped(a)));
    }
    std::thread::sleep(2 * decay);
    let given = pool.trim_idle();
    let s = pool.stats();
    assert_eq!((s.reserve_buffers, s.reserve_bytes), (0, 0), "{s:?}");
    assert_eq!(s.decay_unmaps, 3, "{s:?}");
    assert_eq!(s.overflow_unmaps, 3, "{s:?}");
    assert!(given <= 3 * page(), "{given}");
    assert_eq!(s.mapped_bytes, page(), "{s:?}");
    for a in addrs {
        assert!(gone(a), "{a:#x} still mapped after its decay");
    }

    // A slow path (an overflow release) unmaps what has decayed meanwhile.
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    common::tag(&a);
    let a_addr = a.as_ptr() as usize;
    drop(a);
    std::thread::sleep(2 * decay);
    drop(b); // into the reserve; `a` has been idle for longer than the decay
    let s = pool.stats();
    assert_eq!((s.reserve_buffers, s.decay_unmaps), (1, 4), "{s:?}");
    assert!(gone(a_addr), "{a_addr:#x} still mapped after its decay");
}

#[test]
fn trim_empties_the_reserve() {
    let _g = common::maps_lock();
    let pool = reserving().build().unwrap();
    let pooled = pool.acquire().unwrap();
    let base = pool.stats().mapped_bytes;
    let held: Vec<_> = (0..5).map(|_| pool.acquire().unwrap()).collect();
    held.iter().for_each(|b| common::tag(b));
    let addrs: Vec<usize> = held.iter().map(|b| b.as_ptr() as usize).collect();
    drop(held);
    let s = pool.stats();
    assert_eq!(
        (s.reserve_buffers, s.reserve_bytes),
        (5, 5 * page()),
        "{s:?}"
    );
    assert_eq!(
        s.mapped_bytes,
        base + 5 * page(),
        "reserved buffers stay mapped"
    );
    assert!(addrs.iter().all(|&a| mapped(a)));
    // The pooled buffer is out: all `trim` gives back is the reserve.
    assert_eq!(pool.trim(), 5 * page());
    let s = pool.stats();
    assert_eq!((s.reserve_buffers, s.reserve_bytes), (0, 0), "{s:?}");
    assert_eq!(
        (s.overflow_maps, s.overflow_unmaps, s.decay_unmaps),
        (5, 5, 0)
    );
    assert_eq!(s.mapped_bytes, base);
    for a in addrs {
        assert!(gone(a), "{a:#x} still mapped after trim");
    }
    drop(pooled);
}

#[test]
fn zero_decay_unmaps_on_drop() {
    let _g = common::maps_lock();
    let pool = reserving().overflow_decay(Duration::ZERO).build().unwrap();
    let _pooled = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    common::tag(&o);
    let a = o.as_ptr() as usize;
    drop(o);
    let s = pool.stats();
    assert_eq!((s.reserve_buffers, s.overflow_unmaps), (0, 1), "{s:?}");
    assert!(gone(a));
    let o = pool.acquire().unwrap();
    assert_eq!(pool.stats().overflow_maps, 2, "no reuse without a reserve");
    drop(o);
}

/// Threads acquire and release through a small pool under `max_bytes` and `max_overflow` while an observer
/// reads the stats: mapped bytes never exceed the budget and buffers out plus reserved never exceed
/// `max_overflow`; no buffer is handed to two holders (each holder's stamp survives until its release).
#[test]
fn budget_never_exceeded_under_concurrency() {
    for policy in [OverflowPolicy::Map, OverflowPolicy::Wait] {
        let max_overflow = 6;
        // One chunk of 2 pooled buffers and room for 5 overflow buffers: the budget binds before max_overflow.
        let max = 2 * page() + 5 * page();
        let pool = PagePool::builder()
            .buf_size(page())
            .capacity(2)
            .prealloc(true)
            .max_overflow(max_overflow)
            .max_bytes(max)
            .overflow(policy)
            .overflow_decay(Duration::from_millis(2))
            .build()
            .unwrap();
        let stop = AtomicBool::new(false);
        let observe = |pool: &PagePool| {
            let s = pool.stats();
            assert!(s.mapped_bytes <= max, "{s:?}");
            assert!(
                s.overflow_in_use + s.reserve_buffers <= max_overflow,
                "{s:?}"
            );
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..3u8)
                .map(|t| {
                    let pool = &pool;
                    s.spawn(move || {
                        for i in 0..2000usize {
                            let got = if policy == OverflowPolicy::Wait && i % 2 == 0 {
                                pool.acquire_timeout(Duration::from_millis(1))
                            } else {
                                pool.acquire()
                            };
                            let Ok(mut b) = got else { continue };
                            b.fill(t);
                            let mut more: Vec<_> =
                                (0..i % 4).map_while(|_| pool.acquire().ok()).collect();
                            more.iter_mut().for_each(|m| m.fill(t + 100));
                            observe(pool);
                            if i % 97 == 0 {
                                pool.trim();
                            }
                            assert!(more.iter().all(|m| m.iter().all(|&x| x == t + 100)));
                            assert!(
                                b.iter().all(|&x| x == t),
                                "buffer shared with another holder"
                            );
                        }
                    })
                })
                .collect();
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    observe(&pool);
                    std::thread::yield_now();
                }
            });
            // The observer stops even when a worker's assertion fails, so the failure is reported instead of
            // the scope waiting for the observer for ever.
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Relaxed);
                }
            }
            let _stop = Stop(&stop);
            for w in workers {
                w.join().unwrap();
            }
        });
        let s = pool.stats();
        assert_eq!((s.in_use, s.overflow_in_use, s.waiters), (0, 0, 0), "{s:?}");
        assert!(s.overflow_maps > 0 && s.overflow_reuses > 0, "{s:?}");
        assert_eq!(
            s.overflow_maps,
            s.overflow_unmaps + s.reserve_buffers as u64,
            "{s:?}"
        );
        assert_eq!(s.mapped_bytes, 2 * page() + s.reserve_bytes, "{s:?}");
        assert_eq!(
            s.acquires,
            s.pool_hits
                + s.overflow_maps
                + s.overflow_reuses
                + s.exhausted
                + s.os_errors
                + s.timeouts,
            "{s:?}"
        );
        pool.trim();
        let s = pool.stats();
        assert_eq!(
            (s.mapped_bytes, s.reserve_buffers),
            (2 * page(), 0),
            "{s:?}"
        );
        // Every permit and byte came back: the whole overflow room can be had at once.
        let all: Vec<_> = (0..7).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(all.iter().filter(|b| b.is_overflow()).count(), 5);
    }
}

/// A waiter at the limit is handed the released mapping itself: no `mmap`, the same address.
#[test]
fn a_waiter_is_woken_by_a_reserve_handoff() {
    let pool = reserving()
        .max_overflow(1)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let _pooled = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    let addr = o.as_ptr() as usize;
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let b = pool.acquire_timeout(WATCHDOG).unwrap();
            (b.as_ptr() as usize, b.is_overflow())
        });
        until_waiting(&pool, 1);
        drop(o);
        assert_eq!(waiter.join().unwrap(), (addr, true));
    });
    let s = pool.stats();
    assert_eq!(
        (
            s.overflow_maps,
            s.overflow_reuses,
            s.overflow_unmaps,
            s.waiters
        ),
        (1, 1, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        s.reserve_buffers, 1,
        "the waiter's buffer came back to the reserve"
    );
}

/// A waiter whose permit is held by a reserved buffer of another class size cannot happen (oversize buffers are
/// never reserved), but a waiter queued while the reserve holds the only permit is served when `trim` frees it:
/// here the waiter's own look finds the reserved buffer first, so it never queues. Either way nobody waits for
/// a mapping that sits idle in the reserve.
#[test]
fn nobody_waits_while_the_reserve_has_a_buffer() {
    let pool = reserving()
        .max_overflow(1)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let _pooled = pool.acquire().unwrap();
    drop(pool.acquire().unwrap());
    assert_eq!(pool.stats().reserve_buffers, 1);
    let b = pool.acquire_timeout(Duration::ZERO).unwrap();
    assert!(b.is_overflow());
    assert_eq!(pool.stats().overflow_reuses, 1);
}

/// Reserved buffers keep their guard pages: after reuse the pages before and after the buffer are still
/// inaccessible.
#[cfg(target_os = "linux")]
#[test]
fn reserve_keeps_guard_pages() {
    let pool = reserving().guard_pages(true).build().unwrap();
    let _pooled = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    let (addr, len) = (o.as_ptr() as usize, o.len());
    drop(o);
    let o = pool.acquire().unwrap();
    assert_eq!(o.as_ptr() as usize, addr, "reused");
    let perms = |a: usize| {
        common::mapping_of(a).expect("mapped")[..]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert!(perms(addr).starts_with("rw"), "{}", perms(addr));
    assert!(
        perms(addr - page()).starts_with("---"),
        "leading guard: {}",
        perms(addr - page())
    );
    assert!(
        perms(addr + len).starts_with("---"),
        "trailing guard: {}",
        perms(addr + len)
    );
    drop(o);
    // The reserved mapping is the buffer with its two guard pages (no alignment slack at page alignment).
    let reserved = pool.stats().reserve_bytes;
    assert_eq!(reserved, len + 2 * page());
    assert_eq!(pool.trim(), reserved);
}

/// Reserved buffers stay locked and counted in `locked_bytes` until unmapped; reuse does not count them twice,
/// and after `trim` the overflow part of `locked_bytes` is back to 0.
#[test]
fn reserve_keeps_locked_bytes_exact() {
    let pool = reserving()
        .lock_memory(LockPolicy::BestEffort)
        .build()
        .unwrap();
    let pooled = pool.acquire().unwrap();
    let chunk_locked = pool.stats().locked_bytes;
    let held: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
    let all_locked = pool.stats().locked_bytes;
    drop(held);
    assert_eq!(
        pool.stats().locked_bytes,
        all_locked,
        "reserved buffers stay locked"
    );
    for _ in 0..5 {
        let again: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(pool.stats().overflow_maps, 3, "all reused");
        assert_eq!(
            pool.stats().locked_bytes,
            all_locked,
            "reuse counts nothing twice"
        );
        drop(again);
    }
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.locked_bytes - chunk_locked, 0, "{s:?}");
    drop(pooled);
}

/// Each size class has a reserve of its own; `acquire_len` above the largest class is never reserved, and at
/// the largest class's `max_overflow` a reserved buffer is unmapped to make room for it.
#[test]
fn size_classes_and_oversize() {
    let pool = PagePool::builder()
        .size_classes(&[page(), 2 * page()])
        .capacity(1)
        .thread_cache(0)
        .max_overflow(2)
        .overflow_decay(LONG)
        .build()
        .unwrap();
    let pooled = [
        pool.acquire_len(page()).unwrap(),
        pool.acquire_len(2 * page()).unwrap(),
    ];
    let small = pool.acquire_len(page()).unwrap();
    let large = pool.acquire_len(2 * page()).unwrap();
    let big = pool.acquire_len(10 * page()).unwrap();
    assert!(small.is_overflow() && large.is_overflow() && big.is_overflow());
    let large_addr = large.as_ptr();
    drop((small, large, big));
    let s = pool.stats();
    assert_eq!(
        (s.classes[0].reserve_buffers, s.classes[1].reserve_buffers),
        (1, 1),
        "{s:?}"
    );
    assert_eq!(s.reserve_buffers, 2);
    assert_eq!(
        s.classes[1].overflow_unmaps, 1,
        "the oversize buffer was unmapped at once"
    );
    // The class's reserve serves its own size.
    let large = pool.acquire_len(2 * page()).unwrap();
    assert_eq!(large.as_ptr(), large_addr);
    drop(large);
    // Largest class at max_overflow(2): one oversize buffer out, one permit held by the reserved buffer. The
    // next oversize buffer unmaps the reserved one rather than be refused.
    let big1 = pool.acquire_len(10 * page()).unwrap();
    let big2 = pool.acquire_len(10 * page()).unwrap();
    let s = pool.stats();
    assert_eq!(
        (s.classes[1].reserve_buffers, s.classes[1].overflow_in_use),
        (0, 2),
        "{s:?}"
    );
    assert_eq!(s.classes[1].exhausted, 0, "{s:?}");
    drop((big1, big2, pooled));
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.reserve_buffers, 0);
    assert_eq!(s.overflow_maps, s.overflow_unmaps, "{s:?}");
}

/// Dropping the last handle unmaps every reserved buffer at once; a buffer still out is unmapped when it is
/// dropped (a closed pool keeps no reserve).
#[test]
fn pool_drop_unmaps_reserved_buffers() {
    let _g = common::maps_lock();
    let pool = reserving().build().unwrap();
    let pooled = pool.acquire().unwrap();
    let held: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    held.iter().for_each(|b| common::tag(b));
    let addrs: Vec<usize> = held.iter().map(|b| b.as_ptr() as usize).collect();
    let mut held = held.into_iter();
    let out = held.next().unwrap();
    drop(held); // three reserved
    assert_eq!(pool.stats().reserve_buffers, 3);
    drop(pool);
    for &a in &addrs[1..] {
        assert!(
            gone(a),
            "{a:#x}: reserved buffer outlived the pool's handles"
        );
    }
    assert!(mapped(addrs[0]), "a buffer out stays mapped");
    drop(out);
    assert!(
        gone(addrs[0]),
        "a buffer released into a closed pool is unmapped"
    );
    drop(pooled);
}
