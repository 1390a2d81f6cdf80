//! The adversarial stress workload shared by `tests/stress.rs` (libtest, `#[ignore]`) and `tests/tsan_stress.rs`
//! (no harness, for ThreadSanitizer; see `ci/sanitizers.sh`).
//!
//! Eight threads (on however few cores) hammer four shared pools that together cover every path: thread cache
//! on and off, `OverflowPolicy::Map` with a small `max_overflow` and `OverflowPolicy::Fail`, capacities far
//! below the demand (so exhaustion and overflow are constant), a larger alignment, and `prealloc`. Every
//! buffer is stamped over its whole length with (thread, sequence) when acquired and verified before it is
//! released; about half of the buffers a thread acquires are sent to a partner thread and released there.
//! Threads also build short-lived private pools, hand some of their buffers to the partner and drop the pool
//! handle while those buffers are still out, clone and drop pool handles, and trim.
//!
//! Checked: no buffer's bytes change while it is held (zero corruptions), no page is ever held by two buffers at
//! once (a global set of live page addresses: zero double hand-outs), and at the end every buffer is accounted
//! for: the pools' stats add up and agree with the workload's own counts.
#![allow(dead_code)]

use pagepool::{AcquireError, AlignedBuf, OverflowPolicy, PagePool, PoolStats};
use std::cell::UnsafeCell;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable overriding the total operation count.
pub const OPS_ENV: &str = "PAGEPOOL_STRESS_OPS";
/// Environment variable overriding the RNG seed.
pub const SEED_ENV: &str = "PAGEPOOL_STRESS_SEED";

/// The total operation count: `PAGEPOOL_STRESS_OPS` (digits, `_` allowed, or `1e7` style) or `default`.
pub fn ops_from_env(default: u64) -> u64 {
    match std::env::var(OPS_ENV) {
        Ok(v) => parse_count(&v).unwrap_or_else(|| panic!("{OPS_ENV}={v:?} is not a count")),
        Err(_) => default,
    }
}

/// The RNG seed: `PAGEPOOL_STRESS_SEED` or a fixed default (runs are reproducible up to scheduling).
pub fn seed_from_env() -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|v| parse_count(&v))
        .unwrap_or(0x005E_ED0F_9A6E_9001)
}

fn parse_count(v: &str) -> Option<u64> {
    let v = v.trim().replace('_', "");
    if let Some((m, e)) = v.split_once(['e', 'E']) {
        let m: u64 = m.parse().ok()?;
        let e: u32 = e.parse().ok()?;
        return m.checked_mul(10u64.checked_pow(e)?);
    }
    v.parse().ok()
}

/// xorshift64*: small, fast, good enough to pick operations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// splitmix64's finaliser: spreads a stamp over all 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stamp of the `seq`th acquire of thread `thread`.
pub fn stamp_of(thread: usize, seq: u64) -> u64 {
    ((thread as u64 + 1) << 44) | (seq & ((1 << 44) - 1))
}

/// Writes `stamp` over the whole buffer: word `k` is `mix(stamp) ^ k`, so a word moved, lost or written by
/// anybody else does not verify.
pub fn write_stamp(buf: &mut [u8], stamp: u64) {
    let m = mix(stamp);
    for (k, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(m ^ k as u64).to_ne_bytes());
    }
}

/// The first word that does not carry `stamp`: `(byte offset, expected, found)`.
pub fn find_corruption(buf: &[u8], stamp: u64) -> Option<(usize, u64, u64)> {
    let m = mix(stamp);
    buf.chunks_exact(8).enumerate().find_map(|(k, w)| {
        let found = u64::from_ne_bytes(w.try_into().unwrap());
        let expected = m ^ k as u64;
        (found != expected).then_some((k * 8, expected, found))
    })
}

/// Page addresses of every buffer out now, across all pools and threads: a second holder of any page is a
/// double hand-out (or two overlapping buffers). Sharded to keep eight threads from serialising on one lock.
pub struct LivePages {
    shards: Vec<SpinLock<HashSet<usize>>>,
    page: usize,
}

const SHARDS: usize = 64;

impl LivePages {
    pub fn new() -> Self {
        LivePages {
            shards: (0..SHARDS).map(|_| SpinLock::new(HashSet::new())).collect(),
            page: pagepool::page_size(),
        }
    }

    fn shard(&self, page_addr: usize) -> &SpinLock<HashSet<usize>> {
        &self.shards[(mix(page_addr as u64) as usize) % SHARDS]
    }

    /// Records a buffer just acquired; panics if any of its pages is already held.
    pub fn insert(&self, buf: &AlignedBuf, who: &str) {
        let start = buf.as_ptr() as usize;
        assert_eq!(start % self.page, 0, "{who}: unaligned buffer {start:#x}");
        assert_eq!(buf.len() % self.page, 0, "{who}: length {}", buf.len());
        for p in (start..start + buf.len()).step_by(self.page) {
            assert!(
                self.shard(p).with(|s| s.insert(p)),
                "DOUBLE HAND-OUT: page {p:#x} of buffer {start:#x}+{} ({who}) is already held",
                buf.len()
            );
        }
    }

    /// Forgets a buffer about to be released; panics if any of its pages was not recorded.
    pub fn remove(&self, buf: &AlignedBuf, who: &str) {
        let start = buf.as_ptr() as usize;
        for p in (start..start + buf.len()).step_by(self.page) {
            assert!(
                self.shard(p).with(|s| s.remove(&p)),
                "page {p:#x} of buffer {start:#x} ({who}) was not recorded as held"
            );
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.with(|s| s.len())).sum()
    }
}

impl Default for LivePages {
    fn default() -> Self {
        Self::new()
    }
}

/// A spin lock on one atomic flag. The workload's own bookkeeping uses it instead of `std::sync::Mutex` and
/// `std::sync::mpsc`: their contended paths live in the precompiled std, which is not instrumented for
/// ThreadSanitizer, so TSan would miss those acquisitions and report races on the data they protect. Every
/// acquisition here is an atomic operation compiled into this binary, which TSan sees.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `with` gives out `&mut T` only while `locked` is held (acquired with `Acquire`, released with
// `Release`), so at most one thread accesses the value at a time; moving values in and out needs `T: Send`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the value.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            // 8 threads on 2 cores: the holder may be descheduled, so give it the CPU.
            thread::yield_now();
        }
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(false, Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: we hold the lock (the compare-exchange above succeeded, and `_unlock` releases it only after
        // `f` returns or unwinds), so no other reference to the value exists.
        f(unsafe { &mut *self.value.get() })
    }
}

/// A thread's bounded inbox of buffers sent by its partner.
pub struct Inbox {
    queue: SpinLock<VecDeque<Held>>,
    /// The partner will send nothing more (it finished, or it panicked and dropped its `Outbox`).
    closed: AtomicBool,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox {
            queue: SpinLock::new(VecDeque::with_capacity(INBOX)),
            closed: AtomicBool::new(false),
        }
    }
}

impl Inbox {
    fn try_recv(&self) -> Option<Held> {
        self.queue.with(|q| q.pop_front())
    }

    /// Waits for the next buffer; `None` once the partner has closed and everything it sent was taken.
    fn recv(&self) -> Option<Held> {
        loop {
            let closed = self.closed.load(Acquire);
            if let Some(h) = self.try_recv() {
                return Some(h);
            }
            if closed {
                return None;
            }
            thread::yield_now();
        }
    }
}

/// The sending side of the partner's inbox; dropping it (also when unwinding) closes the inbox.
struct Outbox(Arc<Inbox>);

impl Outbox {
    /// Queues `h` unless the inbox is full; never blocks (two partners blocked on each other would deadlock).
    fn try_send(&self, h: Held) -> Result<(), Held> {
        self.0.queue.with(|q| {
            if q.len() < INBOX {
                q.push_back(h);
                Ok(())
            } else {
                Err(h)
            }
        })
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.closed.store(true, Release);
    }
}

/// One shared pool of the workload and what the workload counted on it.
pub struct Shared {
    pub name: &'static str,
    pub pool: PagePool,
    pub max_overflow: usize,
    pub attempts: AtomicU64,
    pub ok_pooled: AtomicU64,
    pub ok_overflow: AtomicU64,
    pub exhausted: AtomicU64,
}

fn shared_pools() -> Vec<Arc<Shared>> {
    let page = pagepool::page_size();
    let mk = |name, pool: PagePool, max_overflow| {
        Arc::new(Shared {
            name,
            pool,
            max_overflow,
            attempts: AtomicU64::new(0),
            ok_pooled: AtomicU64::new(0),
            ok_overflow: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        })
    };
    vec![
        // Thread cache on, overflow mapped up to a small cap.
        mk(
            "cached/map",
            PagePool::builder()
                .buf_size(page)
                .capacity(16)
                .thread_cache(4)
                .overflow(OverflowPolicy::Map)
                .max_overflow(6)
                .poison_on_release(cfg!(debug_assertions))
                .build()
                .unwrap(),
            6,
        ),
        // Thread cache off, strict accounting, exhaustion is an error.
        mk(
            "uncached/fail",
            PagePool::builder()
                .buf_size(2 * page)
                .capacity(12)
                .thread_cache(0)
                .overflow(OverflowPolicy::Fail)
                .build()
                .unwrap(),
            0,
        ),
        // Thread cache on with Fail: exhaustion while other threads' caches hold idle buffers.
        // A larger alignment: slots are 4 pages apart, overflow-free.
        mk(
            "cached/fail/align4",
            PagePool::builder()
                .buf_size(page)
                .alignment(4 * page)
                .capacity(12)
                .thread_cache(2)
                .overflow(OverflowPolicy::Fail)
                .build()
                .unwrap(),
            0,
        ),
        // Thread cache off, preallocated, tiny, overflow mapped up to 3.
        mk(
            "uncached/map/prealloc",
            PagePool::builder()
                .buf_size(3 * page)
                .capacity(4)
                .thread_cache(0)
                .overflow(OverflowPolicy::Map)
                .max_overflow(3)
                .prealloc(true)
                .build()
                .unwrap(),
            3,
        ),
    ]
}

/// Which pool a held buffer came from.
const EPHEMERAL: usize = usize::MAX;

/// A buffer in flight and the stamp it must carry.
struct Held {
    buf: AlignedBuf,
    stamp: u64,
    pool: usize,
    /// Acquired by this thread (may be sent to the partner) or received (released here).
    own: bool,
}

/// Totals of one run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub threads: usize,
    pub ops: u64,
    pub acquires_ok: u64,
    pub overflow: u64,
    pub exhausted: u64,
    pub released_local: u64,
    pub released_remote: u64,
    pub ephemeral_pools: u64,
    pub trims: u64,
    pub verifies: u64,
    pub elapsed: Duration,
}

#[derive(Default)]
struct Tally {
    ops: u64,
    released_local: u64,
    released_remote: u64,
    ephemeral_pools: u64,
    trims: u64,
    verifies: u64,
}

/// The most buffers one thread holds at once (its own plus received ones).
const HOLD_MAX: usize = 8;
/// Buffers in flight to one partner at most; past it the sender releases the buffer itself.
const INBOX: usize = 4;

struct Worker {
    id: usize,
    rng: Rng,
    pools: Vec<Arc<Shared>>,
    handles: Vec<Option<PagePool>>,
    live: Arc<LivePages>,
    /// `None` once this thread has finished its quota (the partner then sees a disconnect when drained).
    to_partner: Option<Outbox>,
    inbox: Arc<Inbox>,
    held: Vec<Held>,
    seq: u64,
    t: Tally,
}

impl Worker {
    fn who(&self, h: &Held) -> String {
        let pool = match h.pool {
            EPHEMERAL => "ephemeral",
            p => self.pools[p].name,
        };
        format!(
            "pool {pool}, stamp thread {} seq {}, now on thread {}",
            (h.stamp >> 44) - 1,
            h.stamp & ((1 << 44) - 1),
            self.id
        )
    }

    fn verify(&self, h: &Held) {
        if let Some((off, expected, found)) = find_corruption(&h.buf, h.stamp) {
            panic!(
                "CORRUPTION at byte {off} of buffer {:p}+{} ({}): expected {expected:#018x}, found {found:#018x}",
                h.buf.as_ptr(),
                h.buf.len(),
                self.who(h)
            );
        }
    }

    /// Takes a fresh buffer into `held`: records its pages and stamps it.
    fn take(&mut self, mut buf: AlignedBuf, pool: usize) {
        let stamp = stamp_of(self.id, self.seq);
        self.seq += 1;
        write_stamp(&mut buf, stamp);
        let h = Held {
            buf,
            stamp,
            pool,
            own: true,
        };
        self.live.insert(&h.buf, &self.who(&h));
        self.held.push(h);
    }

    fn acquire(&mut self) {
        let p = self.rng.below(self.pools.len());
        if self.handles[p].is_none() {
            self.handles[p] = Some(self.pools[p].pool.clone());
        }
        let s = &self.pools[p];
        s.attempts.fetch_add(1, Relaxed);
        match self.handles[p].as_ref().unwrap().acquire() {
            Ok(buf) => {
                assert_eq!(buf.len(), s.pool.buf_size());
                assert_eq!(buf.as_ptr() as usize % s.pool.alignment(), 0);
                if buf.is_overflow() {
                    s.ok_overflow.fetch_add(1, Relaxed);
                } else {
                    s.ok_pooled.fetch_add(1, Relaxed);
                }
                self.take(buf, p);
            }
            Err(AcquireError::Exhausted {
                max_overflow,
                overflow_in_use,
                ..
            }) => {
                assert_eq!(max_overflow, s.max_overflow, "{}", s.name);
                assert!(overflow_in_use <= max_overflow, "{}", s.name);
                s.exhausted.fetch_add(1, Relaxed);
                // The holders may be descheduled (8 threads, 2 cores): let them run rather than burn this
                // thread's whole quota on refusals.
                thread::yield_now();
            }
            Err(e) => panic!("{}: unexpected error {e}", s.name),
        }
    }

    /// Verifies and releases `h` here, or (for half of this thread's own buffers) sends it to the partner.
    fn release(&mut self, h: Held) {
        self.verify(&h);
        if h.own && self.rng.next() & 1 == 0 {
            // The partner verifies on receipt and releases it later: a cross-thread release.
            let h = Held { own: false, ..h };
            let sent = match &self.to_partner {
                // Never block: two partners blocked on each other's full inbox would deadlock.
                Some(tx) => tx.try_send(h),
                None => Err(h),
            };
            if let Err(h) = sent {
                // The partner's inbox is full (or it panicked and is gone): release here instead.
                self.drop_here(h);
            }
            return;
        }
        self.drop_here(h);
    }

    fn drop_here(&mut self, h: Held) {
        let who = self.who(&h);
        self.live.remove(&h.buf, &who);
        if h.own {
            self.t.released_local += 1;
        } else {
            self.t.released_remote += 1;
        }
        drop(h.buf);
    }

    fn release_random(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let i = self.rng.below(self.held.len());
        let h = self.held.swap_remove(i);
        self.release(h);
    }

    /// Takes in one buffer sent by the partner, if any: verify it now, hold it for a while.
    fn receive(&mut self) -> bool {
        match self.inbox.try_recv() {
            Some(h) => {
                self.verify(&h);
                if self.held.len() >= HOLD_MAX {
                    self.drop_here(h);
                } else {
                    self.held.push(h);
                }
                true
            }
            None => false,
        }
    }

    /// A private pool: take a few buffers, give some to the partner, drop the handle while they are out.
    fn ephemeral(&mut self) {
        self.t.ephemeral_pools += 1;
        let cap = 1 + self.rng.below(16);
        let cache = self.rng.below(cap + 1);
        let pool = PagePool::builder()
            .buf_size(pagepool::page_size() * (1 + self.rng.below(2)))
            .capacity(cap)
            .thread_cache(cache)
            .max_overflow(2)
            .build()
            .unwrap();
        let n = 1 + self.rng.below(cap + 2);
        for _ in 0..n {
            match pool.acquire() {
                Ok(buf) => self.take(buf, EPHEMERAL),
                Err(AcquireError::Exhausted { .. }) => {}
                Err(e) => panic!("ephemeral pool: {e}"),
            }
        }
        drop(pool);
        while self.held.len() > HOLD_MAX {
            self.release_random();
        }
    }

    fn step(&mut self) {
        self.receive();
        if self.held.is_empty() {
            self.acquire();
            return;
        }
        if self.held.len() >= HOLD_MAX {
            self.release_random();
            return;
        }
        match self.rng.below(1000) {
            0..=459 => self.acquire(),
            460..=919 => self.release_random(),
            920..=989 => {
                let i = self.rng.below(self.held.len());
                self.verify(&self.held[i]);
                self.t.verifies += 1;
            }
            990..=994 => {
                let p = self.rng.below(self.pools.len());
                if let Some(h) = &self.handles[p] {
                    h.trim();
                    self.t.trims += 1;
                }
            }
            995..=998 => {
                // Drop this thread's handle; the next acquire clones a fresh one.
                let p = self.rng.below(self.pools.len());
                self.handles[p] = None;
            }
            _ => {
                if self.rng.below(20) == 0 {
                    self.ephemeral();
                }
            }
        }
    }

    fn run(mut self, quota: u64) -> Tally {
        while self.t.ops < quota {
            self.step();
            self.t.ops += 1;
        }
        // Quota done: release everything held, then stop sending and drain what the partner still sends.
        while !self.held.is_empty() {
            self.release_random();
        }
        self.to_partner = None;
        while let Some(h) = self.inbox.recv() {
            self.verify(&h);
            self.drop_here(h);
        }
        self.t
    }
}

/// Runs `ops` operations in total on `threads` threads (an even number: threads are paired), then checks
/// that every buffer is accounted for. Panics on any violation.
pub fn run(ops: u64, threads: usize, seed: u64) -> Report {
    assert!(threads >= 2 && threads % 2 == 0, "threads come in pairs");
    let start = Instant::now();
    let pools = shared_pools();
    let live = Arc::new(LivePages::new());
    let inboxes: Vec<Arc<Inbox>> = (0..threads).map(|_| Arc::new(Inbox::default())).collect();
    let workers: Vec<_> = (0..threads)
        .map(|id| {
            let partner = id ^ 1;
            let quota = ops / threads as u64 + u64::from((id as u64) < ops % threads as u64);
            let w = Worker {
                id,
                rng: Rng::new(seed ^ mix(id as u64)),
                pools: pools.clone(),
                handles: vec![None; pools.len()],
                live: live.clone(),
                to_partner: Some(Outbox(inboxes[partner].clone())),
                inbox: inboxes[id].clone(),
                held: Vec::with_capacity(HOLD_MAX + 32),
                seq: 0,
                t: Tally::default(),
            };
            thread::Builder::new()
                .name(format!("stress-{id}"))
                .spawn(move || w.run(quota))
                .unwrap()
        })
        .collect();
    let mut report = Report {
        threads,
        ..Report::default()
    };
    let mut panicked = Vec::new();
    for (id, w) in workers.into_iter().enumerate() {
        match w.join() {
            Ok(t) => {
                report.ops += t.ops;
                report.released_local += t.released_local;
                report.released_remote += t.released_remote;
                report.ephemeral_pools += t.ephemeral_pools;
                report.trims += t.trims;
                report.verifies += t.verifies;
            }
            Err(e) => panicked.push((id, e)),
        }
    }
    if let Some((id, e)) = panicked.into_iter().next() {
        eprintln!("stress thread {id} failed");
        std::panic::resume_unwind(e);
    }
    assert_eq!(
        live.len(),
        0,
        "pages still recorded as held after every thread finished"
    );
    for s in &pools {
        // Every worker has exited, so every thread cache has been flushed: the pool is quiet and exact.
        let st: PoolStats = s.pool.stats();
        let ok_pooled = s.ok_pooled.load(Relaxed);
        let ok_overflow = s.ok_overflow.load(Relaxed);
        let exhausted = s.exhausted.load(Relaxed);
        let name = s.name;
        assert_eq!(st.idle + st.in_use, st.pooled_buffers, "{name}: {st:?}");
        assert_eq!(st.in_use, 0, "{name}: {st:?}");
        assert_eq!(
            st.cached, 0,
            "{name}: exited threads flushed their caches: {st:?}"
        );
        assert_eq!(st.idle, st.pooled_buffers, "{name}: {st:?}");
        assert_eq!(st.overflow_in_use, 0, "{name}: {st:?}");
        // Overflow buffers released to the reserve (default `overflow_decay`) stay mapped until a trim.
        assert_eq!(
            st.overflow_maps,
            st.overflow_unmaps + st.reserve_buffers as u64,
            "{name}: {st:?}"
        );
        assert_eq!(st.os_errors, 0, "{name}: {st:?}");
        assert_eq!(
            st.poison_violations, 0,
            "{name}: write after release: {st:?}"
        );
        assert!(st.pooled_buffers <= st.capacity, "{name}: {st:?}");
        assert_eq!(st.acquires, s.attempts.load(Relaxed), "{name}: {st:?}");
        assert_eq!(st.pool_hits, ok_pooled, "{name}: {st:?}");
        assert_eq!(
            st.overflow_maps + st.overflow_reuses,
            ok_overflow,
            "{name}: {st:?}"
        );
        assert_eq!(st.exhausted, exhausted, "{name}: {st:?}");
        assert_eq!(
            st.acquires,
            st.pool_hits + st.overflow_maps + st.overflow_reuses + st.exhausted + st.os_errors,
            "{name}: {st:?}"
        );
        println!(
            "stress: pool {name}: {} acquires, {ok_pooled} pooled, {ok_overflow} overflow, {exhausted} exhausted",
            s.attempts.load(Relaxed)
        );
        report.acquires_ok += ok_pooled + ok_overflow;
        report.overflow += ok_overflow;
        report.exhausted += exhausted;
    }
    report.elapsed = start.elapsed();
    report
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ops on {} threads in {:.1} s: {} acquired ({} overflow), {} exhausted, {} released on the \
             acquiring thread, {} on its partner, {} in-place verifies, {} trims, {} short-lived pools; \
             0 corruptions, 0 double hand-outs, every buffer accounted for",
            self.ops,
            self.threads,
            self.elapsed.as_secs_f64(),
            self.acquires_ok,
            self.overflow,
            self.exhausted,
            self.released_local,
            self.released_remote,
            self.verifies,
            self.trims,
            self.ephemeral_pools
        )
    }
}
