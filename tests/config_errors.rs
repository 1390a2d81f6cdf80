//! Bad input gets a typed error whose message says what to change, never a panic.

use pagepool::{ConfigError, PagePool, PoolBuilder, MAX_CAPACITY};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn page() -> usize {
    pagepool::page_size()
}

/// Builds without letting a panic escape: a panic fails the test with a clear message.
fn build(b: PoolBuilder) -> Result<PagePool, ConfigError> {
    catch_unwind(AssertUnwindSafe(|| b.build())).expect("build() panicked on bad input")
}

#[test]
fn zero_buf_size() {
    let e = build(PagePool::builder().buf_size(0)).unwrap_err();
    assert!(matches!(e, ConfigError::ZeroBufSize { .. }), "{e:?}");
    assert!(
        e.to_string().contains("non-zero multiple of the page size"),
        "{e}"
    );
}

#[test]
fn buf_size_not_a_page_multiple() {
    for size in [1, page() - 1, page() + 1, 3 * page() / 2, usize::MAX] {
        let e = build(PagePool::builder().buf_size(size)).unwrap_err();
        match e {
            ConfigError::BufSizeNotPageMultiple {
                buf_size, rounded, ..
            } => {
                assert_eq!(buf_size, size);
                assert_eq!(rounded % page(), 0);
                assert!(rounded >= size || size > usize::MAX - page());
            }
            other => panic!("{size}: {other:?}"),
        }
    }
    let e = build(PagePool::builder().buf_size(page() + 1)).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("round it up to {}", 2 * page())),
        "{e}"
    );
}

#[test]
fn alignment_not_power_of_two() {
    for align in [0usize, 3 * page(), page() + 1, usize::MAX] {
        let e = build(PagePool::builder().alignment(align)).unwrap_err();
        if align == 0 {
            assert!(
                matches!(e, ConfigError::AlignmentNotPowerOfTwo { alignment: 0, .. }),
                "{e:?}"
            );
        } else {
            assert!(
                matches!(e, ConfigError::AlignmentNotPowerOfTwo { .. }),
                "{align}: {e:?}"
            );
        }
    }
    let e = build(PagePool::builder().alignment(3 * page())).unwrap_err();
    assert!(
        e.to_string().contains(&format!("use e.g. {}", 4 * page())),
        "{e}"
    );
}

#[test]
fn alignment_below_page_size() {
    for align in [1, 2, 64, page() / 2] {
        let e = build(PagePool::builder().alignment(align)).unwrap_err();
        assert!(
            matches!(e, ConfigError::AlignmentBelowPageSize { .. }),
            "{align}: {e:?}"
        );
        assert!(e.to_string().contains("at least"), "{e}");
    }
}

#[test]
fn zero_capacity() {
    let e = build(PagePool::builder().capacity(0)).unwrap_err();
    assert!(matches!(e, ConfigError::ZeroCapacity), "{e:?}");
}

#[test]
fn capacity_past_u32_indices() {
    for cap in [MAX_CAPACITY + 1, usize::MAX] {
        let e = build(PagePool::builder().capacity(cap)).unwrap_err();
        assert!(
            matches!(e, ConfigError::CapacityTooLarge { .. }),
            "{cap}: {e:?}"
        );
    }
}

#[test]
fn total_past_isize_max() {
    let huge = (isize::MAX as usize / page()) * page();
    for (size, cap) in [
        (huge, 2),
        (page() << 40, 1 << 20),
        (usize::MAX / page() * page(), 1),
    ] {
        let e = build(PagePool::builder().buf_size(size).capacity(cap)).unwrap_err();
        assert!(
            matches!(e, ConfigError::TooLarge { .. }),
            "{size} x {cap}: {e:?}"
        );
        assert!(e.to_string().contains("lower the capacity"), "{e}");
    }
    // Alignment rounding can push a valid size over the edge as well.
    let e = build(
        PagePool::builder()
            .buf_size(page())
            .alignment(1 << 62)
            .capacity(2),
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e:?}");
}

#[test]
fn max_capacity_builds_without_per_buffer_bookkeeping() {
    // 2^32 - 2 slots: once refused (the freelist's ~64 GiB of heap), now built with no memory per buffer;
    // chunks and their bookkeeping come when buffers are acquired.
    let pool = build(PagePool::builder().buf_size(page()).capacity(MAX_CAPACITY)).unwrap();
    let s = pool.stats();
    assert_eq!(
        (s.capacity, s.pooled_buffers, s.chunks),
        (MAX_CAPACITY, 0, 0)
    );
}

#[test]
fn os_refusal_at_prealloc_is_typed() {
    // 128 TiB is the whole x86_64 user address space: no overcommit setting lets mmap place it, so the
    // refusal is immediate (no page is ever populated).
    let e = build(
        PagePool::builder()
            .buf_size(1 << 47)
            .capacity(1)
            .prealloc(true),
    )
    .unwrap_err();
    match e {
        ConfigError::Os { bytes, source } => {
            assert_eq!(bytes, 1 << 47);
            assert!(source.raw_os_error().is_some(), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn absurd_buffer_is_an_os_error_at_acquire() {
    // 128 TiB per buffer passes validation (fits isize) but cannot be placed in the address space.
    let pool = build(PagePool::builder().buf_size(1 << 47).capacity(1)).unwrap();
    let e = catch_unwind(AssertUnwindSafe(|| pool.acquire()))
        .expect("acquire panicked")
        .unwrap_err();
    assert!(matches!(e, pagepool::AcquireError::Os { .. }), "{e:?}");
    let s = pool.stats();
    assert_eq!((s.os_errors, s.pooled_buffers, s.mapped_bytes), (1, 0, 0));
}

#[test]
fn absurd_overflow_buffer_is_an_os_error() {
    let pool = build(
        PagePool::builder()
            .buf_size(1 << 46)
            .capacity(1)
            .max_overflow(1),
    )
    .unwrap();
    // The pooled slot: 64 TiB of address space, lazily backed, so it maps (or the OS refuses: also typed).
    match pool.acquire() {
        Ok(_held) => {
            // A second 64 TiB mapping no longer fits beside the first in the 128 TiB address space.
            let e = pool.acquire().unwrap_err();
            assert!(matches!(e, pagepool::AcquireError::Os { .. }), "{e:?}");
            let s = pool.stats();
            assert_eq!((s.os_errors, s.overflow_in_use, s.overflow_maps), (1, 0, 0));
        }
        Err(e) => assert!(matches!(e, pagepool::AcquireError::Os { .. }), "{e:?}"),
    }
}

#[test]
fn max_overflow_zero_means_no_overflow() {
    let pool = build(PagePool::builder().capacity(1).max_overflow(0)).unwrap();
    let _a = pool.acquire().unwrap();
    assert!(matches!(
        pool.acquire(),
        Err(pagepool::AcquireError::Exhausted {
            max_overflow: 0,
            ..
        })
    ));
}
