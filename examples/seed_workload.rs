//! The seed workload: the production failure that motivated `pagepool`, reproduced and compared.
//!
//! Run: `cargo run --release --example seed_workload` (all strategies, 1 thread, about a minute), or e.g.
//! `cargo run --release --example seed_workload -- --threads 2 --csv rss.csv --svg rss.svg`; `--help` lists
//! every flag, and `--smoke` is the short pass/fail check run in CI.
//!
//! # The failure
//! glibc's `posix_memalign(&p, 4096, 8192)` carves `8192 + 4096 + 32` bytes out of the heap and gives the
//! unaligned slack back. Small long-lived objects allocated in between settle into that slack, so when the
//! aligned buffers are freed their holes are too small for the next aligned request (which again needs
//! 12 KiB contiguous), and the heap, and RSS, grow to several times the live bytes.
//!
//! # The workload
//! Every worker thread runs "queries" until time (or `--queries`) is up. A query acquires a batch of 1024
//! buffers of 8 KiB aligned to 4 KiB and writes every byte of each; after each buffer it allocates one small
//! long-lived heap object (32..=256 bytes, written) that replaces a random slot of the thread's ring of 100,000
//! such objects, dropping the previous occupant. At the end of the query all 1024 buffers are released. So
//! small objects are interleaved with the aligned allocations, outlive them, and die in random order. The PRNG
//! is seeded from `--seed` and the thread index, identically for every strategy.
//!
//! Strategies (each runs in a fresh child process, so no strategy inherits another's heap):
//! - `memalign`: `libc::posix_memalign(&mut p, 4096, 8192)` and `libc::free`, what production did;
//! - `std-aligned`: `std::alloc::alloc` with `Layout::from_size_align(8192, 4096)` (Rust's `System` allocator,
//!   which calls `posix_memalign` for this layout) and `dealloc`;
//! - `mmap-each`: one `memmap2::MmapMut::map_anon(8192)` per buffer, unmapped on drop;
//! - `pool`: a [`PagePool`] with capacity `threads * 1024`, exactly the demand;
//! - `pool-overflow`: a [`PagePool`] with capacity `threads * 1024 / 4` and [`OverflowPolicy::Map`], so 3/4 of
//!   the buffers take the overflow map/unmap path;
//! - `floor`: no allocator at all; each thread refills the same 1024 buffers mapped once up front. The physical
//!   floor of the workload, for time and for memory.
//!
//! # The ratio
//! `RSS/live = (peak RSS - baseline RSS) / peak live demand`, where
//! - *baseline RSS* is the child's RSS just before the worker threads start: after the strategy's allocator is
//!   set up (the pool is built, but lazily, so none of its buffers are mapped or touched yet; `floor`'s buffers
//!   are mapped but untouched), before anything is allocated or written. Every page the workload makes resident,
//!   pool chunks included, therefore counts as growth;
//! - *peak RSS* is the kernel's high-water mark (`VmHWM`), so short peaks between samples are not missed;
//! - *peak live demand* is `threads x 1024 x 8 KiB` (every thread holding its whole batch) + the most bytes of
//!   small objects seen in the rings (exact sums, sampled) + the rings' slot arrays (`threads x 100,000 x 16`).
//!
//! A pool sized to the demand thus reads about 1.0x; what it reads above 1.0 is glibc's own per-object overhead
//! on the small objects, which `floor` shows on its own. Per-second samples report `(RSS - baseline) / peak
//! live demand so far`, and their `live` is the instantaneous live bytes (buffers out now + ring bytes + slot
//! arrays).
//!
//! # Output
//! Progress once per second, then a Markdown table: queries/s of wall time and of the workers' CPU time (the
//! latter is steadier when other processes share the cores), both also as a fraction of `floor` when it ran;
//! baseline/peak/final RSS, live demand, RSS/live, the mappings used (for pool strategies the pool's
//! `stats().chunks`; otherwise the growth in `/proc/self/maps` lines from start to end, with the peak seen at a
//! sample in parentheses) and the pool's overflow maps. Then the project's target figures, met or missed.
//! `--csv` writes every sample (`strategy,threads,t_seconds,rss_bytes,live_bytes,ratio,queries`, with `live`
//! and `ratio` as for the samples above), `--svg` plots RSS over time.
//!
//! # Smoke
//! `--smoke` runs `memalign`, `pool` and `pool-overflow` for a fixed budget of 200 queries per thread (not a
//! time: the memory figures then do not depend on how loaded the machine is) and exits with 1 unless both pool
//! strategies read at most 1.25x, `memalign` reads above `pool`, and `pool-overflow` really overflowed. It
//! never gates on speed.

use pagepool::{AlignedBuf, OverflowPolicy, PagePool};
use std::alloc::Layout;
use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{self, BufRead, BufReader, Write};
use std::ops::{Deref, DerefMut};
use std::process::{Command, ExitCode, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use std::{fs, mem, thread};

/// Bytes per buffer.
const BUF_SIZE: usize = 8192;
/// Alignment of every buffer.
const BUF_ALIGN: usize = 4096;
/// Buffers per query, per thread.
const BATCH: usize = 1024;
/// Slots in each thread's ring of small long-lived objects.
const RING_SLOTS: usize = 100_000;
/// Smallest small object, in bytes.
const SMALL_MIN: usize = 32;
/// Largest small object, in bytes (inclusive).
const SMALL_MAX: usize = 256;
/// Bytes of one ring slot (the `Box<[u8]>` fat pointer).
const SLOT_BYTES: usize = mem::size_of::<Box<[u8]>>();

/// Default run time per strategy: 6 strategies then take about a minute.
const DEFAULT_SECONDS: f64 = 10.0;
const DEFAULT_SEED: u64 = 0x5EED;
/// `--smoke`: queries per thread per strategy. A query budget, not a time limit, keeps the memory figures the
/// same on a fast or a loaded machine. 200 queries fill the rings twice over; memalign's heap has fragmented
/// by then (it plateaus within the first ~100 queries), and pool-overflow's 150,000 overflow maps take ~3 s.
const SMOKE_QUERIES: u64 = 200;
/// `--smoke`: a safety cap on each strategy's time, far above what the query budget needs.
const SMOKE_SECONDS: f64 = 120.0;
/// `--smoke` fails if a pool strategy's RSS/live exceeds this.
const SMOKE_POOL_LIMIT: f64 = 1.25;

const MIB: f64 = 1024.0 * 1024.0;

const USAGE: &str = "\
seed_workload: reproduce glibc posix_memalign heap fragmentation and compare allocation strategies

USAGE: cargo run --release --example seed_workload -- [OPTIONS]

OPTIONS:
  --threads N        worker threads (default 1)
  --seconds S        run time per strategy in seconds (default 10)
  --queries N        also stop each thread after N queries
  --strategy NAMES   strategies to run, repeatable or comma-separated (default all):
                     memalign, std-aligned, mmap-each, pool, pool-overflow, floor
  --csv PATH         write every per-second sample as CSV
  --svg PATH         plot RSS over time as SVG
  --seed N           PRNG seed, the same for every strategy (default 24301)
  --smoke            short pass/fail run of memalign, pool and pool-overflow (exit code 1 on FAIL)
  --help             this text
";

// ---------------------------------------------------------------------------------------------------------------
// Strategies and the buffers they hand out

/// One way of getting 8 KiB buffers aligned to 4 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Memalign,
    StdAligned,
    MmapEach,
    Pool,
    PoolOverflow,
    Floor,
}

impl Strategy {
    const ALL: [Strategy; 6] = [
        Strategy::Memalign,
        Strategy::StdAligned,
        Strategy::MmapEach,
        Strategy::Pool,
        Strategy::PoolOverflow,
        Strategy::Floor,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::Memalign => "memalign",
            Strategy::StdAligned => "std-aligned",
            Strategy::MmapEach => "mmap-each",
            Strategy::Pool => "pool",
            Strategy::PoolOverflow => "pool-overflow",
            Strategy::Floor => "floor",
        }
    }

    fn parse(name: &str) -> Result<Self, String> {
        Strategy::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unknown strategy `{name}`"))
    }
}

/// Where one worker thread's buffers come from.
trait BufSource: Send {
    /// A buffer; dropping it (or [`give_back`](Self::give_back)) releases it.
    type Buf: Deref<Target = [u8]>;

    /// Takes a buffer of `BUF_SIZE` bytes aligned to `BUF_ALIGN`, with every byte written to `byte`.
    fn take_filled(&mut self, byte: u8) -> Self::Buf;

    /// Releases a buffer taken from this source.
    fn give_back(&mut self, buf: Self::Buf) {
        drop(buf);
    }
}

/// Which allocator a [`HeapBuf`] goes back to.
#[derive(Debug, Clone, Copy)]
enum Heap {
    /// `libc::posix_memalign` / `libc::free`.
    Libc,
    /// `std::alloc::alloc` / `std::alloc::dealloc` with [`HeapBuf::LAYOUT`].
    Std,
}

/// An aligned buffer on the malloc heap, freed on drop. Its bytes are always initialised: it is only created
/// by [`HeapBuf::new_filled`].
struct HeapBuf {
    ptr: NonNull<u8>,
    heap: Heap,
}

impl HeapBuf {
    const LAYOUT: Layout = match Layout::from_size_align(BUF_SIZE, BUF_ALIGN) {
        Ok(layout) => layout,
        Err(_) => panic!("BUF_SIZE/BUF_ALIGN do not form a Layout"),
    };

    fn new_filled(heap: Heap, byte: u8) -> Self {
        let ptr = match heap {
            Heap::Libc => {
                let mut p: *mut libc::c_void = std::ptr::null_mut();
                // SAFETY: `p` is a valid out-pointer; BUF_ALIGN is a power of two and a multiple of
                // `size_of::<*mut c_void>()`, as posix_memalign requires.
                let rc = unsafe { libc::posix_memalign(&mut p, BUF_ALIGN, BUF_SIZE) };
                assert_eq!(
                    rc,
                    0,
                    "posix_memalign(4096, 8192) failed: {}",
                    io::Error::from_raw_os_error(rc)
                );
                p.cast::<u8>()
            }
            // SAFETY: LAYOUT has a non-zero size.
            Heap::Std => unsafe { std::alloc::alloc(Self::LAYOUT) },
        };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(Self::LAYOUT)
        };
        // SAFETY: `ptr` points to BUF_SIZE freshly allocated bytes that nothing else references.
        unsafe { ptr.as_ptr().write_bytes(byte, BUF_SIZE) };
        HeapBuf { ptr, heap }
    }
}

impl Deref for HeapBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` owns BUF_SIZE bytes, all initialised by `new_filled`, until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), BUF_SIZE) }
    }
}

impl DerefMut for HeapBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), BUF_SIZE) }
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        match self.heap {
            // SAFETY: `ptr` came from posix_memalign and is freed exactly once, here.
            Heap::Libc => unsafe { libc::free(self.ptr.as_ptr().cast()) },
            // SAFETY: `ptr` came from `std::alloc::alloc(LAYOUT)` and is freed exactly once, here.
            Heap::Std => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::LAYOUT) },
        }
    }
}

impl BufSource for Heap {
    type Buf = HeapBuf;

    fn take_filled(&mut self, byte: u8) -> HeapBuf {
        HeapBuf::new_filled(*self, byte)
    }
}

/// `mmap-each`: one anonymous mapping per buffer.
struct MmapEach;

impl BufSource for MmapEach {
    type Buf = memmap2::MmapMut;

    fn take_filled(&mut self, byte: u8) -> memmap2::MmapMut {
        let mut map =
            memmap2::MmapMut::map_anon(BUF_SIZE).expect("mmap of one 8 KiB buffer failed");
        map.fill(byte);
        map
    }
}

impl BufSource for PagePool {
    type Buf = AlignedBuf;

    fn take_filled(&mut self, byte: u8) -> AlignedBuf {
        let mut buf = self
            .acquire()
            .unwrap_or_else(|e| panic!("PagePool::acquire failed: {e}"));
        buf.fill(byte);
        buf
    }
}

/// `floor`: one thread's 1024 buffers, mapped once and reused forever.
struct Floor {
    idle: Vec<&'static mut [u8]>,
}

impl Floor {
    /// Maps (but does not touch) one batch of buffers. The mapping is leaked on purpose: it lives as long as
    /// the child process, which exits right after the run.
    fn new() -> io::Result<Self> {
        let map: &'static mut memmap2::MmapMut =
            Box::leak(Box::new(memmap2::MmapMut::map_anon(BATCH * BUF_SIZE)?));
        let idle = map.chunks_exact_mut(BUF_SIZE).collect();
        Ok(Floor { idle })
    }
}

impl BufSource for Floor {
    type Buf = &'static mut [u8];

    fn take_filled(&mut self, byte: u8) -> &'static mut [u8] {
        let buf = self.idle.pop().expect("floor: more than one batch out");
        buf.fill(byte);
        buf
    }

    fn give_back(&mut self, buf: &'static mut [u8]) {
        self.idle.push(buf);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The worker

/// xorshift64* seeded through splitmix64: small, fast and good enough to pick sizes and slots.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        // splitmix64 of the seed and stream gives well-mixed, non-zero states even for seeds 0, 1, 2...
        let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// What one worker publishes for the sampler; on its own cache lines so workers do not slow each other.
#[repr(align(128))]
#[derive(Default)]
struct Gauge {
    queries: AtomicU64,
    buffers_out: AtomicUsize,
    ring_bytes: AtomicUsize,
    slot_bytes: AtomicUsize,
}

/// A finished worker's state, kept alive until the final sample has been taken.
struct Outcome<S> {
    _ring: Vec<Box<[u8]>>,
    _source: S,
    queries: u64,
    checksum: u64,
    finished: Instant,
    /// CPU time this thread used, user and system, in seconds.
    cpu: f64,
}

/// CPU time (user + system) the calling thread has used, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs queries until `stop` is set or the query budget is spent.
fn worker<S: BufSource>(
    index: usize,
    mut source: S,
    params: &RunParams,
    gauge: &Gauge,
    stop: &AtomicBool,
) -> Outcome<S> {
    let mut rng = Rng::new(params.seed, index as u64);
    let mut ring: Vec<Box<[u8]>> = vec![Box::default(); RING_SLOTS];
    gauge.slot_bytes.store(ring.len() * SLOT_BYTES, Relaxed);
    let mut ring_bytes = 0usize;
    let mut batch: Vec<S::Buf> = Vec::with_capacity(BATCH);
    let mut queries = 0u64;
    let mut checksum = 0u64;
    while !stop.load(Relaxed) && params.queries.map_or(true, |budget| queries < budget) {
        // A per-query byte, never 0 so that `vec![byte; n]` below cannot turn into `calloc`.
        let byte = (queries % 255) as u8 + 1;
        for _ in 0..BATCH {
            let buf = source.take_filled(byte);
            // Make the writes observable so they cannot be optimised away before the buffer is freed.
            checksum = checksum.wrapping_add(u64::from(black_box(&*buf)[BUF_SIZE - 1]));
            batch.push(buf);
            gauge.buffers_out.store(batch.len(), Relaxed);

            let len = SMALL_MIN + rng.below(SMALL_MAX - SMALL_MIN + 1);
            let object = vec![byte; len].into_boxed_slice();
            let old = mem::replace(&mut ring[rng.below(RING_SLOTS)], object);
            ring_bytes = ring_bytes + len - old.len();
            drop(old);
            gauge.ring_bytes.store(ring_bytes, Relaxed);
        }
        for buf in batch.drain(..) {
            source.give_back(buf);
        }
        gauge.buffers_out.store(0, Relaxed);
        queries += 1;
        gauge.queries.store(queries, Relaxed);
    }
    Outcome {
        _ring: ring,
        _source: source,
        queries,
        checksum,
        finished: Instant::now(),
        cpu: thread_cpu_seconds(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The child: one strategy, measured

/// What a child needs to know; passed on its command line.
#[derive(Debug, Clone, Copy)]
struct RunParams {
    threads: usize,
    seconds: f64,
    queries: Option<u64>,
    seed: u64,
}

/// Resident set size of this process, from `/proc/self/statm`.
fn rss_bytes() -> io::Result<u64> {
    let statm = fs::read_to_string("/proc/self/statm")?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/self/statm"))?;
    Ok(resident * pagepool::page_size() as u64)
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`).
fn hwm_bytes() -> io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmHWM in /proc/self/status"))
}

/// Number of mappings of this process (lines of `/proc/self/maps`).
fn count_maps() -> io::Result<i64> {
    Ok(fs::read_to_string("/proc/self/maps")?.lines().count() as i64)
}

/// Takes the child's samples and writes them to stdout for the parent.
struct Sampler<'a> {
    gauges: &'a [Gauge],
    base: u64,
    maps_start: i64,
    maps_peak: i64,
    max_ring: usize,
    out: io::StdoutLock<'static>,
}

impl Sampler<'_> {
    /// Peak live demand so far (see the module docs).
    fn peak_live(&self) -> usize {
        self.gauges.len() * (BATCH * BUF_SIZE + RING_SLOTS * SLOT_BYTES) + self.max_ring
    }

    /// Samples RSS and live bytes and reports them as a `sample` line; returns the RSS.
    fn sample(&mut self, t: f64) -> io::Result<u64> {
        let rss = rss_bytes()?;
        self.maps_peak = self.maps_peak.max(count_maps()?);
        let sum = |f: fn(&Gauge) -> usize| self.gauges.iter().map(f).sum::<usize>();
        let ring = sum(|g| g.ring_bytes.load(Relaxed));
        let live = sum(|g| g.buffers_out.load(Relaxed)) * BUF_SIZE
            + ring
            + sum(|g| g.slot_bytes.load(Relaxed));
        let queries: u64 = self.gauges.iter().map(|g| g.queries.load(Relaxed)).sum();
        self.max_ring = self.max_ring.max(ring);
        let ratio = rss.saturating_sub(self.base) as f64 / self.peak_live() as f64;
        writeln!(
            self.out,
            "sample t={t:.3} rss={rss} live={live} ratio={ratio:.4} queries={queries}"
        )?;
        Ok(rss)
    }
}

/// Runs one strategy in this (child) process and reports to stdout.
fn run_child(strategy: Strategy, params: RunParams) -> Result<(), Box<dyn Error>> {
    let maps_start = count_maps()?;
    let threads = params.threads;
    match strategy {
        Strategy::Memalign => measure(params, vec![Heap::Libc; threads], None, maps_start),
        Strategy::StdAligned => measure(params, vec![Heap::Std; threads], None, maps_start),
        Strategy::MmapEach => measure(
            params,
            (0..threads).map(|_| MmapEach).collect(),
            None,
            maps_start,
        ),
        Strategy::Pool | Strategy::PoolOverflow => {
            let demand = threads * BATCH;
            let capacity = if strategy == Strategy::Pool {
                demand
            } else {
                (demand / 4).max(1)
            };
            let pool = PagePool::builder()
                .buf_size(BUF_SIZE)
                .capacity(capacity)
                .overflow(OverflowPolicy::Map)
                .build()?;
            assert!(pool.alignment() >= BUF_ALIGN);
            measure(params, vec![pool.clone(); threads], Some(&pool), maps_start)
        }
        Strategy::Floor => {
            let sources = (0..threads)
                .map(|_| Floor::new())
                .collect::<io::Result<_>>()?;
            measure(params, sources, None, maps_start)
        }
    }
}

/// Measures the baseline, runs one worker per source, samples every second, and reports the summary.
fn measure<S: BufSource>(
    params: RunParams,
    sources: Vec<S>,
    pool: Option<&PagePool>,
    maps_start: i64,
) -> Result<(), Box<dyn Error>> {
    let gauges: Vec<Gauge> = sources.iter().map(|_| Gauge::default()).collect();
    let stop = AtomicBool::new(false);
    let base = rss_bytes()?;
    let mut sampler = Sampler {
        gauges: &gauges,
        base,
        maps_start,
        maps_peak: maps_start,
        max_ring: 0,
        out: io::stdout().lock(),
    };
    sampler.sample(0.0)?;
    let start = Instant::now();
    let outcomes = thread::scope(|scope| -> Result<Vec<Outcome<S>>, Box<dyn Error>> {
        let mut handles = Vec::with_capacity(gauges.len());
        for (index, (source, gauge)) in sources.into_iter().zip(&gauges).enumerate() {
            let stop = &stop;
            let handle = thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn_scoped(scope, move || worker(index, source, &params, gauge, stop))?;
            handles.push(handle);
        }
        let mut next = 1.0;
        loop {
            let t = start.elapsed().as_secs_f64();
            if t >= params.seconds || handles.iter().all(thread::ScopedJoinHandle::is_finished) {
                break;
            }
            if t >= next {
                sampler.sample(t)?;
                next += 1.0;
            } else {
                thread::sleep(Duration::from_secs_f64(
                    (next - t).min(params.seconds - t).min(0.05),
                ));
            }
        }
        stop.store(true, Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "a worker thread panicked".into()))
            .collect()
    })?;
    let wall = outcomes
        .iter()
        .map(|o| o.finished.duration_since(start))
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    // Final sample with the rings still alive and every buffer released.
    let final_rss = sampler.sample(wall)?;
    let hwm = hwm_bytes()?;
    let maps_end = count_maps()?;
    let queries: u64 = outcomes.iter().map(|o| o.queries).sum();
    let cpu: f64 = outcomes.iter().map(|o| o.cpu).sum();
    let checksum = outcomes
        .iter()
        .fold(0u64, |a, o| a.wrapping_add(o.checksum));
    let mut done = format!(
        "done wall={wall:.4} cpu={cpu:.4} queries={queries} base={base} hwm={hwm} final_rss={final_rss} peak_live={} \
         maps_delta={} maps_peak_delta={} checksum={checksum}",
        sampler.peak_live(),
        maps_end - sampler.maps_start,
        sampler.maps_peak.max(maps_end) - sampler.maps_start,
    );
    if let Some(pool) = pool {
        let st = pool.stats();
        write!(
            done,
            " chunks={} overflow_maps={} pool_hits={} pool_mapped={}",
            st.chunks, st.overflow_maps, st.pool_hits, st.mapped_bytes
        )?;
    }
    writeln!(sampler.out, "{done}")?;
    sampler.out.flush()?;
    drop(outcomes);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The parent: run every strategy in a child, report

/// Parsed command line of the parent.
#[derive(Debug)]
struct Options {
    params: RunParams,
    strategies: Vec<Strategy>,
    csv: Option<String>,
    svg: Option<String>,
    smoke: bool,
}

/// What the command line asks for.
enum Mode {
    Help,
    Parent(Options),
    Child(Strategy, RunParams),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Mode, String> {
    fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: invalid value `{v}`"))
    }
    let mut params = RunParams {
        threads: 1,
        seconds: DEFAULT_SECONDS,
        queries: None,
        seed: DEFAULT_SEED,
    };
    let (mut strategies, mut csv, mut svg, mut smoke, mut child) =
        (Vec::new(), None, None, false, None);
    let mut seconds_given = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Mode::Help),
            "--threads" => params.threads = value(&arg, args.next())?,
            "--seconds" => {
                params.seconds = value(&arg, args.next())?;
                seconds_given = true;
            }
            "--queries" => params.queries = Some(value(&arg, args.next())?),
            "--seed" => params.seed = value(&arg, args.next())?,
            "--strategy" => {
                let names: String = value(&arg, args.next())?;
                for name in names.split(',').filter(|n| !n.is_empty()) {
                    strategies.push(Strategy::parse(name)?);
                }
            }
            "--csv" => csv = Some(value(&arg, args.next())?),
            "--svg" => svg = Some(value(&arg, args.next())?),
            "--smoke" => smoke = true,
            "--child" => child = Some(Strategy::parse(&value::<String>(&arg, args.next())?)?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if params.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if !(params.seconds > 0.0 && params.seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    if let Some(strategy) = child {
        return Ok(Mode::Child(strategy, params));
    }
    if smoke {
        if !strategies.is_empty() {
            return Err("--smoke runs its own strategies; drop --strategy".into());
        }
        strategies = vec![Strategy::Memalign, Strategy::Pool, Strategy::PoolOverflow];
        params.queries = Some(params.queries.unwrap_or(SMOKE_QUERIES));
        if !seconds_given {
            params.seconds = SMOKE_SECONDS;
        }
    } else if strategies.is_empty() {
        strategies = Strategy::ALL.to_vec();
    }
    let mut seen = Vec::new();
    strategies.retain(|s| {
        if seen.contains(s) {
            false
        } else {
            seen.push(*s);
            true
        }
    });
    Ok(Mode::Parent(Options {
        params,
        strategies,
        csv,
        svg,
        smoke,
    }))
}

/// One per-second sample, as reported by a child.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    rss: u64,
    live: u64,
    ratio: f64,
    queries: u64,
}

/// A child's final summary.
#[derive(Debug, Clone)]
struct Summary {
    wall: f64,
    cpu: f64,
    queries: u64,
    base: u64,
    hwm: u64,
    final_rss: u64,
    peak_live: u64,
    maps_delta: i64,
    maps_peak_delta: i64,
    chunks: Option<u64>,
    overflow_maps: Option<u64>,
}

impl Summary {
    /// Queries per second of wall time.
    fn queries_per_sec(&self) -> f64 {
        self.queries as f64 / self.wall.max(f64::EPSILON)
    }

    /// Queries per second of the workers' CPU time: less sensitive to other processes taking the cores.
    fn queries_per_cpu_sec(&self) -> f64 {
        self.queries as f64 / self.cpu.max(f64::EPSILON)
    }

    /// `(peak RSS - baseline) / peak live demand`.
    fn ratio(&self) -> f64 {
        self.hwm.saturating_sub(self.base) as f64 / self.peak_live.max(1) as f64
    }
}

/// One strategy's run.
#[derive(Debug)]
struct Run {
    strategy: Strategy,
    samples: Vec<Sample>,
    summary: Summary,
}

/// Splits `kind k=v k=v ...`.
fn parse_line(line: &str) -> Option<(&str, HashMap<&str, &str>)> {
    let mut words = line.split_whitespace();
    let kind = words.next()?;
    Some((kind, words.filter_map(|w| w.split_once('=')).collect()))
}

fn field<T: std::str::FromStr>(kv: &HashMap<&str, &str>, key: &str) -> Result<T, String> {
    kv.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("child output lacks a valid `{key}`"))
}

/// Runs one strategy in a fresh child process, printing its progress.
fn run_strategy(strategy: Strategy, params: &RunParams) -> Result<Run, Box<dyn Error>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--child", strategy.name()])
        .args(["--threads", &params.threads.to_string()])
        .args(["--seconds", &params.seconds.to_string()])
        .args(["--seed", &params.seed.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(q) = params.queries {
        cmd.args(["--queries", &q.to_string()]);
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let (mut samples, mut summary) = (Vec::new(), None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Some((kind, kv)) = parse_line(&line) else {
            continue;
        };
        match kind {
            "sample" => {
                let s = Sample {
                    t: field(&kv, "t")?,
                    rss: field(&kv, "rss")?,
                    live: field(&kv, "live")?,
                    ratio: field(&kv, "ratio")?,
                    queries: field(&kv, "queries")?,
                };
                println!(
                    "  {:<13} {:>5.1} s  queries {:>7}  rss {:>8.1} MiB  live {:>6.1} MiB  rss/live {:>5.2}x",
                    strategy.name(),
                    s.t,
                    s.queries,
                    s.rss as f64 / MIB,
                    s.live as f64 / MIB,
                    s.ratio
                );
                samples.push(s);
            }
            "done" => {
                summary = Some(Summary {
                    wall: field(&kv, "wall")?,
                    cpu: field(&kv, "cpu")?,
                    queries: field(&kv, "queries")?,
                    base: field(&kv, "base")?,
                    hwm: field(&kv, "hwm")?,
                    final_rss: field(&kv, "final_rss")?,
                    peak_live: field(&kv, "peak_live")?,
                    maps_delta: field(&kv, "maps_delta")?,
                    maps_peak_delta: field(&kv, "maps_peak_delta")?,
                    chunks: field(&kv, "chunks").ok(),
                    overflow_maps: field(&kv, "overflow_maps").ok(),
                });
            }
            _ => println!("  {}: {line}", strategy.name()),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the {} child failed ({status})", strategy.name()).into());
    }
    let summary =
        summary.ok_or_else(|| format!("the {} child sent no summary", strategy.name()))?;
    Ok(Run {
        strategy,
        samples,
        summary,
    })
}

fn print_definition() {
    println!(
        "RSS/live = (peak RSS - baseline RSS) / peak live demand\n  \
         baseline RSS: the child's RSS just before its workers start (pool built lazily: no buffer mapped yet)\n  \
         peak RSS: VmHWM; samples show (RSS - baseline) / peak live demand so far\n  \
         peak live demand: threads x 1024 x 8 KiB + max bytes of small objects in the rings \
         + ring slot arrays (threads x 100,000 x {SLOT_BYTES} B)"
    );
}

/// The final table, in Markdown.
fn table(runs: &[Run], threads: usize) -> String {
    let floor = runs
        .iter()
        .find(|r| r.strategy == Strategy::Floor)
        .map(|r| &r.summary);
    let mut out = String::from(
        "| strategy | threads | queries/s | queries/CPU-s | of floor (wall, CPU) | baseline RSS MiB | peak RSS MiB \
         | final RSS MiB | live MiB | RSS/live | mappings | overflow maps |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|\n",
    );
    for run in runs {
        let s = &run.summary;
        let of_floor = floor.map_or("-".into(), |f| {
            format!(
                "{:.2}, {:.2}",
                s.queries_per_sec() / f.queries_per_sec(),
                s.queries_per_cpu_sec() / f.queries_per_cpu_sec()
            )
        });
        let mappings = match s.chunks {
            Some(chunks) => format!("{chunks} chunks (stats)"),
            None if s.maps_peak_delta != s.maps_delta => {
                format!("{:+} maps (peak {:+})", s.maps_delta, s.maps_peak_delta)
            }
            None => format!("{:+} maps", s.maps_delta),
        };
        let overflow = s.overflow_maps.map_or("-".into(), |n| n.to_string());
        let _ = writeln!(
            out,
            "| {} | {threads} | {:.0} | {:.0} | {of_floor} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3}x | {mappings} \
             | {overflow} |",
            run.strategy.name(),
            s.queries_per_sec(),
            s.queries_per_cpu_sec(),
            s.base as f64 / MIB,
            s.hwm as f64 / MIB,
            s.final_rss as f64 / MIB,
            s.peak_live as f64 / MIB,
            s.ratio(),
        );
    }
    out
}

/// The ratio of one strategy, if it ran.
fn ratio_of(runs: &[Run], strategy: Strategy) -> Option<f64> {
    runs.iter()
        .find(|r| r.strategy == strategy)
        .map(|r| r.summary.ratio())
}

/// The project's target figures, for information (only `--smoke` gates, and only on memory).
fn print_targets(runs: &[Run], threads: usize) {
    let summary = |st: Strategy| runs.iter().find(|r| r.strategy == st).map(|r| &r.summary);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("targets:");
    if let Some(r) = ratio_of(runs, Strategy::Memalign) {
        println!("  memalign RSS/live >= 4x: {r:.3}x, {}", verdict(r >= 4.0));
    }
    for st in [Strategy::Pool, Strategy::PoolOverflow] {
        if let Some(r) = ratio_of(runs, st) {
            println!(
                "  {} RSS/live <= 1.10x: {r:.3}x, {}",
                st.name(),
                verdict(r <= 1.10)
            );
        }
    }
    if let (Some(p), Some(m)) = (summary(Strategy::Pool), summary(Strategy::Memalign)) {
        let wall = p.queries_per_sec() / m.queries_per_sec();
        let cpu = p.queries_per_cpu_sec() / m.queries_per_cpu_sec();
        let note = if threads == 1 {
            verdict(wall >= 1.5)
        } else {
            "the target is for 1 thread"
        };
        println!(
            "  pool queries/s >= 1.5x memalign: {wall:.2}x ({cpu:.2}x per CPU-second), {note}"
        );
    }
    for st in [Strategy::Pool, Strategy::PoolOverflow, Strategy::Memalign] {
        if let (Some(s), Some(f)) = (summary(st), summary(Strategy::Floor)) {
            println!(
                "  {} queries/s of floor: {:.2} ({:.2} per CPU-second)",
                st.name(),
                s.queries_per_sec() / f.queries_per_sec(),
                s.queries_per_cpu_sec() / f.queries_per_cpu_sec()
            );
        }
    }
}

/// The `--smoke` verdict: `Ok` with the PASS line, or `Err` with the FAIL line.
fn smoke_verdict(runs: &[Run]) -> Result<String, String> {
    let get = |st: Strategy| {
        ratio_of(runs, st).ok_or_else(|| format!("smoke: FAIL ({} did not run)", st.name()))
    };
    let (memalign, pool, overflow) = (
        get(Strategy::Memalign)?,
        get(Strategy::Pool)?,
        get(Strategy::PoolOverflow)?,
    );
    let overflow_maps = runs
        .iter()
        .find(|r| r.strategy == Strategy::PoolOverflow)
        .and_then(|r| r.summary.overflow_maps)
        .unwrap_or(0);
    let mut failures = Vec::new();
    if pool > SMOKE_POOL_LIMIT {
        failures.push(format!("pool RSS/live {pool:.2}x > {SMOKE_POOL_LIMIT}"));
    }
    if overflow > SMOKE_POOL_LIMIT {
        failures.push(format!(
            "pool-overflow RSS/live {overflow:.2}x > {SMOKE_POOL_LIMIT}"
        ));
    }
    if memalign <= pool {
        failures.push(format!(
            "memalign RSS/live {memalign:.2}x is not above pool's {pool:.2}x"
        ));
    }
    if overflow_maps == 0 {
        failures.push("pool-overflow never took the overflow path".into());
    }
    let figures = format!("pool {pool:.2}x, pool-overflow {overflow:.2}x, memalign {memalign:.2}x");
    if failures.is_empty() {
        Ok(format!(
            "smoke: PASS ({figures}; limits: pools <= {SMOKE_POOL_LIMIT}x, memalign above pool)"
        ))
    } else {
        Err(format!("smoke: FAIL: {} ({figures})", failures.join("; ")))
    }
}

fn write_csv(path: &str, runs: &[Run], threads: usize) -> io::Result<()> {
    let mut out = String::from("strategy,threads,t_seconds,rss_bytes,live_bytes,ratio,queries\n");
    for run in runs {
        for s in &run.samples {
            let _ = writeln!(
                out,
                "{},{threads},{:.3},{},{},{:.4},{}",
                run.strategy.name(),
                s.t,
                s.rss,
                s.live,
                s.ratio,
                s.queries
            );
        }
    }
    fs::write(path, out)
}

fn write_svg(path: &str, runs: &[Run], threads: usize) -> Result<(), Box<dyn Error>> {
    use plotters::prelude::*;

    let mib = |b: u64| b as f64 / MIB;
    let t_max = runs
        .iter()
        .flat_map(|r| &r.samples)
        .map(|s| s.t)
        .fold(1.0, f64::max);
    let y_max = runs.iter().map(|r| mib(r.summary.hwm)).fold(1.0, f64::max) * 1.08;
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let plural = if threads == 1 { "" } else { "s" };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Seed workload: RSS over time, {threads} thread{plural} (8 KiB buffers aligned to 4 KiB)"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since the workers started (s)")
        .y_desc("RSS (MiB)")
        .x_label_formatter(&|t| format!("{t:.0}"))
        .y_label_formatter(&|mib| format!("{mib:.0}"))
        .draw()?;
    for (i, run) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // memalign and std-aligned coincide, and so do pool and floor: vary the widths so both stay visible.
        let width = match run.strategy {
            Strategy::Memalign => 6,
            Strategy::Floor => 1,
            _ => 3,
        };
        let style = color.stroke_width(width);
        let points = run.samples.iter().map(|s| (s.t, mib(s.rss)));
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(format!(
                "{} ({:.2}x)",
                run.strategy.name(),
                run.summary.ratio()
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    // What a perfect allocator would need: the baseline plus the live demand.
    if let Some(ideal) = runs
        .iter()
        .map(|r| mib(r.summary.base + r.summary.peak_live))
        .reduce(f64::max)
    {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, ideal), (t_max, ideal)],
                8,
                6,
                BLACK.stroke_width(1),
            ))?
            .label("baseline + live demand")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn run_parent(opts: &Options) -> Result<ExitCode, Box<dyn Error>> {
    let p = &opts.params;
    let names: Vec<&str> = opts.strategies.iter().map(|s| s.name()).collect();
    let budget = p.queries.map_or(String::new(), |q| {
        format!(", at most {q} queries per thread")
    });
    println!(
        "seed workload: {} thread(s), {} s per strategy{budget}, seed {}, strategies: {}",
        p.threads,
        p.seconds,
        p.seed,
        names.join(", ")
    );
    println!(
        "per thread and query: {BATCH} buffers of {BUF_SIZE} B aligned to {BUF_ALIGN} B, each followed by one \
         {SMALL_MIN}..={SMALL_MAX} B object replacing a random slot of a {RING_SLOTS}-slot ring"
    );
    print_definition();
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut failed = false;
    for &strategy in &opts.strategies {
        println!("{} (fresh child process):", strategy.name());
        match run_strategy(strategy, p) {
            Ok(run) => runs.push(run),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    println!();
    print_definition();
    println!("mappings: pool strategies show the pool's stats().chunks; the others the change in /proc/self/maps lines");
    println!("from start to end, with the peak seen at a sample in parentheses\n");
    print!("{}", table(&runs, p.threads));
    if !opts.smoke {
        // The smoke run is too short for these; it has its own verdict below.
        println!();
        print_targets(&runs, p.threads);
    }
    if let Some(path) = &opts.csv {
        write_csv(path, &runs, p.threads)?;
        println!("wrote {path}");
    }
    if let Some(path) = &opts.svg {
        write_svg(path, &runs, p.threads)?;
        println!("wrote {path}");
    }
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    if opts.smoke {
        match smoke_verdict(&runs) {
            Ok(pass) => println!("{pass}"),
            Err(fail) => {
                println!("{fail}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Help => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Mode::Child(strategy, params) => run_child(strategy, params).map(|()| ExitCode::SUCCESS),
        Mode::Parent(opts) => run_parent(&opts),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}
