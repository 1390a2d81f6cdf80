//! Hostile arguments in every combination: the cross product of extreme values for `buf_size`, `capacity`,
//! `alignment`, `max_overflow`, `thread_cache`, the overflow policy and `prealloc`, each built and (when the
//! build succeeds) driven through every public method, all under `catch_unwind`.
//!
//! `tests/config_errors.rs` checks each setting alone and the wording of each error; this file checks that
//! the settings do not interact badly: whatever the combination, the outcome is a typed error naming a
//! setting that really is wrong (an independent re-statement of the documented rules decides which ones are),
//! or a working pool whose behaviour matches its configuration. Nothing panics.

use pagepool::{AcquireError, ConfigError, OverflowPolicy, PagePool, PoolBuilder, MAX_CAPACITY};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn page() -> usize {
    pagepool::page_size()
}

/// The settings of one combination (`None`: the builder's default, setter not called).
#[derive(Debug, Clone, Copy)]
struct Combo {
    buf_size: usize,
    capacity: usize,
    alignment: Option<usize>,
    max_overflow: usize,
    thread_cache: Option<usize>,
    overflow: OverflowPolicy,
    prealloc: bool,
}

impl Combo {
    fn builder(&self) -> PoolBuilder {
        let mut b = PagePool::builder()
            .buf_size(self.buf_size)
            .capacity(self.capacity)
            .max_overflow(self.max_overflow)
            .overflow(self.overflow)
            .prealloc(self.prealloc);
        if let Some(a) = self.alignment {
            b = b.alignment(a);
        }
        if let Some(t) = self.thread_cache {
            b = b.thread_cache(t);
        }
        b
    }

    /// The documented rules (see `PoolBuilder`'s setters and `ConfigError`), restated independently: the names
    /// of the `ConfigError` variants this combination deserves. Empty: the configuration is valid.
    fn violations(&self) -> Vec<&'static str> {
        let p = page();
        let mut v = Vec::new();
        if self.buf_size == 0 {
            v.push("ZeroBufSize");
        } else if self.buf_size % p != 0 {
            v.push("BufSizeNotPageMultiple");
        }
        let align = self.alignment.unwrap_or(p);
        if !align.is_power_of_two() {
            v.push("AlignmentNotPowerOfTwo");
        } else if align < p {
            v.push("AlignmentBelowPageSize");
        }
        if self.capacity == 0 {
            v.push("ZeroCapacity");
        } else if self.capacity > MAX_CAPACITY {
            v.push("CapacityTooLarge");
        }
        if self.buf_size != 0 && align.is_power_of_two() && align >= p && self.capacity != 0 {
            // `buf_size` rounded up to the alignment, times the capacity, plus one mapping's alignment slack,
            // must fit in isize::MAX bytes. (The slack is `align - allocation granularity`; none of the values
            // below sits near enough to the edge for the granularity to matter.)
            let fits = self
                .buf_size
                .checked_next_multiple_of(align)
                .and_then(|stride| stride.checked_mul(self.capacity))
                .and_then(|total| total.checked_add(align - p))
                .is_some_and(|t| t <= isize::MAX as usize);
            if !fits {
                v.push("TooLarge");
            }
        }
        if self.thread_cache.is_some_and(|t| t > self.capacity) {
            v.push("ThreadCacheTooLarge");
        }
        v
    }

    /// Buffers or alignments so large that mapping them may fail: `AcquireError::Os` is then a correct outcome.
    fn absurd(&self) -> bool {
        self.buf_size >= 1 << 40 || self.alignment.unwrap_or(0) >= 1 << 40
    }
}

fn variant(e: &ConfigError) -> &'static str {
    match e {
        ConfigError::ZeroBufSize { .. } => "ZeroBufSize",
        ConfigError::BufSizeNotPageMultiple { .. } => "BufSizeNotPageMultiple",
        ConfigError::AlignmentNotPowerOfTwo { .. } => "AlignmentNotPowerOfTwo",
        ConfigError::AlignmentBelowPageSize { .. } => "AlignmentBelowPageSize",
        ConfigError::ZeroCapacity => "ZeroCapacity",
        ConfigError::CapacityTooLarge { .. } => "CapacityTooLarge",
        ConfigError::TooLarge { .. } => "TooLarge",
        ConfigError::ThreadCacheTooLarge { .. } => "ThreadCacheTooLarge",
        ConfigError::FreelistAlloc { .. } => "FreelistAlloc",
        ConfigError::Os { .. } => "Os",
        _ => "unknown",
    }
}

fn buf_sizes() -> Vec<usize> {
    let p = page();
    vec![
        0,
        1,
        p - 1,
        p,
        p + 1,
        2 * p,
        3 * p,
        1 << 47, // a page multiple, but the whole x86_64 user address space
        isize::MAX as usize / p * p,
        usize::MAX / p * p,
        usize::MAX,
    ]
}

/// Capacities above this are "huge": driven through a few buffers only.
const HUGE: usize = 1 << 20;

fn capacities() -> Vec<usize> {
    vec![0, 1, 2, 17, MAX_CAPACITY, MAX_CAPACITY + 1, usize::MAX]
}

fn alignments() -> Vec<Option<usize>> {
    let p = page();
    vec![
        None,
        Some(0),
        Some(1),
        Some(p / 2),
        Some(p - 1),
        Some(p),
        Some(p + 1),
        Some(2 * p),
        Some(3 * p),
        Some(2 << 20),
        Some(1 << 62),
        Some(1 << 63),
        Some(usize::MAX),
    ]
}

fn thread_caches(capacity: usize) -> Vec<Option<usize>> {
    vec![
        None,
        Some(0),
        Some(1),
        Some(capacity),
        Some(capacity.saturating_add(1)),
        Some(usize::MAX),
    ]
}

/// What one combination did, for the totals printed at the end.
#[derive(Debug, Default)]
struct Tally {
    combos: usize,
    rejected: usize,
    built: usize,
    skipped_huge: usize,
    os_at_build: usize,
    acquires: usize,
    os_at_acquire: usize,
}

fn check(c: Combo, t: &mut Tally) {
    t.combos += 1;
    let expected = c.violations();
    // A valid capacity of billions builds in O(1) (no bookkeeping per buffer), and is driven below. Two
    // settings of such a pool do need memory in proportion, by design: `prealloc` maps and faults in every
    // buffer (terabytes here), and a thread cache of billions of entries is allocated at the first acquire;
    // both are skipped rather than risk the machine's memory.
    // Under Wine (the Windows suite in CI), reserving a huge pool's chunks took minutes per combination: huge
    // valid capacities are driven on the other platforms only there.
    if expected.is_empty()
        && c.capacity > HUGE
        && (cfg!(windows) || c.prealloc || c.thread_cache.is_some_and(|n| n > HUGE))
    {
        t.skipped_huge += 1;
        return;
    }
    let built = catch_unwind(AssertUnwindSafe(|| c.builder().build()))
        .unwrap_or_else(|_| panic!("build() panicked for {c:?}"));
    let pool = match built {
        Err(e) => {
            let got = variant(&e);
            let msg = catch_unwind(AssertUnwindSafe(|| (e.to_string(), format!("{e:?}"))))
                .unwrap_or_else(|_| panic!("formatting {got} panicked for {c:?}"));
            assert!(!msg.0.is_empty() && !msg.1.is_empty());
            if expected.is_empty() {
                // Valid settings may still be refused by the OS, but only where memory is asked for at build.
                assert!(
                    got == "Os" && c.prealloc,
                    "{c:?}: valid combination refused with {e}"
                );
                t.os_at_build += 1;
            } else {
                assert!(
                    expected.contains(&got),
                    "{c:?}: got {got} ({e}), expected one of {expected:?}"
                );
                t.rejected += 1;
            }
            return;
        }
        Ok(pool) => pool,
    };
    assert!(
        expected.is_empty(),
        "{c:?}: built although it breaks {expected:?}"
    );
    t.built += 1;
    catch_unwind(AssertUnwindSafe(|| drive(&c, &pool, t)))
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    catch_unwind(AssertUnwindSafe(move || drop(pool)))
        .unwrap_or_else(|_| panic!("dropping the pool panicked for {c:?}"));
}

/// Every public method of a pool built from combination `c`, checked against the configuration.
fn drive(c: &Combo, pool: &PagePool, t: &mut Tally) {
    let p = page();
    let align = c.alignment.unwrap_or(p);
    assert_eq!(pool.buf_size(), c.buf_size, "{c:?}");
    assert_eq!(pool.capacity(), c.capacity, "{c:?}");
    assert_eq!(pool.alignment(), align, "{c:?}");
    assert_eq!(pool.overflow_policy(), c.overflow, "{c:?}");
    // The default cache is adaptive: it starts at min(16, capacity / 4) (at least 1) and may
    // grow to min(4096, capacity); a cache set alone is fixed.
    let default_start = (c.capacity / 4).clamp(1, 16);
    let (start, max) = match c.thread_cache {
        Some(n) => (n, n),
        None if default_start == 0 => (0, 0),
        None => (default_start, c.capacity.min(4096)),
    };
    assert_eq!(pool.thread_cache(), start, "{c:?}");
    assert_eq!(pool.max_thread_cache(), max, "{c:?}");
    assert!(!format!("{pool:?}").is_empty());
    let s = pool.stats();
    if c.prealloc {
        assert_eq!(s.pooled_buffers, c.capacity, "{c:?}: {s:?}");
    }
    let clone = pool.clone();
    clone.trim();
    drop(clone);

    let max_overflow = match c.overflow {
        OverflowPolicy::Fail => 0,
        _ => c.max_overflow,
    };
    let mut held = Vec::new();
    let mut os_errors = 0;
    // A huge pool is driven through its first buffers only (they are pooled: no overflow yet).
    let acquires = if c.capacity > HUGE {
        64
    } else {
        c.capacity + 3
    };
    for i in 0..acquires {
        t.acquires += 1;
        match pool.acquire() {
            Ok(mut b) => {
                assert_eq!(b.len(), c.buf_size, "{c:?}");
                assert_eq!(b.as_ptr() as usize % align, 0, "{c:?}");
                // Pooled buffers first, then overflow ones.
                assert_eq!(b.is_overflow(), i >= c.capacity, "{c:?}: acquire {i}");
                if !c.absurd() {
                    b.as_mut_slice()[0] = 1;
                    let last = b.len() - 1;
                    b[last] = 2;
                    assert_eq!((b.as_slice()[0], b.as_ref()[last]), (1, 2));
                }
                assert!(!format!("{b:?}").is_empty());
                held.push(b);
            }
            Err(AcquireError::Exhausted {
                capacity,
                max_overflow: m,
                policy,
                ..
            }) => {
                assert_eq!(
                    (capacity, m, policy),
                    (c.capacity, max_overflow, c.overflow)
                );
                assert!(
                    i >= c.capacity && i - c.capacity >= max_overflow,
                    "{c:?}: refused acquire {i}"
                );
            }
            Err(e @ AcquireError::Os { .. }) => {
                // A huge pool's chunk (tens of GiB of address space) may be refused by the OS's overcommit
                // policy: a typed error too.
                assert!(c.absurd() || c.capacity > HUGE, "{c:?}: acquire {i}: {e}");
                assert!(!e.to_string().is_empty());
                os_errors += 1;
                t.os_at_acquire += 1;
            }
            Err(e) => panic!("{c:?}: {e:?}"),
        }
    }
    let s = pool.stats();
    assert_eq!(s.idle + s.in_use, s.pooled_buffers, "{c:?}: {s:?}");
    assert_eq!(s.in_use + s.overflow_in_use, held.len(), "{c:?}: {s:?}");
    assert_eq!(s.os_errors, os_errors, "{c:?}: {s:?}");
    assert_eq!(
        s.acquires,
        s.pool_hits + s.overflow_maps + s.overflow_reuses + s.exhausted + s.os_errors,
        "{c:?}: {s:?}"
    );
    drop(held);
    pool.trim();
    let s = pool.stats();
    assert_eq!(
        (s.in_use, s.overflow_in_use, s.cached),
        (0, 0, 0),
        "{c:?}: {s:?}"
    );
    assert_eq!(s.overflow_maps, s.overflow_unmaps, "{c:?}: {s:?}");
}

#[test]
fn every_combination_of_hostile_settings() {
    let mut t = Tally::default();
    for buf_size in buf_sizes() {
        for capacity in capacities() {
            for alignment in alignments() {
                for thread_cache in thread_caches(capacity) {
                    for max_overflow in [0, 1, usize::MAX] {
                        for overflow in [OverflowPolicy::Map, OverflowPolicy::Fail] {
                            for prealloc in [false, true] {
                                check(
                                    Combo {
                                        buf_size,
                                        capacity,
                                        alignment,
                                        max_overflow,
                                        thread_cache,
                                        overflow,
                                        prealloc,
                                    },
                                    &mut t,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    println!("{t:?}");
    assert_eq!(t.combos, 11 * 7 * 13 * 6 * 3 * 2 * 2);
    assert!(t.built > 1000 && t.rejected > 10_000, "{t:?}");
}

/// The same builder reused for many builds: setters are plain values, a failed build leaves nothing behind,
/// and the last call of a setter wins.
#[test]
fn builder_is_reusable_and_last_setter_wins() {
    let b = PagePool::builder()
        .buf_size(0)
        .capacity(0)
        .alignment(3)
        .thread_cache(usize::MAX);
    for _ in 0..3 {
        assert!(b.clone().build().is_err());
    }
    let pool = b
        .buf_size(page())
        .capacity(2)
        .alignment(page())
        .thread_cache(1)
        .build()
        .unwrap();
    assert_eq!(
        (pool.buf_size(), pool.capacity(), pool.thread_cache()),
        (page(), 2, 1)
    );
}

/// Errors are plain values: they can be sent across threads, formatted repeatedly, and walked as
/// `std::error::Error` sources without panicking.
#[test]
fn errors_are_well_behaved_values() {
    use std::error::Error;
    let errs: Vec<Box<dyn Error + Send + Sync>> = vec![
        Box::new(PagePool::builder().buf_size(1).build().unwrap_err()),
        Box::new(
            PagePool::builder()
                .buf_size(1 << 47)
                .capacity(1)
                .prealloc(true)
                .build()
                .unwrap_err(),
        ),
        Box::new({
            let pool = PagePool::builder()
                .capacity(1)
                .overflow(OverflowPolicy::Fail)
                .build()
                .unwrap();
            let _held = pool.acquire().unwrap();
            pool.acquire().unwrap_err()
        }),
    ];
    let errs = std::thread::spawn(move || errs).join().unwrap();
    for e in &errs {
        let mut depth = 0;
        let mut cur: Option<&dyn Error> = Some(e.as_ref());
        while let Some(x) = cur {
            assert!(!x.to_string().is_empty());
            cur = x.source();
            depth += 1;
        }
        assert!(depth <= 2, "{e}");
    }
}
