//! Adversarial review of the overflow reserve (issue #15). Each test here is a reproducer that failed on the
//! reviewed code (see the comment on each); tests that held up are listed in the review report, not here.

mod common;
use pagepool::{OverflowPolicy, PagePool};
#[cfg(target_os = "linux")] // only the Linux-only test below uses it
use std::sync::Barrier;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// A pool of 1 MiB buffers in two chunks of four (4 MiB each), whose budget is exactly its capacity, with two
/// overflow permits and a reserve that does not decay during the test.
fn two_chunk_pool(decay: Duration) -> PagePool {
    PagePool::builder()
        .buf_size(MIB)
        .capacity(8)
        .thread_cache(0)
        .max_bytes(8 * MIB)
        .max_overflow(2)
        .overflow(OverflowPolicy::Map)
        .overflow_decay(decay)
        .build()
        .unwrap()
}

/// Drives the pool into "first chunk mapped, an overflow buffer of the pool's size released", then asks for
/// the pool's whole capacity. Returns how many buffers it got before the first error.
fn take_the_capacity(pool: &PagePool) -> (usize, Option<pagepool::AcquireError>) {
    let mut held: Vec<_> = (0..4).map(|_| pool.acquire().unwrap()).collect(); // chunk 0 (4 MiB)
    assert!(held.iter().all(|b| !b.is_overflow()));
    // A request above the pool's size holds 1 MiB + 4 KiB of budget: chunk 1 (4 MiB) no longer fits, so the
    // next acquire of the pool's size overflows (1 MiB fits).
    let big = pool.acquire_len(MIB + pagepool::page_size()).unwrap();
    assert!(big.is_overflow());
    let o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    drop(big);
    drop(o); // with a reserve: kept mapped, holding 1 MiB of budget and one permit
    held.clear();
    // Nothing is out. The budget (8 MiB) holds both chunks, and max_overflow is not involved: the pool must
    // hand out all 8 of its pooled buffers.
    let mut got = Vec::new();
    for _ in 0..8 {
        match pool.acquire() {
            Ok(b) => got.push(b),
            Err(e) => return (got.len(), Some(e)),
        }
    }
    (got.len(), None)
}

/// FAILS on the reviewed code (finding 1): a reserved buffer holds 1 MiB of `max_bytes`, so the second chunk
/// (4 MiB) never fits while it is reserved; `arena.grow` returns `Full`, the acquire takes the reserved buffer
/// instead, and with `max_overflow(2)` the 7th acquire is refused with `Exhausted` although the pool has handed
/// out only 6 of its 8 buffers and nothing else is out. Nothing unmaps the reserved buffer to make room for
/// the chunk (`Inner::evict_one` is called only by `acquire_oversize`), and as long as the workload keeps
/// reusing it, it never decays: the pool stays stuck below its capacity. With `overflow_decay(ZERO)` the same
/// sequence gets all 8 (checked first, as the control).
#[test]
fn reserved_budget_blocks_chunk_growth_and_acquire_is_exhausted_below_capacity() {
    let control = two_chunk_pool(Duration::ZERO);
    assert_eq!(
        take_the_capacity(&control).0,
        8,
        "control without a reserve"
    );

    let pool = two_chunk_pool(Duration::from_secs(3600));
    let (n, err) = take_the_capacity(&pool);
    let s = pool.stats();
    assert_eq!(
        n, 8,
        "Exhausted below capacity: {err:?}; chunks mapped {}, reserve {} ({} bytes), stats {s:?}",
        s.chunks, s.reserve_buffers, s.reserve_bytes
    );
}

/// FAILS on the reviewed code (finding 1, the io_uring side): the same reserved buffer makes `iovecs()` fail
/// with `RegisterError::BudgetHeld`, whose message says "overflow buffers out now hold N bytes ... drop them and
/// call iovecs again", while no overflow buffer is out: the budget is held by the idle reserve, and calling
/// `iovecs()` again keeps failing until a `trim()` (not mentioned) or the decay. `map_all_chunks` does not
/// evict reserved buffers either.
#[cfg(all(feature = "io-uring", target_os = "linux"))]
#[test]
fn iovecs_reports_budget_held_by_overflow_buffers_when_none_is_out() {
    let pool = two_chunk_pool(Duration::from_secs(3600));
    let first = pool.acquire().unwrap(); // chunk 0
    let mut rest: Vec<_> = (0..3).map(|_| pool.acquire().unwrap()).collect();
    let big = pool.acquire_len(MIB + pagepool::page_size()).unwrap();
    let o = pool.acquire().unwrap();
    assert!(big.is_overflow() && o.is_overflow());
    drop((big, o));
    rest.clear();
    let s = pool.stats();
    assert_eq!((s.overflow_in_use, s.reserve_buffers), (0, 1), "{s:?}");
    // No overflow buffer is out: registration must succeed (as it does after the same drops without a reserve).
    let r = pool.iovecs();
    assert!(r.is_ok(), "{}", r.unwrap_err());
    drop(first);
}

/// FAILS on the reviewed code (finding 2; racy, so up to 300 rounds; here it lingered in ~5% of the rounds,
/// 16 mappings in 300): overflow buffers released on other threads while the last `PagePool` handle is dropped
/// can enter the reserve after the close emptied it (`Handle::drop` runs `unmap_reserved` before it sets
/// `CLOSING`; `return_mapping` checks `is_closing()` before its `put`). Nothing unmaps them until the pool's
/// shared state is freed, i.e. until the last buffer of any kind is back: here a pooled buffer `keep` held
/// after the close. The builder's docs say "dropping the last pool handle unmaps them all"; without a reserve
/// these mappings are unmapped when released.
#[cfg(target_os = "linux")]
#[test]
fn overflow_released_while_the_last_handle_drops_stays_mapped_until_the_last_buffer() {
    let _g = common::maps_lock();
    for round in 0..300 {
        let pool = PagePool::builder()
            .buf_size(16 * pagepool::page_size())
            .capacity(1)
            .thread_cache(0)
            .max_overflow(64)
            .zero_on_release(true) // widens the releaser's window between its `is_closing` look and its put
            .overflow_decay(Duration::from_secs(3600))
            .build()
            .unwrap();
        let keep = pool.acquire().unwrap();
        let mut over: Vec<_> = (0..40).map(|_| pool.acquire().unwrap()).collect();
        assert!(over.iter().all(|b| b.is_overflow()));
        over.iter().for_each(|b| common::tag(b));
        let addrs: Vec<usize> = over.iter().map(|b| b.as_ptr() as usize).collect();
        // 30 wait in the reserve (the close unmaps them, which widens its window), 10 are released on two
        // threads racing the close.
        let racing: Vec<_> = over.drain(30..).collect();
        drop(over);
        let (a, b): (Vec<_>, Vec<_>) = racing
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let barrier = Barrier::new(3);
        std::thread::scope(|s| {
            for part in [a, b] {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    drop(part);
                });
            }
            barrier.wait();
            drop(pool);
        });
        // No handle, no overflow buffer: only the pooled `keep` is left.
        let left: Vec<_> = addrs
            .iter()
            .filter_map(|&a| common::tagged_mapping_of(a))
            .collect();
        drop(keep);
        assert!(
            left.is_empty(),
            "round {round}: {} overflow mapping(s) still mapped after the last handle and every overflow buffer \
             were dropped (unmapped only when `keep` went): {left:?}",
            left.len()
        );
    }
}
