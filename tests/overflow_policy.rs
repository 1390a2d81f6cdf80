//! The overflow path's bounds: `max_overflow` caps buffers out at once, and pooled buffers are preferred again
//! once released. (The exact mapping checks are alone in tests/overflow.rs.)

use pagepool::{AcquireError, PagePool};

#[test]
fn max_overflow_caps_buffers_out_at_once() {
    let pool = PagePool::builder()
        .capacity(1)
        .max_overflow(2)
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
    drop(o1);
    let o3 = pool.acquire().unwrap();
    assert!(o3.is_overflow(), "a permit came back with the unmap");
    drop((a, o2, o3));
    let s = pool.stats();
    assert_eq!(
        (
            s.overflow_maps,
            s.overflow_unmaps,
            s.exhausted,
            s.overflow_in_use
        ),
        (3, 3, 1, 0)
    );
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
