//! The buffer API of issue #16: logical length and capacity, appending (`io::Write`, `bytes::BufMut`), freezing
//! into shared `FrozenBuf` handles (and `bytes::Bytes`), `Zeroizing`, the `io::Error` conversion. Real pools,
//! real mappings; each test looks at the memory or the pool's counters, and the combinations with scrubbing,
//! poisoning, size classes and overflow buffers are tested where they meet.

mod common;

use pagepool::{AcquireError, AlignedBuf, FrozenBuf, OverflowPolicy, PagePool, PoolBuilder};
use std::borrow::{Borrow, BorrowMut};
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

fn page() -> usize {
    pagepool::page_size()
}

/// A one-buffer pool that refuses a second: every re-acquire is the same memory.
fn one(b: PoolBuilder) -> PagePool {
    b.buf_size(2 * page())
        .capacity(1)
        .overflow(OverflowPolicy::Fail)
        .build()
        .unwrap()
}

#[test]
fn acquire_starts_full_and_len_is_the_filled_length() {
    let pool = one(PagePool::builder());
    let mut b = pool.acquire().unwrap();
    assert_eq!((b.len(), b.capacity()), (2 * page(), 2 * page()));
    assert_eq!(b.as_slice().len(), b.len());
    b.fill(0x11);
    b.truncate(100);
    assert_eq!((b.len(), b.capacity(), (*b).len()), (100, 2 * page(), 100));
    b.truncate(5000); // never grows
    assert_eq!(b.len(), 100);
    b.clear();
    assert!(b.is_empty() && b.as_slice().is_empty());
    // SAFETY: capacity bytes, all initialised (filled above).
    unsafe { b.set_len(b.capacity()) };
    assert!(b.iter().all(|&x| x == 0x11), "old bytes come back");
    assert!(format!("{b:?}").contains("capacity"));
}

#[test]
fn acquire_len_and_size_classes_report_capacity() {
    let pool = PagePool::builder()
        .size_classes(&[page(), 4 * page()])
        .capacity(2)
        .build()
        .unwrap();
    let small = pool.acquire_len(1).unwrap();
    assert_eq!((small.len(), small.capacity()), (page(), page()));
    let mut mid = pool.acquire_len(page() + 1).unwrap();
    assert_eq!((mid.len(), mid.capacity()), (4 * page(), 4 * page()));
    mid.clear();
    mid.write_all(&vec![7; 3 * page()]).unwrap();
    assert_eq!((mid.len(), mid.capacity()), (3 * page(), 4 * page()));
    let mut big = pool.acquire_len(4 * page() + 1).unwrap();
    assert!(big.is_overflow());
    assert_eq!((big.len(), big.capacity()), (5 * page(), 5 * page()));
    big.clear();
    assert_eq!(big.spare_capacity_mut().len(), 5 * page());
    // A single-size pool: at most buf_size is the pool's buffer, above it an overflow mapping.
    let single = PagePool::builder().capacity(1).build().unwrap();
    assert_eq!(single.acquire_len(1).unwrap().len(), single.buf_size());
    let over = single.acquire_len(single.buf_size() + 1).unwrap();
    assert_eq!(over.len(), over.capacity());
    assert_eq!(over.capacity(), single.buf_size() + page());
}

#[test]
fn write_appends_after_len_and_writes_short_when_full() {
    let pool = one(PagePool::builder());
    let mut b = pool.acquire().unwrap();
    let cap = b.capacity();
    b.clear();
    write!(b, "abc{}", 1).unwrap();
    assert_eq!(&b[..], b"abc1");
    b.write_all(b"-tail").unwrap();
    assert_eq!(&b[..], b"abc1-tail");
    b.flush().unwrap();
    // Fill to two bytes short, then a write of three is short, the next is Ok(0), write_all is WriteZero.
    let fill = vec![0xEE; cap - b.len() - 2];
    assert_eq!(b.write(&fill).unwrap(), fill.len());
    assert_eq!(b.write(b"xyz").unwrap(), 2);
    assert_eq!(b.len(), cap);
    assert_eq!(b.write(b"z").unwrap(), 0);
    assert_eq!(b.write(b"").unwrap(), 0);
    assert_eq!(
        b.write_all(b"z").unwrap_err().kind(),
        io::ErrorKind::WriteZero
    );
    assert_eq!(&b[cap - 2..], b"xy");
    assert_eq!(&b[..9], b"abc1-tail");
}

#[test]
fn spare_capacity_then_set_len() {
    let pool = one(PagePool::builder());
    let mut b = pool.acquire().unwrap();
    b.truncate(4);
    b.copy_from_slice(b"head");
    let spare = b.spare_capacity_mut();
    assert_eq!(spare.len(), 2 * page() - 4);
    spare[..4].copy_from_slice(b"body");
    // SAFETY: 8 <= capacity; every byte of the buffer is initialised.
    unsafe { b.set_len(8) };
    assert_eq!(&b[..], b"headbody");
    // SAFETY: as above.
    unsafe { b.set_len(b.capacity()) };
    assert!(b.spare_capacity_mut().is_empty());
}

#[test]
fn truncated_buffer_is_zeroed_over_its_whole_capacity_on_release() {
    // set_len x drop, truncate x drop: zero_on_release zeroes the capacity, not the logical length.
    let pool = one(PagePool::builder().zero_on_release(true));
    let mut b = pool.acquire().unwrap();
    b.fill(0xA5);
    b.truncate(10);
    drop(b);
    let mut b = pool.acquire().unwrap();
    assert_eq!(b.len(), b.capacity());
    assert!(b.iter().all(|&x| x == 0));
    b.fill(0x5A);
    // SAFETY: 0 <= capacity.
    unsafe { b.set_len(0) };
    drop(b);
    assert!(pool.acquire().unwrap().iter().all(|&x| x == 0));
}

#[test]
fn truncated_overflow_buffer_is_zeroed_over_its_whole_capacity() {
    let pool = PagePool::builder()
        .capacity(1)
        .overflow(OverflowPolicy::Map)
        .zero_on_release(true)
        .build()
        .unwrap();
    let _held = pool.acquire().unwrap();
    let mut o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    let addr = o.as_ptr();
    o.fill(0xC3);
    o.clear();
    drop(o);
    // The default decay keeps the mapping in the reserve; the next overflow acquire reuses it.
    let o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    if o.as_ptr() == addr {
        assert_eq!(pool.stats().overflow_reuses, 1);
    }
    assert!(o.iter().all(|&x| x == 0));
}

/// The pattern `poison_on_release` writes, read back from a released-and-reacquired buffer.
fn poisoned(b: &AlignedBuf) -> bool {
    let word = &b[..8];
    word.iter().any(|&x| x != 0) && b.chunks(8).all(|c| c == word)
}

#[test]
fn clear_and_write_under_poisoning_poison_the_whole_capacity() {
    let pool = one(PagePool::builder().poison_on_release(true));
    let mut b = pool.acquire().unwrap();
    b.clear();
    b.write_all(b"short record").unwrap();
    drop(b);
    let b = pool.acquire().unwrap();
    assert_eq!(b.len(), b.capacity());
    assert!(poisoned(&b), "the whole capacity carries the pattern");
    assert_eq!(pool.stats().poison_violations, 0);
    drop(b);
    // With zeroing too, the next holder sees zeros over the whole capacity.
    let pool = one(PagePool::builder()
        .poison_on_release(true)
        .zero_on_release(true));
    let mut b = pool.acquire().unwrap();
    b.fill(1);
    b.clear();
    b.write_all(b"x").unwrap();
    drop(b);
    let b = pool.acquire().unwrap();
    assert!(b.iter().all(|&x| x == 0));
    assert_eq!(pool.stats().poison_violations, 0);
}

#[test]
fn freeze_last_clone_releases_and_zeroes() {
    let pool = one(PagePool::builder().zero_on_release(true));
    let mut b = pool.acquire().unwrap();
    b.fill(0x5A);
    b.truncate(100);
    let mut f = b.freeze();
    assert_eq!(f.len(), 100);
    let c = f.clone();
    let head = f.split_to(10);
    let tail = f.split_off(50);
    assert_eq!((head.len(), f.len(), tail.len()), (10, 50, 40));
    assert_eq!(f.handles(), 4);
    assert!(head.iter().chain(tail.iter()).all(|&x| x == 0x5A));
    drop((c, f, head));
    // One handle left: the buffer is still out.
    assert!(matches!(
        pool.acquire(),
        Err(AcquireError::Exhausted { .. })
    ));
    assert_eq!(pool.stats().in_use, 1);
    let moved = std::thread::spawn(move || tail.len()).join().unwrap(); // dropped on another thread
    assert_eq!(moved, 40);
    let b = pool.acquire().unwrap();
    assert_eq!(b.len(), b.capacity());
    assert!(b.iter().all(|&x| x == 0), "zeroed over the whole capacity");
}

#[test]
fn freeze_overflow_buffer() {
    let pool = PagePool::builder()
        .capacity(1)
        .overflow(OverflowPolicy::Map)
        .overflow_decay(Duration::ZERO)
        .build()
        .unwrap();
    let held = pool.acquire().unwrap();
    let mut o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    o.clear();
    o.write_all(b"overflowing").unwrap();
    let f = o.freeze();
    let part = f.slice(4..8);
    drop(f);
    assert_eq!(pool.stats().overflow_in_use, 1);
    assert_eq!(&part[..], b"flow");
    drop(part);
    assert_eq!(pool.stats().overflow_in_use, 0);
    drop(held);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn freeze_size_class_buffer() {
    let pool = PagePool::builder()
        .size_classes(&[page(), 4 * page()])
        .capacity(1)
        .overflow(OverflowPolicy::Fail)
        .zero_on_release(true)
        .build()
        .unwrap();
    let mut b = pool.acquire_len(2 * page()).unwrap();
    assert_eq!(b.capacity(), 4 * page());
    b.fill(9);
    let f = b.freeze();
    assert_eq!(f.len(), 4 * page());
    let last_page = f.slice(3 * page()..);
    drop(f);
    assert!(
        pool.acquire_len(2 * page()).is_err(),
        "the class's one buffer is still out"
    );
    assert!(last_page.iter().all(|&x| x == 9));
    drop(last_page);
    let b = pool.acquire_len(2 * page()).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    assert_eq!(pool.stats().in_use, 1);
}

#[test]
fn split_handles_outlive_the_pool_handle() {
    let pool = PagePool::builder().capacity(2).build().unwrap();
    let mut b = pool.acquire().unwrap();
    b.clear();
    b.write_all(b"left|right").unwrap();
    let mut f = b.freeze();
    let left = f.split_to(4);
    let right = f.slice(1..);
    drop(pool); // every PagePool handle gone: the buffer keeps the memory mapped
    drop(f);
    let t = std::thread::spawn(move || right.to_vec());
    assert_eq!(&left[..], b"left");
    assert_eq!(t.join().unwrap(), b"right");
    drop(left); // the last handle: the buffer goes home and the pool is torn down
}

#[test]
fn checked_ranges_refuse_and_plain_ones_panic() {
    let pool = PagePool::builder().capacity(1).build().unwrap();
    let mut b = pool.acquire().unwrap();
    b.truncate(10);
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    let mut f = b.freeze();
    assert_eq!(f.try_slice(..).unwrap().len(), 10);
    assert_eq!(&f.try_slice(2..=3).unwrap()[..], &[2, 3]);
    assert!(f.try_slice(10..).unwrap().is_empty());
    assert!(f.try_slice(11..).is_none());
    assert!(f.try_slice(..=10).is_none());
    assert!(f.try_slice(..=usize::MAX).is_none());
    let (hi, lo) = (5, 4);
    assert!(f.try_slice(hi..lo).is_none(), "decreasing");
    assert!(f
        .try_slice((
            std::ops::Bound::Excluded(usize::MAX),
            std::ops::Bound::Unbounded
        ))
        .is_none());
    // A sub-slice's ranges are relative to its own view.
    let s = f.slice(4..8);
    assert_eq!(&s.slice(1..3)[..], &[5, 6]);
    assert!(s.try_slice(..5).is_none());
    assert!(f.try_split_to(11).is_none() && f.try_split_off(11).is_none());
    assert_eq!(f.len(), 10, "a refused split changes nothing");
    assert!(catch_unwind(AssertUnwindSafe(|| s.slice(..5))).is_err());
    let mut g = f.clone();
    assert!(catch_unwind(AssertUnwindSafe(move || g.split_to(11))).is_err());
    let mut g = f.clone();
    assert!(catch_unwind(AssertUnwindSafe(move || g.split_off(11))).is_err());
    // try_unfreeze: only the last handle gets the buffer back, with its frozen length.
    let f = f.try_unfreeze().unwrap_err();
    drop(s);
    let mut b = f.try_unfreeze().unwrap();
    assert_eq!(b.len(), 10);
    b.write_all(b"more").unwrap();
    assert_eq!(&b[10..], b"more");
}

#[test]
fn slice_traits_see_the_filled_bytes() {
    fn sum(d: impl AsRef<[u8]>) -> usize {
        d.as_ref().iter().map(|&x| usize::from(x)).sum()
    }
    fn borrowed<B: Borrow<[u8]>>(d: &B) -> usize {
        d.borrow().len()
    }
    let pool = PagePool::builder().capacity(1).build().unwrap();
    let mut b = pool.acquire().unwrap();
    b.truncate(3);
    AsMut::<[u8]>::as_mut(&mut b).copy_from_slice(&[1, 2, 3]);
    BorrowMut::<[u8]>::borrow_mut(&mut b)[0] = 4;
    assert_eq!(borrowed(&b), 3);
    assert_eq!(sum(&*b), 9);
    let f = b.freeze();
    assert_eq!(borrowed(&f), 3);
    assert_eq!(sum(f.clone()), 9);
    assert!(format!("{f:?}").contains("handles"));
}

#[test]
fn acquire_errors_convert_to_io_errors() {
    let pool = PagePool::builder()
        .capacity(1)
        .max_overflow(0)
        .overflow(OverflowPolicy::Wait)
        .build()
        .unwrap();
    let held = pool.acquire().unwrap();
    common::exhausted_io_error(&pool);
    let e: io::Error = pool
        .acquire_timeout(Duration::from_millis(1))
        .unwrap_err()
        .into();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    drop(held);
    let e: io::Error = pool.acquire_len(usize::MAX).unwrap_err().into();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    // The chain: io::Error -> AcquireError::Os -> its own io::Error.
    let inner = e.into_inner().unwrap();
    let acquire = inner.downcast_ref::<AcquireError>().unwrap();
    assert!(matches!(acquire, AcquireError::Os { .. }));
    let source = std::error::Error::source(acquire).unwrap();
    assert_eq!(
        source.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::InvalidInput
    );
    // `?` in an io::Result function.
    fn take(pool: &PagePool) -> io::Result<FrozenBuf> {
        Ok(pool.acquire()?.freeze())
    }
    assert!(take(&pool).is_ok());
}

#[cfg(feature = "bytes")]
mod bytes_feature {
    use super::*;
    use bytes::{BufMut, Bytes};

    #[test]
    fn buf_mut_appends_after_len() {
        let pool = one(PagePool::builder());
        let mut b = pool.acquire().unwrap();
        assert_eq!(b.remaining_mut(), 0, "a fresh buffer is full");
        b.truncate(2);
        b.put_u16(0xBEEF);
        b.put_slice(b"xy");
        assert_eq!(b.len(), 6);
        assert_eq!(&b[2..], &[0xBE, 0xEF, b'x', b'y']);
        assert_eq!(b.remaining_mut(), b.capacity() - 6);
        assert_eq!(b.chunk_mut().len(), b.capacity() - 6);
        let room = b.remaining_mut();
        b.put_bytes(0, room);
        assert_eq!(b.len(), b.capacity());
        // The trait's documented panic when the bytes do not fit.
        assert!(catch_unwind(AssertUnwindSafe(move || b.put_u8(1))).is_err());
    }

    #[test]
    fn bytes_from_frozen_is_zero_copy_and_drops_on_another_thread() {
        let pool = one(PagePool::builder().zero_on_release(true));
        let mut b = pool.acquire().unwrap();
        b.clear();
        b.put_slice(b"zero copy");
        let f = b.freeze();
        let ptr = f.as_ptr();
        let keep = f.slice(5..);
        let bytes = Bytes::from(f);
        assert_eq!((bytes.as_ptr(), &bytes[..]), (ptr, &b"zero copy"[..]));
        let sub = bytes.slice(..4);
        drop(bytes);
        let t = std::thread::spawn(move || {
            assert_eq!(&sub[..], b"zero");
            drop(sub);
        });
        t.join().unwrap();
        assert_eq!(pool.stats().in_use, 1, "`keep` still views the buffer");
        assert_eq!(&keep[..], b"copy");
        std::thread::spawn(move || drop(Bytes::from(keep)))
            .join()
            .unwrap();
        let b = pool.acquire().unwrap();
        assert!(b.iter().all(|&x| x == 0));
    }
}

#[cfg(feature = "zeroize")]
mod zeroize_feature {
    use super::*;
    use zeroize::{Zeroize, Zeroizing};

    #[test]
    fn zeroizing_buffer_is_zeroed_over_its_capacity_before_release() {
        let pool = one(PagePool::builder()); // no zero_on_release: Zeroizing does it
        let mut key = Zeroizing::new(pool.acquire().unwrap());
        key.fill(0x77);
        key.truncate(16);
        drop(key);
        let mut b = pool.acquire().unwrap();
        assert!(
            b.iter().all(|&x| x == 0),
            "the whole capacity, not 16 bytes"
        );
        b.fill(1);
        b.clear();
        Zeroize::zeroize(&mut b); // the buffer's impl (`&mut *b` would be the empty slice's)
        assert!(b.is_empty(), "the length is unchanged");
        // SAFETY: capacity bytes, all initialised.
        unsafe { b.set_len(b.capacity()) };
        assert!(b.iter().all(|&x| x == 0));
    }
}
