//! Dropping every pool handle while buffers are out is safe; memory goes back when the last buffer does.
// Counts and inspects OS mappings: /proc/self/maps on Linux, VirtualQuery on Windows (see tests/common).
#![cfg(any(target_os = "linux", windows))]

mod common;
use common::{mapping_of, maps_lock, tag, tagged_mapping_of};
use pagepool::PagePool;
use std::sync::mpsc;
use std::thread;

#[test]
fn buffers_outlive_the_pool_on_another_thread() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(4)
        .build()
        .unwrap();
    let bufs: Vec<_> = (0..6).map(|_| pool.acquire().unwrap()).collect(); // 4 pooled + 2 overflow
    bufs.iter().for_each(|b| tag(b));
    let addrs: Vec<usize> = bufs.iter().map(|b| b.as_ptr() as usize).collect();
    let (pool_gone_tx, pool_gone_rx) = mpsc::channel::<()>();
    let (checked_tx, checked_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let mut bufs = bufs;
        pool_gone_rx.recv().unwrap();
        // The pool is gone: the memory must still be ours, readable and writable.
        for (i, b) in bufs.iter_mut().enumerate() {
            b.fill(i as u8 + 1);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8 + 1));
        }
        checked_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // Release all but one, then the last one.
        let last = bufs.pop().unwrap();
        drop(bufs);
        last
    });
    let clone = pool.clone();
    drop(pool);
    drop(clone);
    pool_gone_tx.send(()).unwrap();
    checked_rx.recv().unwrap();
    for &a in &addrs {
        assert!(mapping_of(a).is_some(), "{a:#x} unmapped while still held");
    }
    go_tx.send(()).unwrap();
    let last = holder.join().unwrap();
    // Pooled memory is still mapped: one buffer of the pool is out.
    assert!(mapping_of(addrs[0]).is_some());
    drop(last);
    for &a in &addrs {
        assert_eq!(
            tagged_mapping_of(a),
            None,
            "{a:#x} still mapped after the last buffer came home"
        );
    }
}

#[test]
fn pool_dropped_with_nothing_out_unmaps_at_once() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .capacity(2)
        .prealloc(true)
        .build()
        .unwrap();
    let b = pool.acquire().unwrap();
    tag(&b);
    let addr = b.as_ptr() as usize;
    drop(b);
    assert!(mapping_of(addr).is_some());
    drop(pool);
    assert_eq!(tagged_mapping_of(addr), None);
}
