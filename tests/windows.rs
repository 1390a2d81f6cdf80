//! The Windows backend as the OS sees it: `VirtualQuery` on pooled and overflow buffers, release on drop, and
//! how much address space an 8 KiB buffer costs given the 64 KiB allocation granularity (see docs/windows.md).
//! Run with `--nocapture` to see the figures.
#![cfg(windows)]

mod common;
use common::{maps_lock, query, Region};
use pagepool::PagePool;
use std::time::Duration;
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_FREE, MEM_PRIVATE, MEM_RESERVE, PAGE_READWRITE,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

fn granularity() -> usize {
    let mut info = SYSTEM_INFO::default();
    // SAFETY: GetSystemInfo only writes the struct it is given.
    unsafe { GetSystemInfo(&mut info) };
    info.dwAllocationGranularity as usize
}

fn region(addr: usize) -> Region {
    query(addr).unwrap_or_else(|| panic!("VirtualQuery({addr:#x}) failed"))
}

/// The whole reservation containing `addr`: (allocation base, reserved bytes, committed bytes).
fn reservation(addr: usize) -> (usize, usize, usize) {
    let base = region(addr).allocation_base;
    assert_ne!(base, 0, "{addr:#x} is not in a reservation");
    let (mut at, mut reserved, mut committed) = (base, 0, 0);
    loop {
        let r = region(at);
        if r.allocation_base != base || r.state == MEM_FREE {
            break;
        }
        reserved += r.size;
        if r.state == MEM_COMMIT {
            committed += r.size;
        }
        at = r.base + r.size;
    }
    (base, reserved, committed)
}

/// Asserts that `[ptr, ptr + len)` is committed, read-write, private memory, all inside one region.
fn assert_committed_rw(ptr: usize, len: usize) -> Region {
    let r = region(ptr);
    assert_eq!(r.state, MEM_COMMIT, "{r:x?}");
    assert_eq!(r.protect, PAGE_READWRITE, "{r:x?}");
    assert_eq!(r.kind, MEM_PRIVATE, "{r:x?}");
    assert!(
        r.base <= ptr && ptr + len <= r.base + r.size,
        "buffer {ptr:#x}+{len:#x} spans regions: {r:x?}"
    );
    r
}

#[test]
fn system_figures() {
    let g = granularity();
    println!(
        "page size {} B, allocation granularity {g} B",
        pagepool::page_size()
    );
    assert_eq!(pagepool::page_size(), 4096);
    assert!(g.is_power_of_two() && g >= pagepool::page_size(), "{g}");
}

#[test]
fn buffers_are_page_aligned_committed_read_write() {
    let _g = maps_lock();
    let page = pagepool::page_size();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(4)
        .build()
        .unwrap();
    let mut pooled: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    let mut overflow = pool.acquire().unwrap();
    assert!(overflow.is_overflow() && !pooled[0].is_overflow());
    for b in pooled.iter_mut().chain(std::iter::once(&mut overflow)) {
        let p = b.as_ptr() as usize;
        assert_eq!(p % page, 0, "{p:#x}");
        assert!(b.iter().all(|&x| x == 0), "fresh memory reads as zero");
        b.fill(0xA5);
        assert_committed_rw(p, b.len());
    }
    // All pooled buffers share one reservation (the chunk); the overflow buffer has its own.
    let chunk = reservation(pooled[0].as_ptr() as usize).0;
    assert!(pooled
        .iter()
        .all(|b| reservation(b.as_ptr() as usize).0 == chunk));
    let (obase, oreserved, ocommitted) = reservation(overflow.as_ptr() as usize);
    assert_ne!(obase, chunk);
    assert_eq!(obase, overflow.as_ptr() as usize);
    assert_eq!((oreserved, ocommitted), (8192, 8192));
}

#[test]
fn overflow_buffer_is_released_on_drop() {
    let _g = maps_lock();
    // No overflow reserve: a released overflow buffer is released at once.
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(1)
        .overflow_decay(Duration::ZERO)
        .build()
        .unwrap();
    let pooled = pool.acquire().unwrap();
    let overflow = pool.acquire().unwrap();
    assert!(overflow.is_overflow());
    let addr = overflow.as_ptr() as usize;
    assert_committed_rw(addr, overflow.len());
    drop(overflow);
    let r = region(addr);
    assert_eq!(r.state, MEM_FREE, "{r:x?}");
    // Pooled memory stays committed until the pool and its last buffer are gone.
    let p = pooled.as_ptr() as usize;
    assert_committed_rw(p, pooled.len());
    drop(pool);
    assert_committed_rw(p, pooled.len());
    drop(pooled);
    assert_eq!(region(p).state, MEM_FREE);
}

#[test]
fn alignment_above_granularity_commits_only_the_interior() {
    let _g = maps_lock();
    let g = granularity();
    let align = 2 << 20;
    let pool = PagePool::builder()
        .buf_size(8192)
        .alignment(align)
        .capacity(2)
        .overflow_decay(Duration::ZERO)
        .build()
        .unwrap();
    let pooled: Vec<_> = (0..2).map(|_| pool.acquire().unwrap()).collect();
    let overflow = pool.acquire().unwrap();
    assert!(overflow.is_overflow());
    // Pooled: 2 slots of stride 2 MiB, each buffer's first 8 KiB used, all of the chunk committed.
    let p = pooled[0].as_ptr() as usize;
    assert_eq!(p % align, 0, "{p:#x}");
    assert_committed_rw(p, 8192);
    let (_, reserved, committed) = reservation(p);
    assert_eq!(committed, 2 * align);
    assert_eq!(reserved, 2 * align + align - g);
    // Overflow: 8 KiB committed at a 2 MiB boundary, the slack around it reserved only.
    let o = overflow.as_ptr() as usize;
    assert_eq!(o % align, 0, "{o:#x}");
    let r = assert_committed_rw(o, 8192);
    assert_eq!((r.base, r.size), (o, 8192));
    let (base, reserved, committed) = reservation(o);
    assert_eq!((reserved, committed), (8192 + align - g, 8192));
    if base != o {
        assert_eq!(region(base).state, MEM_RESERVE);
    }
    let after = region(o + 8192);
    assert!(
        after.state == MEM_RESERVE || after.allocation_base != base,
        "{after:x?}"
    );
    let s = pool.stats();
    assert_eq!(s.mapped_bytes, (2 * align + align - g) + (8192 + align - g));
    drop(overflow);
    assert_eq!(region(o).state, MEM_FREE);
    assert_eq!(region(base).state, MEM_FREE);
}

#[test]
fn prealloc_touches_every_page() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(64)
        .prealloc(true)
        .build()
        .unwrap();
    let b = pool.acquire().unwrap();
    assert_committed_rw(b.as_ptr() as usize, b.len());
    assert!(b.iter().all(|&x| x == 0));
}

#[test]
fn granularity_cost_of_8k_buffers() {
    let _g = maps_lock();
    let g = granularity();
    let round_up = |n: usize| n.div_ceil(g) * g;

    // Pooled, default chunking: one 4 MiB chunk of 512 slots.
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(1024)
        .build()
        .unwrap();
    let b = pool.acquire().unwrap();
    let s = pool.stats();
    let slots = s.pooled_buffers / s.chunks;
    let (base, reserved, committed) = reservation(b.as_ptr() as usize);
    assert_eq!(base % g, 0);
    assert_eq!(committed, reserved);
    assert_eq!(
        reserved, s.mapped_bytes,
        "mapped_bytes is the chunk reservation"
    );
    assert_eq!(reserved % g, 0, "full chunks are whole granules");
    let pooled_per_buf = round_up(reserved) / slots;
    println!(
        "pooled 8 KiB buffer: chunk reservation {reserved} B / {slots} slots = {} B reserved, \
         {pooled_per_buf} B of address space per buffer",
        reserved / slots
    );
    assert_eq!(pooled_per_buf, 8192);
    drop((b, pool));

    // Pooled, a pool smaller than one granule: a single short chunk.
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(4)
        .build()
        .unwrap();
    let b = pool.acquire().unwrap();
    let (_, reserved, _) = reservation(b.as_ptr() as usize);
    println!(
        "pooled 8 KiB buffer, capacity 4: chunk reservation {reserved} B / 4 slots = {} B reserved, \
         {} B of address space per buffer",
        reserved / 4,
        round_up(reserved) / 4
    );
    assert_eq!(reserved, 4 * 8192);
    drop((b, pool));

    // Overflow: one reservation per buffer, starting on a granule, so the rest of the granule is stranded.
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(1)
        .build()
        .unwrap();
    let _pooled = pool.acquire().unwrap();
    let over: Vec<_> = (0..16).map(|_| pool.acquire().unwrap()).collect();
    let mut bases: Vec<usize> = over
        .iter()
        .map(|b| {
            assert!(b.is_overflow());
            let (base, reserved, committed) = reservation(b.as_ptr() as usize);
            assert_eq!((reserved, committed), (8192, 8192));
            assert_eq!(base % g, 0, "{base:#x}");
            // The tail of the granule is not part of the reservation and no other reservation can start there.
            let tail = region(base + reserved);
            assert_ne!(tail.allocation_base, base);
            base
        })
        .collect();
    bases.sort_unstable();
    let min_gap = bases.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(min_gap >= g, "{min_gap:#x}");
    println!(
        "overflow 8 KiB buffer: reservation {} B (VirtualQuery), allocation base on a {g} B granule, so {} B of \
         address space per buffer; closest two of 16 reservations: {min_gap} B apart",
        8192,
        round_up(8192)
    );
    assert_eq!(
        pool.stats().mapped_bytes,
        8192 + 16 * 8192,
        "one 1-slot chunk and 16 overflow buffers"
    );
}

#[test]
fn guard_pages_are_no_access_pages() {
    use windows_sys::Win32::System::Memory::PAGE_NOACCESS;
    let page = pagepool::page_size();
    let pool = PagePool::builder()
        .buf_size(2 * page)
        .capacity(4)
        .guard_pages(true)
        .build()
        .unwrap();
    let held: Vec<_> = (0..5).map(|_| pool.acquire().unwrap()).collect();
    assert!(held[4].is_overflow());
    for b in &held {
        let p = b.as_ptr() as usize;
        assert_committed_rw(p, b.len());
        for guard in [p - page, p + b.len()] {
            let r = region(guard);
            assert_eq!((r.state, r.protect), (MEM_COMMIT, PAGE_NOACCESS), "{r:?}");
        }
    }
}

#[test]
fn lock_memory_locks_with_virtual_lock() {
    let pool = PagePool::builder()
        .capacity(4)
        .lock_memory(pagepool::LockPolicy::Required)
        .build()
        .unwrap();
    let b = pool.acquire().unwrap();
    let s = pool.stats();
    assert_eq!(s.locked_bytes, s.mapped_bytes, "{s:?}");
    assert_committed_rw(b.as_ptr() as usize, b.len());
}

#[test]
fn trim_decommits_and_recommits_idle_buffers() {
    let pool = PagePool::builder()
        .buf_size(64 << 10)
        .capacity(8)
        .thread_cache(0)
        .build()
        .unwrap();
    let mut held: Vec<_> = (0..8).map(|_| pool.acquire().unwrap()).collect();
    held.iter_mut().for_each(|b| b.fill(9));
    let addrs: Vec<_> = held.iter().map(|b| b.as_ptr() as usize).collect();
    drop(held);
    assert_eq!(pool.trim(), 8 * (64 << 10));
    for a in addrs {
        // Still committed read-write (the freelist stays valid), and the old contents are gone.
        assert_committed_rw(a, 64 << 10);
    }
    let held: Vec<_> = (0..8).map(|_| pool.acquire().unwrap()).collect();
    assert!(held.iter().all(|b| b.iter().all(|&x| x == 0)));
}

#[test]
fn zero_on_release_and_poison_work_on_windows() {
    let pool = PagePool::builder()
        .capacity(1)
        .zero_on_release(true)
        .poison_on_release(true)
        .build()
        .unwrap();
    let mut b = pool.acquire().unwrap();
    b.fill(0x5A);
    drop(b);
    let b = pool.acquire().unwrap();
    assert!(b.iter().all(|&x| x == 0));
    assert_eq!(pool.stats().poison_violations, 0);
}

#[test]
fn linux_only_options_are_typed_errors() {
    use pagepool::{ConfigError, ForkPolicy, HugePages};
    let b = || PagePool::builder().capacity(1);
    for built in [
        b().dont_dump(true).build(),
        b().on_fork(ForkPolicy::DontFork).build(),
        b().on_fork(ForkPolicy::WipeOnFork).build(),
        b().huge_pages(HugePages::Transparent).build(),
        b().huge_pages(HugePages::Explicit).build(),
    ] {
        match built {
            Err(ConfigError::Unsupported { platform, .. }) => assert_eq!(platform, "windows"),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
}
