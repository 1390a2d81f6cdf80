//! Pooled memory comes from the OS in chunks, never from the malloc heap, and stays within few mappings.
// Counts and inspects OS mappings: /proc/self/maps on Linux, VirtualQuery on Windows (see tests/common).
#![cfg(any(target_os = "linux", windows))]

mod common;
#[cfg(target_os = "linux")]
use common::mapping_of;
use common::maps_lock;
use pagepool::PagePool;

#[test]
fn chunks_grow_on_demand_up_to_capacity() {
    let _g = maps_lock();
    let page = pagepool::page_size();
    // 4 MiB chunks of one-page buffers: 1024 slots per chunk, 3 chunks in all.
    let per_chunk = (4 << 20) / page;
    let pool = PagePool::builder()
        .buf_size(page)
        .capacity(3 * per_chunk)
        .build()
        .unwrap();
    assert_eq!(pool.stats().chunks, 0);
    let mut held = vec![pool.acquire().unwrap()];
    assert_eq!(pool.stats().chunks, 1);
    held.extend((1..per_chunk).map(|_| pool.acquire().unwrap()));
    assert_eq!(pool.stats().chunks, 1);
    held.push(pool.acquire().unwrap());
    assert_eq!(pool.stats().chunks, 2);
    held.extend((0..2 * per_chunk - 1).map(|_| pool.acquire().unwrap()));
    let s = pool.stats();
    assert_eq!(
        (s.chunks, s.pooled_buffers, s.overflow_in_use),
        (3, 3 * per_chunk, 0)
    );
    assert_eq!(s.mapped_bytes, 3 * per_chunk * page);
    held.push(pool.acquire().unwrap());
    assert!(
        held.last().unwrap().is_overflow(),
        "past capacity the pool overflows"
    );
}

// Parses /proc/self/maps fields; tests/windows.rs checks the same with VirtualQuery.
#[cfg(target_os = "linux")]
#[test]
fn buffers_live_in_anonymous_os_mappings_not_the_heap() {
    let _g = maps_lock();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(4)
        .build()
        .unwrap();
    let pooled: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect();
    let overflow = pool.acquire().unwrap();
    assert!(overflow.is_overflow());
    for b in pooled.iter().chain(std::iter::once(&overflow)) {
        let line = mapping_of(b.as_ptr() as usize).expect("buffer address is mapped");
        let fields: Vec<_> = line.split_whitespace().collect();
        assert!(fields[1].starts_with("rw"), "{line}");
        // An anonymous mapping has inode 0 and no path; the brk heap would say [heap].
        assert_eq!(fields[4], "0", "{line}");
        assert!(fields.len() == 5, "named mapping: {line}");
        // The whole buffer lies inside that one mapping. Judged from this one snapshot of the maps: reading
        // the file again may show the VMA grown, when another mapping of the process (ASan's allocator, a
        // thread stack) lands beside it with the same flags and merges.
        let (_, hi) = fields[0].split_once('-').unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        assert!(
            b.as_ptr() as usize + b.len() <= hi,
            "buffer runs past {line}"
        );
    }
}
