//! The overflow path's bounds: `max_overflow` caps buffers out at once, and pooled buffers are preferred again
//! once released. (The exact mapping checks are alone in tests/overflow.rs.)

use pagepool::{AcquireError, PagePool};
use std::time::Duration;

#[test]
fn max_overflow_caps_buffers_out_at_once() {
    // Without an overflow reserve, and with one: a reserved buffer holds its permit, and is what the next
    // overflow acquire gets.
    for decay in [Duration::ZERO, Duration::from_secs(3600)] {
        let pool = PagePool::builder()
            .capacity(1)
            .max_overflow(2)
            .overflow_decay(decay)
            .build()
            .unwrap();
        let a = pool.acquire().unwrap();
        let o1 = pool.acquire().unwrap();
        let o2 = pool.acquire().unwrap();
        assert!(o1.is_overflow() && o2.is_overflow());
        let e = pool.acquire().unwrap_err();
        assert!(
            matches!(
                e,
                AcquireError::Exhausted {
                    overflow_in_use: 2,
                    max_overflow: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        let o1_addr = o1.as_ptr();
        drop(o1);
        let o3 = pool.acquire().unwrap();
        assert!(o3.is_overflow(), "a permit came back with the release");
        let e = pool.acquire().unwrap_err();
        assert!(
            matches!(
                e,
                AcquireError::Exhausted {
                    overflow_in_use: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        drop((a, o2, o3));
        let s = pool.stats();
        if decay.is_zero() {
            assert_eq!(
                (
                    s.overflow_maps,
                    s.overflow_unmaps,
                    s.overflow_reuses,
                    s.exhausted,
                    s.overflow_in_use
                ),
                (3, 3, 0, 2, 0)
            );
        } else {
            assert_eq!(
                (
                    s.overflow_maps,
                    s.overflow_unmaps,
                    s.overflow_reuses,
                    s.exhausted,
                    s.overflow_in_use
                ),
                (2, 0, 1, 2, 0)
            );
            assert_eq!(s.reserve_buffers, 2);
            // Both reserved buffers hold their permits: besides the pooled one, exactly two overflow buffers can
            // be had, both reused (the newest first: o3's mapping, which was o1's).
            let again: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
            assert!(!again[0].is_overflow());
            assert_eq!(again[1].as_ptr(), o1_addr);
            assert_eq!(pool.stats().overflow_reuses, 3);
            assert!(pool.acquire().is_err());
            drop(again);
            pool.trim();
            let s = pool.stats();
            assert_eq!(
                (s.overflow_maps, s.overflow_unmaps, s.reserve_buffers),
                (2, 2, 0)
            );
        }
    }
}

#[test]
fn pooled_buffers_are_preferred_again_after_release() {
    let pool = PagePool::builder().capacity(1).build().unwrap();
    let a = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    drop(a);
    let b = pool.acquire().unwrap();
    assert!(!b.is_overflow());
    drop(o);
}
