//! Fuzz target: the operation language of `tests/proptest_model.rs`, on one thread.
//!
//! Input: 4 bytes of pool configuration, then operations of 2 bytes each (opcode, argument):
//! acquire, release buffer `arg`, clone a handle, drop a handle, trim, verify every held buffer, build another
//! pool from the next 4 bytes. After every operation the pool's stats are checked against a model: no two
//! live buffers overlap, every buffer is aligned and keeps the stamp written over its whole length at acquire,
//! `idle + in_use + uncommitted == pooled_buffers` with nothing held out uncommitted, live counts and counters equal the model's, `mapped_bytes` stays within
//! `capacity * buf_size + max_overflow * buf_size`. Any violation panics (a libFuzzer crash).
//!
//! The overflow reserve (`overflow_decay`) is off or on (an hour: nothing decays by time during a run), by bit 7
//! of the first configuration byte. The model keeps it as a stack of addresses: a released overflow buffer of
//! an open pool goes on top, the next overflow acquire must get that very mapping back (counted in
//! `overflow_reuses`, not `overflow_maps`), `trim()` and the last handle's drop empty it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagepool::{AcquireError, AlignedBuf, OverflowPolicy, PagePool};

struct Cfg {
    buf_size: usize,
    capacity: usize,
    thread_cache: Option<usize>,
    overflow: OverflowPolicy,
    max_overflow: usize,
    prealloc: bool,
    reserve: bool,
}

impl Cfg {
    fn from(b: [u8; 4]) -> Cfg {
        let capacity = 1 + b[1] as usize % 64;
        Cfg {
            buf_size: (1 + b[0] as usize % 4) * pagepool::page_size(),
            capacity,
            thread_cache: (b[2] != 255).then(|| b[2] as usize % (capacity + 1)),
            overflow: if b[3] & 1 == 0 {
                OverflowPolicy::Map
            } else {
                OverflowPolicy::Fail
            },
            max_overflow: (b[3] as usize >> 1) % 9,
            prealloc: b[3] & 0x80 != 0,
            // `buf_size` reads only the low two bits of b[0].
            reserve: b[0] & 0x80 != 0,
        }
    }
}

struct Model {
    cfg: Cfg,
    max_overflow: usize,
    handles: Vec<PagePool>,
    live_pooled: usize,
    live_overflow: usize,
    attempts: u64,
    ok_pooled: u64,
    ok_overflow: u64,
    ok_reuse: u64,
    exhausted: u64,
    /// Addresses of the reserved overflow buffers, oldest first.
    reserved: Vec<usize>,
}

struct Live {
    buf: AlignedBuf,
    stamp: u64,
    pool: usize,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn write_stamp(buf: &mut [u8], stamp: u64) {
    let m = mix(stamp);
    for (k, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(m ^ k as u64).to_ne_bytes());
    }
}

fn verify(l: &Live) {
    let m = mix(l.stamp);
    for (k, w) in l.buf.chunks_exact(8).enumerate() {
        let found = u64::from_ne_bytes(w.try_into().unwrap());
        assert_eq!(
            found,
            m ^ k as u64,
            "buffer {:p} corrupted at byte {}",
            l.buf.as_ptr(),
            k * 8
        );
    }
}

fn build(cfg: Cfg) -> Model {
    let mut b = PagePool::builder()
        .buf_size(cfg.buf_size)
        .capacity(cfg.capacity)
        .overflow(cfg.overflow)
        .max_overflow(cfg.max_overflow)
        .prealloc(cfg.prealloc)
        .overflow_decay(if cfg.reserve {
            std::time::Duration::from_secs(3600)
        } else {
            std::time::Duration::ZERO
        });
    if let Some(t) = cfg.thread_cache {
        b = b.thread_cache(t);
    }
    let pool = b.build().expect("a valid configuration builds");
    Model {
        max_overflow: if cfg.overflow == OverflowPolicy::Fail {
            0
        } else {
            cfg.max_overflow
        },
        cfg,
        handles: vec![pool],
        live_pooled: 0,
        live_overflow: 0,
        attempts: 0,
        ok_pooled: 0,
        ok_overflow: 0,
        ok_reuse: 0,
        exhausted: 0,
        reserved: Vec::new(),
    }
}

fn check_stats(m: &Model) {
    let Some(h) = m.handles.first() else { return };
    let s = h.stats();
    assert_eq!(s.idle + s.in_use + s.uncommitted, s.pooled_buffers, "{s:?}");
    // No recommit fails outside fault injection: nothing is ever held out (src/uncommitted.rs).
    assert_eq!(s.uncommitted, 0, "{s:?}");
    assert_eq!(
        (s.in_use, s.overflow_in_use),
        (m.live_pooled, m.live_overflow),
        "{s:?}"
    );
    assert!(s.pooled_buffers <= m.cfg.capacity, "{s:?}");
    if m.cfg.prealloc {
        assert_eq!(s.pooled_buffers, m.cfg.capacity, "{s:?}");
    }
    // One thread: its cache holds at most max_thread_cache slots (an adaptive cache grows past thread_cache).
    assert!(s.cached <= h.max_thread_cache(), "{s:?}");
    assert_eq!(
        (
            s.acquires,
            s.pool_hits,
            s.overflow_maps,
            s.overflow_reuses,
            s.exhausted,
            s.os_errors
        ),
        (
            m.attempts,
            m.ok_pooled,
            m.ok_overflow,
            m.ok_reuse,
            m.exhausted,
            0
        ),
        "{s:?}"
    );
    assert_eq!(
        (s.reserve_buffers, s.reserve_bytes, s.decay_unmaps),
        (m.reserved.len(), m.reserved.len() * m.cfg.buf_size, 0),
        "{s:?}"
    );
    assert_eq!(
        s.overflow_maps - s.overflow_unmaps,
        (m.live_overflow + m.reserved.len()) as u64,
        "{s:?}"
    );
    assert_eq!(
        s.mapped_bytes,
        (s.pooled_buffers + s.overflow_in_use + s.reserve_buffers) * m.cfg.buf_size,
        "{s:?}"
    );
    assert!(
        s.mapped_bytes <= (m.cfg.capacity + m.max_overflow) * m.cfg.buf_size,
        "{s:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let mut pools = vec![build(Cfg::from(data[..4].try_into().unwrap()))];
    let mut live: Vec<Live> = Vec::new();
    let mut stamp = 0u64;
    let mut rest = &data[4..];
    while rest.len() >= 2 {
        let (op, arg) = (rest[0], rest[1] as usize);
        rest = &rest[2..];
        let p = arg % pools.len();
        match op % 10 {
            0..=3 => {
                let m = &mut pools[p];
                let Some(h) = m.handles.first() else { continue };
                let before = h.stats();
                m.attempts += 1;
                match h.acquire() {
                    Ok(mut buf) => {
                        let start = buf.as_ptr() as usize;
                        assert_eq!(buf.len(), m.cfg.buf_size);
                        assert_eq!(start % pagepool::page_size(), 0);
                        for l in &live {
                            let s = l.buf.as_ptr() as usize;
                            assert!(
                                start + buf.len() <= s || s + l.buf.len() <= start,
                                "overlap"
                            );
                        }
                        if buf.is_overflow() {
                            // A reserved buffer holds its permit: buffers out plus reserved stay within it.
                            assert!(m.live_overflow + m.reserved.len() <= m.max_overflow);
                            assert!(
                                before.idle == before.cached
                                    && before.pooled_buffers == m.cfg.capacity
                            );
                            m.live_overflow += 1;
                            match m.reserved.pop() {
                                Some(addr) => {
                                    assert_eq!(addr, start, "not the newest reserved buffer");
                                    m.ok_reuse += 1;
                                }
                                None => {
                                    assert!(m.live_overflow <= m.max_overflow);
                                    m.ok_overflow += 1;
                                }
                            }
                        } else {
                            m.live_pooled += 1;
                            m.ok_pooled += 1;
                        }
                        stamp += 1;
                        write_stamp(&mut buf, stamp);
                        live.push(Live {
                            buf,
                            stamp,
                            pool: p,
                        });
                    }
                    Err(AcquireError::Exhausted { .. }) => {
                        // One thread: nothing idle anywhere, every permit taken, nothing reserved.
                        assert_eq!(m.live_pooled, m.cfg.capacity, "{before:?}");
                        assert_eq!(m.live_overflow, m.max_overflow, "{before:?}");
                        assert!(m.reserved.is_empty(), "{before:?}");
                        m.exhausted += 1;
                    }
                    Err(e) => panic!("acquire: {e}"),
                }
                check_stats(m);
            }
            4..=6 => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(arg % live.len());
                verify(&l);
                let m = &mut pools[l.pool];
                if l.buf.is_overflow() {
                    m.live_overflow -= 1;
                    // Kept in the reserve of an open pool; unmapped by a closed one.
                    if m.cfg.reserve && !m.handles.is_empty() {
                        m.reserved.push(l.buf.as_ptr() as usize);
                    }
                } else {
                    m.live_pooled -= 1;
                }
                drop(l);
                check_stats(m);
            }
            7 => {
                let m = &mut pools[p];
                match (arg & 0x80 != 0, m.handles.first()) {
                    (true, Some(h)) => {
                        let c = h.clone();
                        m.handles.push(c);
                    }
                    (false, Some(_)) => {
                        drop(m.handles.pop());
                        if m.handles.is_empty() {
                            // The last handle's drop empties the reserve.
                            m.reserved.clear();
                        }
                    }
                    _ => {}
                }
                check_stats(m);
            }
            8 => {
                if let Some(h) = pools[p].handles.first().cloned() {
                    h.trim();
                    pools[p].reserved.clear();
                    let s = h.stats();
                    assert_eq!(s.cached, 0, "trim flushes this thread's cache");
                    assert_eq!((s.reserve_buffers, s.reserve_bytes), (0, 0), "trim empties the reserve");
                    check_stats(&pools[p]);
                }
                live.iter().for_each(verify);
            }
            _ => {
                if rest.len() >= 4 && pools.len() < 3 {
                    let cfg = Cfg::from(rest[..4].try_into().unwrap());
                    rest = &rest[4..];
                    pools.push(build(cfg));
                }
            }
        }
    }
    for l in live {
        verify(&l);
        let m = &mut pools[l.pool];
        if l.buf.is_overflow() {
            m.live_overflow -= 1;
            if m.cfg.reserve && !m.handles.is_empty() {
                m.reserved.push(l.buf.as_ptr() as usize);
            }
        } else {
            m.live_pooled -= 1;
        }
        drop(l);
        check_stats(m);
    }
    for m in &mut pools {
        check_stats(m);
        if let Some(h) = m.handles.first().cloned() {
            let s = h.stats();
            assert_eq!((s.in_use, s.overflow_in_use), (0, 0), "{s:?}");
            h.trim();
            m.reserved.clear();
            check_stats(m);
            let s = h.stats();
            assert_eq!(s.overflow_maps, s.overflow_unmaps, "{s:?}");
        }
    }
});
