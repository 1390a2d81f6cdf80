//! Many threads: unique stamps over whole buffers, half released on another thread, stats add up.

use pagepool::{AlignedBuf, PagePool};
use std::sync::mpsc;
use std::thread;

const THREADS: usize = 6;
const ROUNDS: usize = 300;
const HOLD: usize = 5;

fn stamp(b: &mut AlignedBuf, tag: u64) {
    for chunk in b.chunks_exact_mut(8) {
        chunk.copy_from_slice(&tag.to_le_bytes());
    }
}

fn check(b: &AlignedBuf, tag: u64) {
    for (i, chunk) in b.chunks_exact(8).enumerate() {
        assert_eq!(
            u64::from_le_bytes(chunk.try_into().unwrap()),
            tag,
            "stamp disturbed at word {i}"
        );
    }
}

#[test]
fn stamps_survive_and_stats_add_up() {
    // Capacity below the peak demand (THREADS * HOLD = 30) so overflow buffers mix in.
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(20)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<(AlignedBuf, u64)>();
    // A releaser thread checks and drops buffers acquired elsewhere.
    let releaser = thread::spawn(move || {
        let mut n = 0usize;
        for (b, tag) in rx {
            check(&b, tag);
            drop(b);
            n += 1;
        }
        n
    });
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let tx = tx.clone();
            thread::spawn(move || {
                let mut sent = 0usize;
                for round in 0..ROUNDS {
                    let mut held = Vec::with_capacity(HOLD);
                    for k in 0..HOLD {
                        let tag = ((t as u64) << 48) | ((round as u64) << 8) | k as u64;
                        let mut b = pool.acquire().unwrap();
                        stamp(&mut b, tag);
                        held.push((b, tag));
                    }
                    thread::yield_now();
                    for (i, (b, tag)) in held.into_iter().enumerate() {
                        check(&b, tag);
                        if (i + round) % 2 == 0 {
                            tx.send((b, tag)).unwrap();
                            sent += 1;
                        }
                    }
                }
                sent
            })
        })
        .collect();
    drop(tx);
    let sent: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(releaser.join().unwrap(), sent);
    let s = pool.stats();
    assert_eq!(s.in_use, 0, "{s:?}");
    assert_eq!(s.overflow_in_use, 0, "{s:?}");
    assert_eq!(s.idle + s.in_use, s.pooled_buffers, "{s:?}");
    assert_eq!(s.pooled_buffers, 20);
    assert_eq!(s.acquires as usize, THREADS * ROUNDS * HOLD);
    assert_eq!(
        s.pool_hits + s.overflow_maps + s.overflow_reuses,
        s.acquires
    );
    // Released overflow buffers wait in the reserve until a trim (or their decay).
    assert_eq!(
        s.overflow_maps,
        s.overflow_unmaps + s.reserve_buffers as u64
    );
    assert_eq!(s.mapped_bytes, 20 * 8192 + s.reserve_bytes);
    pool.trim();
    let s = pool.stats();
    assert_eq!(s.overflow_maps, s.overflow_unmaps);
    assert_eq!(s.mapped_bytes, 20 * 8192);
}

#[test]
fn no_two_live_buffers_overlap_across_threads() {
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(16)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                let bufs: Vec<_> = (0..6).map(|_| pool.acquire().unwrap()).collect();
                let ranges: Vec<(usize, usize)> = bufs
                    .iter()
                    .map(|b| (b.as_ptr() as usize, b.len()))
                    .collect();
                (bufs, ranges)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all: Vec<(usize, usize)> = results
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    all.sort();
    for w in all.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "overlap: {w:?}");
    }
    assert_eq!(all.len(), 24);
}
