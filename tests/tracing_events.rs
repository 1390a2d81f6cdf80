//! Operator-facing tracing events, target "pagepool": debug on chunk and overflow map/unmap (and the overflow
//! reserve's unmaps), warn when overflow starts, error on OS failures.

mod common;
use common::Recorder;
use pagepool::PagePool;
use tracing::Level;

#[test]
fn events_at_the_points_an_operator_cares_about() {
    let rec = Recorder::default();
    rec.record(|| {
        let pool = PagePool::builder()
            .buf_size(8192)
            .capacity(1)
            .overflow_decay(std::time::Duration::ZERO)
            .build()
            .unwrap();
        let a = pool.acquire().unwrap(); // maps the chunk
        let o1 = pool.acquire().unwrap(); // overflow starts: warn + debug map
        let o2 = pool.acquire().unwrap(); // still overflowing: no second warning
        drop((o1, o2, a)); // no reserve: debug unmap, each
        let reserving = PagePool::builder()
            .buf_size(8192)
            .capacity(1)
            .overflow_decay(std::time::Duration::from_secs(3600))
            .build()
            .unwrap();
        let a = reserving.acquire().unwrap(); // a chunk
        let o: Vec<_> = (0..3).map(|_| reserving.acquire().unwrap()).collect(); // warn, 3 maps
        drop(o); // kept in the reserve: no event
        let o = reserving.acquire().unwrap(); // reused: no event
        drop((o, a));
        reserving.trim(); // one debug event for the three reserved buffers
        drop(reserving); // nothing left in the reserve: no event
        let huge = PagePool::builder()
            .buf_size(1 << 47)
            .capacity(1)
            .build()
            .unwrap();
        assert!(huge.acquire().is_err()); // OS refusal: error
    });
    let ev = rec.events();
    let ours: Vec<_> = ev.iter().filter(|e| e.target == "pagepool").collect();
    assert_eq!(
        ours.len(),
        ev.len(),
        "every event uses target \"pagepool\": {ev:?}"
    );
    let count = |lvl: Level, text: &str| {
        ours.iter()
            .filter(|e| e.level == lvl && e.message.starts_with(text))
            .count()
    };
    assert_eq!(count(Level::DEBUG, "mapped pool chunk"), 2, "{ours:#?}");
    assert_eq!(count(Level::WARN, "pool exhausted"), 2, "{ours:#?}");
    assert_eq!(
        count(Level::DEBUG, "mapped overflow buffer"),
        5,
        "{ours:#?}"
    );
    assert_eq!(
        count(Level::DEBUG, "unmapped reserved overflow buffers"),
        1,
        "{ours:#?}"
    );
    assert_eq!(
        count(Level::DEBUG, "unmapped overflow buffer"),
        2,
        "{ours:#?}"
    );
    assert_eq!(count(Level::ERROR, "chunk mmap failed"), 1, "{ours:#?}");
}

#[test]
fn a_waiter_timing_out_logs_a_debug_event() {
    let rec = Recorder::default();
    rec.record(|| {
        let pool = PagePool::builder()
            .capacity(1)
            .max_overflow(0)
            .overflow(pagepool::OverflowPolicy::Wait)
            .build()
            .unwrap();
        let _held = pool.acquire().unwrap();
        let r = pool.acquire_timeout(std::time::Duration::from_millis(5));
        assert!(matches!(r, Err(pagepool::AcquireError::Timeout { .. })));
    });
    let ev = rec.events();
    let timed_out: Vec<_> = ev
        .iter()
        .filter(|e| e.target == "pagepool" && e.message.starts_with("waiter timed out"))
        .collect();
    assert_eq!(timed_out.len(), 1, "{ev:#?}");
    assert_eq!(timed_out[0].level, Level::DEBUG);
}
