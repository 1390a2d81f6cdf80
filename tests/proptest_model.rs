//! Model-based property test: random pool configurations and random operation sequences, run on long-lived
//! worker threads (so buffers and pool handles really move between threads and through their caches), checked
//! after every step against a simple model.
//!
//! Operations: build a pool (random valid config: buf_size 1-4 pages, capacity 1-64, thread_cache 0..=capacity
//! or the default, overflow Map/Fail, max_overflow 0-8, prealloc, overflow reserve off or on (decay zero or an
//! hour, so that no decay happens by time during a case); poison on release in debug builds), acquire on worker w, release buffer i on
//! worker w (any order, any worker: not necessarily the one that acquired it), clone a handle, drop a handle on
//! worker w, trim on worker w (alone, or followed by every worker's next operation), verify every held buffer.
//!
//! Checked against the model after every step:
//! - no two live buffers overlap; every buffer is `buf_size` long and aligned to the page size;
//! - every buffer keeps the stamp written over its whole length at acquire until it is released;
//! - the pool's stats add up exactly (the pool is quiet between steps): `idle + in_use + uncommitted ==
//!   pooled_buffers` with no buffer held out uncommitted, `in_use` and `overflow_in_use` equal the model's live
//!   counts, the counters equal the model's (`overflow_maps` fresh mappings, `overflow_reuses` buffers taken
//!   from the reserve, `reserve_buffers` what the model's reserve holds);
//! - the overflow reserve is a stack: a released overflow buffer of an open pool with a reserve goes on top,
//!   and the next overflow acquire gets that very mapping back; `trim()` and the last handle's drop empty it;
//! - `mapped_bytes == (pooled_buffers + overflow_in_use + reserve_buffers) * buf_size <= capacity * stride +
//!   max_overflow * buf_size`;
//! - acquire succeeds whenever an idle pooled buffer exists in the shared freelist or a chunk is unmapped, or
//!   an overflow permit is free under `Map`; it overflows or is refused only when the freelist is empty and
//!   every chunk is mapped;
//! - (Linux) an overflow buffer's pages are unmapped as soon as it is released (without a reserve, or into a
//!   closed pool), and a reserved buffer's as soon as `trim()` or the last handle's drop empties the reserve; once a pool has no handle and
//!   no buffer out and every worker has made one more pool operation (or exited, see `cache.rs`), none of its
//!   pooled pages is mapped (/proc/self/maps). Every buffer is tagged while held (`MADV_DONTDUMP`, see
//!   [`tag`]) so that a mapping someone else made later at a freed address is told apart from the pool's own.
//!
//! Cases: `PROPTEST_CASES` (default 256).

use pagepool::{AcquireError, AlignedBuf, OverflowPolicy, PagePool, PoolStats};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)*)));
        }
    };
}

fn page() -> usize {
    pagepool::page_size()
}

// ---------------------------------------------------------------------------------------------------------
// The operation language.

#[derive(Debug, Clone)]
struct Cfg {
    pages: usize,
    capacity: usize,
    /// `None`: the builder's default.
    thread_cache: Option<usize>,
    overflow: OverflowPolicy,
    max_overflow: usize,
    prealloc: bool,
    /// Overflow reserve on (`overflow_decay` of an hour) or off (zero).
    reserve: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Build(Cfg),
    Acquire {
        pool: usize,
        worker: usize,
    },
    Release {
        buf: usize,
        worker: usize,
    },
    Clone {
        pool: usize,
    },
    DropHandle {
        pool: usize,
        worker: usize,
    },
    Trim {
        pool: usize,
        worker: usize,
        all: bool,
    },
    CheckAll,
}

#[derive(Debug, Clone)]
struct Case {
    workers: usize,
    ops: Vec<Op>,
    /// End by letting the workers exit (thread-exit flush) rather than by one more operation on each.
    end_by_exit: bool,
}

fn cfg_strategy() -> impl Strategy<Value = Cfg> {
    (
        1..=4usize,
        1..=64usize,
        prop_oneof![1 => Just(None), 4 => any::<u16>().prop_map(Some)],
        prop_oneof![Just(OverflowPolicy::Map), Just(OverflowPolicy::Fail)],
        0..=8usize,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(pages, capacity, cache, overflow, max_overflow, prealloc, reserve)| Cfg {
                pages,
                capacity,
                thread_cache: cache.map(|c| c as usize % (capacity + 1)),
                overflow,
                max_overflow,
                prealloc,
                reserve,
            },
        )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let idx = 0..8usize;
    prop_oneof![
        1 => cfg_strategy().prop_map(Op::Build),
        12 => (idx.clone(), idx.clone()).prop_map(|(pool, worker)| Op::Acquire { pool, worker }),
        10 => (any::<usize>(), idx.clone()).prop_map(|(buf, worker)| Op::Release { buf, worker }),
        1 => idx.clone().prop_map(|pool| Op::Clone { pool }),
        1 => (idx.clone(), idx.clone()).prop_map(|(pool, worker)| Op::DropHandle { pool, worker }),
        1 => (idx.clone(), idx, any::<bool>()).prop_map(|(pool, worker, all)| Op::Trim { pool, worker, all }),
        1 => Just(Op::CheckAll),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        2..=3usize,
        cfg_strategy(),
        prop::collection::vec(op_strategy(), 0..150),
        any::<bool>(),
    )
        .prop_map(|(workers, first, mut ops, end_by_exit)| {
            ops.insert(0, Op::Build(first));
            Case {
                workers,
                ops,
                end_by_exit,
            }
        })
}

// ---------------------------------------------------------------------------------------------------------
// Worker threads.

enum Cmd {
    Acquire(PagePool, u64),
    Release(AlignedBuf, u64),
    Drop(PagePool),
    Trim(PagePool),
    /// One operation on the sentinel pool: runs this thread's cache sweep.
    Poke,
}

enum Reply {
    Acquired(Result<AlignedBuf, AcquireError>),
    Done,
    /// The command panicked or found a corrupted buffer.
    Failed(String),
}

/// A pool every worker touches to run its cache sweep (see `cache.rs`: a dropped pool's memory is unmapped once
/// every thread that cached its slots has made another cached-pool operation or exited).
fn sentinel() -> &'static PagePool {
    static SENTINEL: OnceLock<PagePool> = OnceLock::new();
    SENTINEL.get_or_init(|| {
        PagePool::builder()
            .capacity(4)
            .thread_cache(2)
            .prealloc(true)
            .build()
            .unwrap()
    })
}

struct Worker {
    tx: Option<mpsc::Sender<Cmd>>,
    rx: mpsc::Receiver<Reply>,
    join: Option<thread::JoinHandle<()>>,
}

impl Worker {
    fn spawn(id: usize) -> Worker {
        let (tx, cmd_rx) = mpsc::channel::<Cmd>();
        let (reply_tx, rx) = mpsc::channel::<Reply>();
        let join = thread::Builder::new()
            .name(format!("model-worker-{id}"))
            .spawn(move || {
                for cmd in cmd_rx {
                    let reply = catch_unwind(AssertUnwindSafe(|| execute(cmd)))
                        .unwrap_or_else(|p| Reply::Failed(panic_message(&p)));
                    if reply_tx.send(reply).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Worker {
            tx: Some(tx),
            rx,
            join: Some(join),
        }
    }

    fn call(&self, cmd: Cmd) -> Result<Reply, TestCaseError> {
        self.tx
            .as_ref()
            .unwrap()
            .send(cmd)
            .map_err(|_| TestCaseError::fail("worker gone"))?;
        match self.rx.recv() {
            Ok(Reply::Failed(msg)) => Err(TestCaseError::fail(msg)),
            Ok(r) => Ok(r),
            Err(_) => Err(TestCaseError::fail("worker died")),
        }
    }

    /// Closes the command channel and waits for the thread (and its thread-local cache flush) to finish.
    fn exit(&mut self) {
        self.tx = None;
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.exit();
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".into()
    }
}

fn execute(cmd: Cmd) -> Reply {
    match cmd {
        Cmd::Acquire(pool, stamp) => {
            let r = pool.acquire().map(|mut b| {
                write_stamp(&mut b, stamp);
                b
            });
            drop(pool);
            Reply::Acquired(r)
        }
        Cmd::Release(buf, stamp) => {
            if let Some(msg) = corruption(&buf, stamp) {
                // Keep the evidence alive: releasing a corrupted buffer would only hide where it came from.
                std::mem::forget(buf);
                return Reply::Failed(msg);
            }
            drop(buf);
            Reply::Done
        }
        Cmd::Drop(pool) => {
            drop(pool);
            Reply::Done
        }
        Cmd::Trim(pool) => {
            pool.trim();
            Reply::Done
        }
        Cmd::Poke => {
            drop(sentinel().acquire().unwrap());
            Reply::Done
        }
    }
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

fn corruption(buf: &[u8], stamp: u64) -> Option<String> {
    let m = mix(stamp);
    buf.chunks_exact(8).enumerate().find_map(|(k, w)| {
        let found = u64::from_ne_bytes(w.try_into().unwrap());
        (found != m ^ k as u64).then(|| {
            format!(
                "buffer {:p} (stamp {stamp}) corrupted at byte {}: {found:#x}",
                buf.as_ptr(),
                k * 8
            )
        })
    })
}

// ---------------------------------------------------------------------------------------------------------
// /proc/self/maps.
//
// "Address `a` is in /proc/self/maps" does not mean "the pool's mapping at `a` survived": once the pool unmaps
// it, any other mapping of the process may be placed over `a` before the check reads the file. That happened:
// a worker thread whose start-up was delayed (it had no command yet) mapped its sigaltstack (std maps one per
// thread, a guard page plus 8 KiB) into the hole a dead pool's chunk had just left. So each buffer's pages are
// tagged while the test holds it, with a VMA flag that only the test sets, and only a tagged mapping counts as
// the pool's.
//
// Why that is sound: `MADV_DONTDUMP` sets `VM_DONTDUMP` (`dd` in /proc/self/smaps `VmFlags`) on the VMA of
// those pages. Only `MADV_DODUMP` clears it, and nothing in this process calls that (the library's advice set is
// DontDump, DontFork, WipeOnFork, HugePage); splitting a VMA (mprotect, madvise, partial munmap) copies its
// flags, and a VMA only merges with neighbours whose flags are equal. So while the page the pool mapped at `a`
// stays mapped, the VMA holding `a` has `dd`: an untagged VMA at `a` proves the pool's page is gone, so no leak
// is excused. Conversely a mapping created later carries `dd` only if someone tags it (std, glibc and libtest
// never do, the model's configs enable no `dont_dump` policy, and the test tags buffers only at acquire, which
// never happens between a release or a pool's death and its check), so a reused address is not reported.

/// Marks `buf`'s pages as the model's (see above). Changes neither their contents nor their protection, only
/// whether they would go into a core dump; the split of the pool's mapping into a few more VMAs is harmless.
#[cfg(target_os = "linux")]
fn tag(buf: &AlignedBuf) -> Result<(), TestCaseError> {
    // SAFETY: the range is the buffer this test holds: page-aligned, a whole number of pages, inside a live
    // private anonymous mapping. MADV_DONTDUMP only sets a VMA flag; it never touches the pages.
    let rc = unsafe {
        libc::madvise(
            buf.as_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MADV_DONTDUMP,
        )
    };
    ensure!(
        rc == 0,
        "madvise(MADV_DONTDUMP) on {:p}+{}: {}",
        buf.as_ptr(),
        buf.len(),
        std::io::Error::last_os_error()
    );
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn tag(_buf: &AlignedBuf) -> Result<(), TestCaseError> {
    Ok(())
}

/// Reads a /proc file into `scratch`, preallocated so that reading does not itself map memory (a large heap
/// allocation could land on a freed range).
#[cfg(target_os = "linux")]
fn read_proc(path: &str, scratch: &mut String) {
    use std::io::Read;
    scratch.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(scratch))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
}

/// The address range of a /proc/self/maps or smaps header line; `None` for the other smaps lines.
#[cfg(target_os = "linux")]
fn vma_range(line: &str) -> Option<std::ops::Range<usize>> {
    let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
    Some(usize::from_str_radix(lo, 16).ok()?..usize::from_str_radix(hi, 16).ok()?)
}

/// Addresses among `addrs` that a tagged mapping (`dd`, see [`tag`]) still contains, each with that
/// mapping's smaps header and flags. An address inside an untagged mapping is not reported: the tagged page
/// there is gone, and someone else's mapping took its place.
#[cfg(target_os = "linux")]
fn still_mapped(addrs: &[usize], scratch: &mut String) -> Vec<(usize, String)> {
    read_proc("/proc/self/maps", scratch);
    let mapped = scratch
        .lines()
        .filter_map(vma_range)
        .any(|r| addrs.iter().any(|a| r.contains(a)));
    if !mapped {
        return Vec::new();
    }
    // Some address is covered: whose mapping is it? (smaps is read afresh; only its view is used below.)
    read_proc("/proc/self/smaps", scratch);
    let mut hits = Vec::new();
    let mut vma: Option<(std::ops::Range<usize>, &str)> = None;
    for line in scratch.lines() {
        if let Some(r) = vma_range(line) {
            vma = Some((r, line));
        } else if let (Some(flags), Some((r, header))) = (line.strip_prefix("VmFlags:"), &vma) {
            if flags.split_whitespace().any(|f| f == "dd") {
                hits.extend(
                    addrs
                        .iter()
                        .filter(|a| r.contains(a))
                        .map(|&a| (a, format!("{} [{}]", header.trim_end(), flags.trim()))),
                );
            }
        }
    }
    hits
}

#[cfg(not(target_os = "linux"))]
fn still_mapped(_addrs: &[usize], _scratch: &mut String) -> Vec<(usize, String)> {
    Vec::new()
}

// ---------------------------------------------------------------------------------------------------------
// The model.

struct PoolModel {
    cfg: Cfg,
    buf_size: usize,
    /// `max_overflow` as the pool applies it (`Fail` allows none).
    max_overflow: usize,
    thread_cache: usize,
    /// The most slots one thread's cache may grow to.
    cache_max: usize,
    handles: Vec<PagePool>,
    live_pooled: usize,
    live_overflow: usize,
    attempts: u64,
    ok_pooled: u64,
    ok_overflow: u64,
    ok_reuse: u64,
    exhausted: u64,
    /// The overflow reserve, oldest first: (start, length) of each reserved mapping.
    reserved: Vec<(usize, usize)>,
    /// Start of every pooled buffer ever handed out (chunk memory: mapped until the pool is freed).
    pooled_addrs: Vec<usize>,
    /// The pool is gone and its memory was checked.
    checked: bool,
}

struct Live {
    buf: AlignedBuf,
    stamp: u64,
    pool: usize,
}

struct Harness {
    workers: Vec<Worker>,
    pools: Vec<PoolModel>,
    live: Vec<Live>,
    next_stamp: u64,
    scratch: String,
    /// Check a pool's memory as soon as it is dead (no handle, no buffer): poke every worker first.
    check_on_death: bool,
}

impl Harness {
    fn new(workers: usize) -> Result<Self, TestCaseError> {
        let h = Harness {
            workers: (0..workers).map(Worker::spawn).collect(),
            pools: Vec::new(),
            live: Vec::new(),
            next_stamp: 1,
            scratch: String::with_capacity(8 << 20),
            check_on_death: true,
        };
        // One operation on every worker before the case starts: each thread is then running, and what it maps
        // or allocates once (std's sigaltstack, its malloc arena, its channel blocks, its sentinel cache entry)
        // exists before the case maps any pool memory. Without this, a worker first used after a pool's death
        // started meanwhile and mapped its sigaltstack where the pool's chunk had been (see `tag`).
        h.poke_all()?;
        Ok(h)
    }

    fn worker(&self, w: usize) -> &Worker {
        &self.workers[w % self.workers.len()]
    }

    /// Index of a pool that still has a handle, chosen by `i`.
    fn open_pool(&self, i: usize) -> Option<usize> {
        let open: Vec<usize> = (0..self.pools.len())
            .filter(|&p| !self.pools[p].handles.is_empty())
            .collect();
        (!open.is_empty()).then(|| open[i % open.len()])
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Build(cfg) => self.build(cfg)?,
            Op::Acquire { pool, worker } => {
                if let Some(p) = self.open_pool(*pool) {
                    self.acquire(p, *worker)?;
                }
            }
            Op::Release { buf, worker } => {
                if !self.live.is_empty() {
                    let i = buf % self.live.len();
                    self.release(i, *worker)?;
                }
            }
            Op::Clone { pool } => {
                if let Some(p) = self.open_pool(*pool) {
                    let h = self.pools[p].handles[0].clone();
                    self.pools[p].handles.push(h);
                    self.check_stats(p)?;
                }
            }
            Op::DropHandle { pool, worker } => {
                if let Some(p) = self.open_pool(*pool) {
                    let h = self.pools[p].handles.pop().unwrap();
                    self.worker(*worker).call(Cmd::Drop(h))?;
                    self.after_change(p)?;
                }
            }
            Op::Trim { pool, worker, all } => {
                if let Some(p) = self.open_pool(*pool) {
                    let h = self.pools[p].handles[0].clone();
                    self.worker(*worker).call(Cmd::Trim(h))?;
                    self.reserve_emptied(p)?;
                    if *all {
                        // Every other worker honours the trim at its next pool operation.
                        self.poke_all()?;
                        let s = self.pools[p].handles[0].stats();
                        ensure!(s.cached == 0, "trim then one op per worker left {s:?}");
                    }
                    self.check_stats(p)?;
                }
            }
            Op::CheckAll => {
                for l in &self.live {
                    if let Some(msg) = corruption(&l.buf, l.stamp) {
                        return Err(TestCaseError::fail(msg));
                    }
                }
            }
        }
        Ok(())
    }

    fn build(&mut self, cfg: &Cfg) -> Result<(), TestCaseError> {
        if self.pools.iter().filter(|p| !p.checked).count() >= 3 {
            return Ok(());
        }
        let mut b = PagePool::builder()
            .buf_size(cfg.pages * page())
            .capacity(cfg.capacity)
            .overflow(cfg.overflow)
            .max_overflow(cfg.max_overflow)
            .prealloc(cfg.prealloc)
            .overflow_decay(if cfg.reserve {
                std::time::Duration::from_secs(3600)
            } else {
                std::time::Duration::ZERO
            })
            // Debug test builds poison released buffers: any write after release by the pool's own logic (a slot
            // handed to two holders, a stamp written after the release) would show in `poison_violations`.
            .poison_on_release(cfg!(debug_assertions));
        if let Some(c) = cfg.thread_cache {
            b = b.thread_cache(c);
        }
        let pool = b
            .build()
            .map_err(|e| TestCaseError::fail(format!("valid {cfg:?} refused: {e}")))?;
        let thread_cache = pool.thread_cache();
        match cfg.thread_cache {
            Some(c) => ensure!(thread_cache == c, "{cfg:?}: thread_cache {thread_cache}"),
            // Adaptive by default: starts at min(16, capacity / 4), at least 1.
            None => ensure!(
                thread_cache == (cfg.capacity / 4).clamp(1, 16),
                "{cfg:?}: default thread_cache {thread_cache}"
            ),
        }
        let cache_max = pool.max_thread_cache();
        match cfg.thread_cache {
            Some(c) => ensure!(cache_max == c, "{cfg:?}: fixed cache grows to {cache_max}"),
            None if thread_cache == 0 => ensure!(cache_max == 0, "{cfg:?}: {cache_max}"),
            None => ensure!(
                cache_max == cfg.capacity.min(4096),
                "{cfg:?}: default max_thread_cache {cache_max}"
            ),
        }
        ensure!(
            pool.alignment() == page() && pool.capacity() == cfg.capacity,
            "{pool:?}"
        );
        self.pools.push(PoolModel {
            cfg: cfg.clone(),
            buf_size: cfg.pages * page(),
            max_overflow: match cfg.overflow {
                OverflowPolicy::Fail => 0,
                _ => cfg.max_overflow,
            },
            thread_cache,
            cache_max,
            handles: vec![pool],
            live_pooled: 0,
            live_overflow: 0,
            attempts: 0,
            ok_pooled: 0,
            ok_overflow: 0,
            ok_reuse: 0,
            exhausted: 0,
            reserved: Vec::new(),
            pooled_addrs: Vec::new(),
            checked: false,
        });
        self.check_stats(self.pools.len() - 1)
    }

    fn acquire(&mut self, p: usize, w: usize) -> Result<(), TestCaseError> {
        let before = self.pools[p].handles[0].stats();
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let h = self.pools[p].handles[0].clone();
        let r = match self.worker(w).call(Cmd::Acquire(h, stamp))? {
            Reply::Acquired(r) => r,
            _ => unreachable!(),
        };
        let m = &mut self.pools[p];
        m.attempts += 1;
        let cap = m.cfg.capacity;
        let freelist_empty = before.idle == before.cached;
        let all_mapped = before.pooled_buffers == cap;
        // A reserved mapping holds its permit, and is itself what an overflow acquire gets.
        let permit_free =
            m.live_overflow + m.reserved.len() < m.max_overflow || !m.reserved.is_empty();
        match r {
            Ok(buf) => {
                let start = buf.as_ptr() as usize;
                ensure!(
                    buf.len() == m.buf_size,
                    "length {} for {:?}",
                    buf.len(),
                    m.cfg
                );
                ensure!(start % page() == 0, "unaligned buffer {start:#x}");
                if let Some(msg) = corruption(&buf, stamp) {
                    return Err(TestCaseError::fail(format!("fresh buffer: {msg}")));
                }
                tag(&buf)?;
                for l in &self.live {
                    let (s, e) = (
                        l.buf.as_ptr() as usize,
                        l.buf.as_ptr() as usize + l.buf.len(),
                    );
                    ensure!(
                        start + buf.len() <= s || e <= start,
                        "buffer {start:#x}+{} overlaps live buffer {s:#x}..{e:#x}",
                        buf.len()
                    );
                }
                if buf.is_overflow() {
                    ensure!(
                        m.cfg.overflow == OverflowPolicy::Map && permit_free,
                        "overflow past the cap: {:?}, {} out",
                        m.cfg,
                        m.live_overflow
                    );
                    ensure!(
                        freelist_empty && all_mapped,
                        "overflowed while pooled buffers were available: {before:?}"
                    );
                    if m.thread_cache == 0 {
                        ensure!(
                            m.live_pooled == cap,
                            "overflow with {} pooled out",
                            m.live_pooled
                        );
                    }
                    m.live_overflow += 1;
                    match m.reserved.pop() {
                        Some((addr, len)) => {
                            ensure!(
                                (addr, len) == (start, buf.len()),
                                "reused {start:#x}+{} instead of the newest reserved {addr:#x}+{len}",
                                buf.len()
                            );
                            m.ok_reuse += 1;
                        }
                        None => m.ok_overflow += 1,
                    }
                } else {
                    m.live_pooled += 1;
                    m.ok_pooled += 1;
                    m.pooled_addrs.push(start);
                }
                self.live.push(Live {
                    buf,
                    stamp,
                    pool: p,
                });
            }
            Err(AcquireError::Exhausted {
                capacity,
                overflow_in_use,
                max_overflow,
                policy,
            }) => {
                ensure!(
                    (capacity, overflow_in_use, max_overflow, policy)
                        == (cap, m.live_overflow, m.max_overflow, m.cfg.overflow),
                    "Exhausted fields {capacity} {overflow_in_use} {max_overflow} {policy:?} for {:?}",
                    m.cfg
                );
                ensure!(
                    !permit_free,
                    "refused with a free overflow permit: {:?}",
                    m.cfg
                );
                ensure!(
                    freelist_empty && all_mapped,
                    "refused while pooled buffers were available: {before:?}"
                );
                if m.thread_cache == 0 {
                    ensure!(
                        m.live_pooled == cap,
                        "refused with {} pooled out",
                        m.live_pooled
                    );
                }
                m.exhausted += 1;
            }
            Err(e) => return Err(TestCaseError::fail(format!("acquire: {e}"))),
        }
        self.check_stats(p)
    }

    fn release(&mut self, i: usize, w: usize) -> Result<(), TestCaseError> {
        let l = self.live.swap_remove(i);
        let p = l.pool;
        let overflow = l.buf.is_overflow();
        let start = l.buf.as_ptr() as usize;
        let len = l.buf.len();
        self.worker(w).call(Cmd::Release(l.buf, l.stamp))?;
        let m = &mut self.pools[p];
        if overflow && m.cfg.reserve && !m.handles.is_empty() {
            // Kept mapped in the reserve, whichever thread released it.
            m.live_overflow -= 1;
            m.reserved.push((start, len));
        } else if overflow {
            m.live_overflow -= 1;
            // Unmapped right away, on whichever thread released it.
            let pages: Vec<usize> = (start..start + len).step_by(page()).collect();
            let left = still_mapped(&pages, &mut self.scratch);
            ensure!(
                left.is_empty(),
                "released overflow buffer still mapped: {} of its pages, e.g. {:#x} in {}",
                left.len(),
                left[0].0,
                left[0].1
            );
        } else {
            m.live_pooled -= 1;
        }
        self.after_change(p)
    }

    fn poke_all(&self) -> Result<(), TestCaseError> {
        for w in &self.workers {
            w.call(Cmd::Poke)?;
        }
        Ok(())
    }

    /// The reserve of pool `p` was just emptied (`trim()`, or the last handle dropped): its pages are unmapped.
    fn reserve_emptied(&mut self, p: usize) -> Result<(), TestCaseError> {
        let reserved = std::mem::take(&mut self.pools[p].reserved);
        let pages: Vec<usize> = reserved
            .iter()
            .flat_map(|&(start, len)| (start..start + len).step_by(page()))
            .collect();
        let left = still_mapped(&pages, &mut self.scratch);
        ensure!(
            left.is_empty(),
            "emptied reserve still mapped: {} pages, e.g. {:#x} in {}",
            left.len(),
            left[0].0,
            left[0].1
        );
        Ok(())
    }

    /// Stats if the pool is open; the memory check if it just died.
    fn after_change(&mut self, p: usize) -> Result<(), TestCaseError> {
        let m = &self.pools[p];
        if !m.handles.is_empty() {
            return self.check_stats(p);
        }
        // The last handle's drop empties the reserve at once.
        self.reserve_emptied(p)?;
        let m = &self.pools[p];
        if m.live_pooled + m.live_overflow == 0 && self.check_on_death {
            self.poke_all()?;
            self.check_unmapped(p)?;
        }
        Ok(())
    }

    fn check_unmapped(&mut self, p: usize) -> Result<(), TestCaseError> {
        let m = &mut self.pools[p];
        m.checked = true;
        let left = still_mapped(&m.pooled_addrs, &mut self.scratch);
        ensure!(
            left.is_empty(),
            "pool {:?} is gone (no handle, no buffer, every worker swept) but {} of its buffers are still \
             mapped, e.g. {:#x} in {}",
            m.cfg,
            left.len(),
            left[0].0,
            left[0].1
        );
        Ok(())
    }

    fn check_stats(&self, p: usize) -> Result<(), TestCaseError> {
        let m = &self.pools[p];
        let s: PoolStats = m.handles[0].stats();
        let cap = m.cfg.capacity;
        ensure!(
            s.capacity == cap && s.buf_size == m.buf_size,
            "{s:?} for {:?}",
            m.cfg
        );
        ensure!(
            s.idle + s.in_use + s.uncommitted == s.pooled_buffers,
            "{s:?}"
        );
        // Trimming never leaves memory unusable on unix, and recommits always succeed on Windows here: no
        // buffer is ever held out (src/uncommitted.rs; src/tests/recommit.rs injects the failure).
        ensure!(s.uncommitted == 0, "{s:?}");
        ensure!(s.poison_violations == 0, "write after release: {s:?}");
        ensure!(
            s.in_use == m.live_pooled,
            "in_use {} != model {}: {s:?}",
            s.in_use,
            m.live_pooled
        );
        ensure!(
            s.overflow_in_use == m.live_overflow,
            "{s:?} model {}",
            m.live_overflow
        );
        ensure!(s.pooled_buffers <= cap, "{s:?}");
        if m.cfg.prealloc {
            ensure!(s.pooled_buffers == cap, "prealloc: {s:?}");
        }
        ensure!(s.cached <= s.idle, "{s:?}");
        // Each cache holds at most its ceiling, and all of them together grow by at most the capacity beyond
        // their starting sizes.
        let workers = self.workers.len();
        ensure!(
            s.cached <= (workers * m.cache_max).min(workers * m.thread_cache + cap),
            "cached {} > {} workers x {} (starting at {})",
            s.cached,
            workers,
            m.cache_max,
            m.thread_cache
        );
        ensure!(
            (
                s.acquires,
                s.pool_hits,
                s.overflow_maps,
                s.overflow_reuses,
                s.exhausted,
                s.os_errors
            ) == (
                m.attempts,
                m.ok_pooled,
                m.ok_overflow,
                m.ok_reuse,
                m.exhausted,
                0
            ),
            "counters {s:?} vs model attempts {} pooled {} overflow {} reused {} exhausted {}",
            m.attempts,
            m.ok_pooled,
            m.ok_overflow,
            m.ok_reuse,
            m.exhausted
        );
        ensure!(
            (s.reserve_buffers, s.reserve_bytes, s.decay_unmaps)
                == (m.reserved.len(), m.reserved.len() * m.buf_size, 0),
            "reserve {s:?} vs model {}",
            m.reserved.len()
        );
        ensure!(
            s.overflow_maps - s.overflow_unmaps == (m.live_overflow + m.reserved.len()) as u64,
            "{s:?}"
        );
        ensure!(
            s.mapped_bytes
                == (s.pooled_buffers + s.overflow_in_use + s.reserve_buffers) * m.buf_size,
            "mapped_bytes {s:?}"
        );
        let bound = cap * m.buf_size + m.max_overflow * m.buf_size;
        ensure!(
            s.mapped_bytes <= bound,
            "mapped_bytes {} > {bound}: {s:?}",
            s.mapped_bytes
        );
        ensure!((s.chunks > 0) == (s.pooled_buffers > 0), "{s:?}");
        Ok(())
    }

    /// Releases everything (round-robin over the workers), drops every handle, and checks that all memory
    /// went back: by one more operation on every worker, or by letting every worker exit.
    fn finish(mut self, end_by_exit: bool) -> Result<(), TestCaseError> {
        self.check_on_death = !end_by_exit;
        let mut w = 0;
        while !self.live.is_empty() {
            self.release(self.live.len() - 1, w)?;
            w += 1;
        }
        for p in 0..self.pools.len() {
            while let Some(h) = self.pools[p].handles.pop() {
                self.worker(w).call(Cmd::Drop(h))?;
                w += 1;
                self.after_change(p)?;
            }
        }
        if end_by_exit {
            for wk in &mut self.workers {
                wk.exit();
            }
            for p in 0..self.pools.len() {
                if !self.pools[p].checked {
                    self.check_unmapped(p)?;
                }
            }
        }
        ensure!(
            self.pools.iter().all(|p| p.checked),
            "a pool was not checked"
        );
        Ok(())
    }
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let mut h = Harness::new(case.workers)?;
    for op in &case.ops {
        h.step(op)?;
    }
    h.finish(case.end_by_exit)
}

/// One test at a time in this binary: the /proc/self/maps checks must not see another test's mappings land on
/// a range that was just unmapped.
static SERIAL: Mutex<()> = Mutex::new(());

proptest! {
    #![proptest_config(ProptestConfig {
        // Shrinking re-runs whole multi-threaded cases; keep it bounded.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_matches_model(case in case_strategy()) {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        sentinel();
        run_case(&case)?;
    }
}

/// A fixed sequence that goes through every kind of step, so the harness itself is exercised on every run.
#[test]
fn model_smoke() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    sentinel();
    let cfg = Cfg {
        pages: 2,
        capacity: 3,
        thread_cache: Some(2),
        overflow: OverflowPolicy::Map,
        max_overflow: 1,
        prealloc: false,
        reserve: true,
    };
    let mut ops = vec![Op::Build(cfg.clone())];
    ops.extend((0..6).map(|i| Op::Acquire { pool: 0, worker: i }));
    ops.push(Op::CheckAll);
    ops.push(Op::Clone { pool: 0 });
    ops.push(Op::Release { buf: 0, worker: 1 });
    ops.push(Op::Trim {
        pool: 0,
        worker: 0,
        all: true,
    });
    ops.push(Op::DropHandle { pool: 0, worker: 1 });
    ops.push(Op::DropHandle { pool: 0, worker: 0 });
    ops.extend((0..4).map(|i| Op::Release { buf: 0, worker: i }));
    ops.push(Op::Build(Cfg {
        overflow: OverflowPolicy::Fail,
        prealloc: true,
        ..cfg
    }));
    ops.extend((0..5).map(|i| Op::Acquire { pool: 0, worker: i }));
    for end_by_exit in [false, true] {
        let case = Case {
            workers: 2,
            ops: ops.clone(),
            end_by_exit,
        };
        run_case(&case).unwrap();
    }
}
