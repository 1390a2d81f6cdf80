//! The seed workload: the production failure that motivated `pagepool`, reproduced and compared.
//!
//! Run: `cargo run --release --example seed_workload` (six strategies, 1 thread, about a minute), or e.g.
//! `cargo run --release --example seed_workload -- --threads 2 --csv rss.csv --svg rss.svg`; `--help` lists
//! every flag, `--smoke` is the short pass/fail check run in CI, and `--sweep` compares the pool with the floor
//! and with mimalloc, jemalloc and glibc across batch sizes and thread counts (see "Sweep" below).
//!
//! It measures on Linux only: RSS and mappings come from `/proc/self`, and elsewhere a run fails with the error
//! of its first `/proc` read. It builds on every platform of the README: off unix the `memalign`, `mimalloc`
//! and `jemalloc` legs (libc and unix-only dev-dependencies) are compiled out (a run of one fails saying so)
//! and CPU time reads NaN.
//!
//! # The failure
//! glibc's `posix_memalign(&p, 4096, 8192)` carves `8192 + 4096 + 32` bytes out of the heap and gives the
//! unaligned slack back. Small long-lived objects allocated in between settle into that slack, so when the
//! aligned buffers are freed their holes are too small for the next aligned request (which again needs
//! 12 KiB contiguous), and the heap, and RSS, grow to several times the live bytes.
//!
//! # The workload
//! Every worker thread runs "queries" until time (or `--queries`) is up. A query acquires a batch of 1024
//! buffers (`--batch N`) of 8 KiB aligned to 4 KiB and writes every byte of each; after each buffer it allocates
//! one small long-lived heap object (32..=256 bytes, `--object-size MIN..MAX`, written) that replaces a random
//! slot of the thread's ring of 100,000 such objects (`--ring N`), dropping the previous occupant. At the end of
//! the query all the batch's buffers are released. So small objects are interleaved with the aligned
//! allocations, outlive them, and die in random order. With `--ring 0` there is no ring: each small object is
//! still allocated and written, then freed at once. The PRNG is seeded from `--seed` and the thread index,
//! identically for every strategy. The small objects always come from Rust's global allocator (glibc malloc
//! here); only the buffers come from the strategy.
//!
//! Strategies (each runs in a fresh child process, so no strategy inherits another's heap; the first six run by
//! default, `mimalloc` and `jemalloc` when named with `--strategy` and in `--sweep`):
//! - `memalign`: `libc::posix_memalign(&mut p, 4096, 8192)` and `libc::free`, what production did;
//! - `std-aligned`: `std::alloc::alloc` with `Layout::from_size_align(8192, 4096)` (Rust's `System` allocator,
//!   which calls `posix_memalign` for this layout) and `dealloc`;
//! - `mmap-each`: one `memmap2::MmapMut::map_anon(8192)` per buffer, unmapped on drop;
//! - `pool`: a [`PagePool`] with capacity `threads * batch`, exactly the demand, and otherwise the builder's
//!   defaults (`OverflowPolicy::Map`, the default thread cache), as a new user would build it;
//! - `pool-overflow`: a [`PagePool`] with capacity `threads * batch / 4` and [`OverflowPolicy::Map`], so 3/4 of
//!   the buffers take the overflow map/unmap path;
//! - `floor`: no allocator at all; each thread refills the same `batch` buffers mapped once up front. The
//!   physical floor of the workload, for time and for memory;
//! - `mimalloc`: the `mimalloc` crate's `MiMalloc` called directly (`GlobalAlloc::alloc`/`dealloc`, not
//!   installed as the global allocator) with the same `Layout` as `std-aligned`: what a user would pick instead
//!   of the pool;
//! - `jemalloc`: likewise with `tikv_jemallocator::Jemalloc`.
//!
//! # The ratio
//! `RSS/live = (peak RSS - baseline RSS) / peak live demand`, where
//! - *baseline RSS* is the child's RSS just before the worker threads start: after the strategy's allocator is
//!   set up (the pool is built, but lazily, so none of its buffers are mapped or touched yet; `floor`'s buffers
//!   are mapped but untouched), before anything is allocated or written. Every page the workload makes resident,
//!   pool chunks included, therefore counts as growth;
//! - *peak RSS* is the kernel's high-water mark (`VmHWM`), so short peaks between samples are not missed;
//! - *peak live demand* is `threads x batch x 8 KiB` (every thread holding its whole batch) + the most bytes of
//!   small objects seen in the rings (exact sums, sampled) + the rings' slot arrays (`threads x ring x 16`).
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
//! never gates on speed. It always uses the default workload (`--batch`, `--ring` and `--object-size` are
//! refused with it).
//!
//! # Sweep
//! `--sweep` runs the legs `floor`, `pool`, `mimalloc`, `jemalloc` and `memalign` at every point of batch
//! {1, 8, 64, 512, 4096} x threads {1, 2, 4} (`--sweep-batches` and `--sweep-threads` set other lists), for
//! `--sweep-seconds` (default 2) each, every leg in a fresh child process. At each point the legs run in
//! `--rounds` rounds (default 3), interleaved: round `r` runs all five legs one after the other, starting at
//! leg `r` (so no leg always runs first). Each leg's queries/s (wall time) is divided by the same round's
//! `floor` queries/s, and `pool/mimalloc` pairs the pool with the same round's mimalloc. The table shows, per
//! point, the floor's queries/s (median), each ratio's median over the rounds with its range (min-max) in
//! brackets, the pool's overflow maps (`stats().overflow_maps`, range over the rounds) and whether the targets of
//! issue #14 are met: pool >= 0.90 of the floor, never below mimalloc (and >= 1.2x mimalloc where mimalloc is
//! under 0.75 of the floor), 0 overflow maps. Verdicts use the medians; they are reported, never gated on.
//! `--csv` writes one row per leg run. The ring defaults to 1,024 slots in the sweep (`--ring` sets it): the
//! default workload's 100,000 slots (about 14 MiB of small objects per thread, far more than the caches hold)
//! take more than half of the floor's time (docs/benchmarks.md, "Batch sweep") and hide the allocators'
//! differences.

#[path = "proc_stats/mod.rs"]
mod proc_stats;

use pagepool::{AlignedBuf, OverflowPolicy, PagePool};
use proc_stats::{field, hwm_bytes, parse_line, rss_bytes};
#[cfg(unix)]
use std::alloc::GlobalAlloc;
use std::alloc::Layout;
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
/// Buffers per query, per thread (`--batch`).
const DEFAULT_BATCH: usize = 1024;
/// Slots in each thread's ring of small long-lived objects (`--ring`).
const DEFAULT_RING: usize = 100_000;
/// Smallest small object, in bytes (`--object-size`).
const DEFAULT_OBJECT_MIN: usize = 32;
/// Largest small object, in bytes (inclusive).
const DEFAULT_OBJECT_MAX: usize = 256;
/// Bytes of one ring slot (the `Box<[u8]>` fat pointer).
const SLOT_BYTES: usize = mem::size_of::<Box<[u8]>>();

/// Default run time per strategy: the 6 default strategies then take about a minute.
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

/// `--sweep`: buffers per query at each point (`--sweep-batches`).
const SWEEP_BATCHES: [usize; 5] = [1, 8, 64, 512, 4096];
/// `--sweep`: worker threads at each point (`--sweep-threads`).
const SWEEP_THREADS: [usize; 3] = [1, 2, 4];
/// `--sweep`: rounds per point (`--rounds`).
const SWEEP_ROUNDS: usize = 3;
/// `--sweep`: seconds per leg (`--sweep-seconds`), short enough for a full sweep to take minutes, not hours (the
/// sweep prints its estimate when it starts).
const SWEEP_SECONDS: f64 = 2.0;
/// `--sweep`: the ring's default size (see the module docs).
const SWEEP_RING: usize = 1024;
/// Issue #14's targets, reported per sweep point (never gated on): the pool's fraction of the floor,
const TARGET_OF_FLOOR: f64 = 0.90;
/// its ratio to mimalloc where mimalloc reaches [`TARGET_MIMALLOC_SLOW`] of the floor,
const TARGET_OF_MIMALLOC: f64 = 1.0;
/// and where mimalloc is below that fraction of the floor,
const TARGET_MIMALLOC_SLOW: f64 = 0.75;
/// its ratio to mimalloc there.
const TARGET_OF_SLOW_MIMALLOC: f64 = 1.2;

const MIB: f64 = 1024.0 * 1024.0;

const USAGE: &str = "\
seed_workload: reproduce glibc posix_memalign heap fragmentation and compare allocation strategies

USAGE: cargo run --release --example seed_workload -- [OPTIONS]

OPTIONS:
  --threads N        worker threads (default 1)
  --seconds S        run time per strategy in seconds (default 10)
  --queries N        also stop each thread after N queries
  --strategy NAMES   strategies to run, repeatable or comma-separated (default: the first six):
                     memalign, std-aligned, mmap-each, pool, pool-overflow, floor, mimalloc, jemalloc
  --batch N          buffers per query and thread (default 1024)
  --ring N           slots of each thread's ring of small long-lived objects; 0: no ring, each small
                     object is freed right after it is allocated (default 100000; 1024 with --sweep)
  --object-size MIN..MAX
                     size range of the small objects in bytes, inclusive (default 32..256)
  --csv PATH         write every per-second sample as CSV (with --sweep: one row per leg run)
  --svg PATH         plot RSS over time as SVG
  --seed N           PRNG seed, the same for every strategy (default 24301)
  --smoke            short pass/fail run of memalign, pool and pool-overflow (exit code 1 on FAIL)
  --sweep            batch x threads sweep of floor, pool, mimalloc, jemalloc and memalign, legs
                     interleaved in rounds, queries/s as a fraction of the same round's floor
  --sweep-batches L  batches of the sweep, comma-separated (default 1,8,64,512,4096)
  --sweep-threads L  thread counts of the sweep, comma-separated (default 1,2,4)
  --rounds R         sweep rounds per point (default 3)
  --sweep-seconds S  run time per sweep leg in seconds (default 2)
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
    Mimalloc,
    Jemalloc,
}

impl Strategy {
    const ALL: [Strategy; 8] = [
        Strategy::Memalign,
        Strategy::StdAligned,
        Strategy::MmapEach,
        Strategy::Pool,
        Strategy::PoolOverflow,
        Strategy::Floor,
        Strategy::Mimalloc,
        Strategy::Jemalloc,
    ];

    /// What runs without `--strategy`: the demo's six strategies, as before mimalloc and jemalloc were added.
    const DEFAULT: [Strategy; 6] = [
        Strategy::Memalign,
        Strategy::StdAligned,
        Strategy::MmapEach,
        Strategy::Pool,
        Strategy::PoolOverflow,
        Strategy::Floor,
    ];

    /// The legs of `--sweep`, in the order of round 0.
    const SWEEP: [Strategy; 5] = [
        Strategy::Floor,
        Strategy::Pool,
        Strategy::Mimalloc,
        Strategy::Jemalloc,
        Strategy::Memalign,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::Memalign => "memalign",
            Strategy::StdAligned => "std-aligned",
            Strategy::MmapEach => "mmap-each",
            Strategy::Pool => "pool",
            Strategy::PoolOverflow => "pool-overflow",
            Strategy::Floor => "floor",
            Strategy::Mimalloc => "mimalloc",
            Strategy::Jemalloc => "jemalloc",
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
    /// `libc::posix_memalign` / `libc::free`. Unix-only.
    #[cfg(unix)]
    Libc,
    /// `std::alloc::alloc` / `std::alloc::dealloc` with [`HeapBuf::LAYOUT`].
    Std,
    /// `MiMalloc` as a value: `GlobalAlloc::alloc` / `dealloc` with [`HeapBuf::LAYOUT`] (`mi_malloc_aligned`).
    /// Unix-only like its dev-dependency.
    #[cfg(unix)]
    Mimalloc,
    /// `tikv_jemallocator::Jemalloc` as a value, likewise (jemalloc's `mallocx` with an alignment flag).
    /// Unix-only like its dev-dependency.
    #[cfg(unix)]
    Jemalloc,
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
            #[cfg(unix)]
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
            // SAFETY: as for `Std`: LAYOUT has a non-zero size.
            #[cfg(unix)]
            Heap::Mimalloc => unsafe { GlobalAlloc::alloc(&mimalloc::MiMalloc, Self::LAYOUT) },
            // SAFETY: as for `Std`: LAYOUT has a non-zero size.
            #[cfg(unix)]
            Heap::Jemalloc => unsafe {
                GlobalAlloc::alloc(&tikv_jemallocator::Jemalloc, Self::LAYOUT)
            },
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
            #[cfg(unix)]
            Heap::Libc => unsafe { libc::free(self.ptr.as_ptr().cast()) },
            // SAFETY: `ptr` came from `std::alloc::alloc(LAYOUT)` and is freed exactly once, here.
            Heap::Std => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::LAYOUT) },
            // SAFETY: `ptr` came from `MiMalloc.alloc(LAYOUT)` and is freed exactly once, here, by the same
            // allocator with the same layout.
            #[cfg(unix)]
            Heap::Mimalloc => unsafe {
                GlobalAlloc::dealloc(&mimalloc::MiMalloc, self.ptr.as_ptr(), Self::LAYOUT)
            },
            // SAFETY: `ptr` came from `Jemalloc.alloc(LAYOUT)` and is freed exactly once, here, by the same
            // allocator with the same layout.
            #[cfg(unix)]
            Heap::Jemalloc => unsafe {
                GlobalAlloc::dealloc(
                    &tikv_jemallocator::Jemalloc,
                    self.ptr.as_ptr(),
                    Self::LAYOUT,
                )
            },
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

/// `floor`: one thread's batch of buffers, mapped once and reused forever.
struct Floor {
    idle: Vec<&'static mut [u8]>,
}

impl Floor {
    /// Maps (but does not touch) one batch of `batch` buffers. The mapping is leaked on purpose: it lives as
    /// long as the child process, which exits right after the run.
    fn new(batch: usize) -> io::Result<Self> {
        let map: &'static mut memmap2::MmapMut =
            Box::leak(Box::new(memmap2::MmapMut::map_anon(batch * BUF_SIZE)?));
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
#[cfg(unix)]
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

/// Not measured off unix (no `clock_gettime` through libc): NaN, so that per-CPU-second figures read NaN.
#[cfg(not(unix))]
fn thread_cpu_seconds() -> f64 {
    f64::NAN
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
    let mut ring: Vec<Box<[u8]>> = vec![Box::default(); params.ring];
    gauge.slot_bytes.store(ring.len() * SLOT_BYTES, Relaxed);
    let mut ring_bytes = 0usize;
    let mut batch: Vec<S::Buf> = Vec::with_capacity(params.batch);
    let (object_min, object_spread) =
        (params.object_min, params.object_max - params.object_min + 1);
    let mut queries = 0u64;
    let mut checksum = 0u64;
    while !stop.load(Relaxed) && params.queries.map_or(true, |budget| queries < budget) {
        // A per-query byte, never 0 so that `vec![byte; n]` below cannot turn into `calloc`.
        let byte = (queries % 255) as u8 + 1;
        for _ in 0..params.batch {
            let buf = source.take_filled(byte);
            // Make the writes observable so they cannot be optimised away before the buffer is freed.
            checksum = checksum.wrapping_add(u64::from(black_box(&*buf)[BUF_SIZE - 1]));
            batch.push(buf);
            gauge.buffers_out.store(batch.len(), Relaxed);

            let len = object_min + rng.below(object_spread);
            let object = vec![byte; len].into_boxed_slice();
            if ring.is_empty() {
                // `--ring 0`: the object dies at once; black_box keeps its allocation and writes.
                drop(black_box(object));
                continue;
            }
            let slot = rng.below(ring.len());
            let old = mem::replace(&mut ring[slot], object);
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
    /// Buffers per query and thread.
    batch: usize,
    /// Slots of each thread's ring of small objects (0: none).
    ring: usize,
    /// Size range of the small objects, inclusive.
    object_min: usize,
    object_max: usize,
}

/// Number of mappings of this process (lines of `/proc/self/maps`).
fn count_maps() -> io::Result<i64> {
    Ok(fs::read_to_string("/proc/self/maps")?.lines().count() as i64)
}

/// Takes the child's samples and writes them to stdout for the parent.
struct Sampler<'a> {
    gauges: &'a [Gauge],
    batch: usize,
    ring: usize,
    base: u64,
    maps_start: i64,
    maps_peak: i64,
    max_ring: usize,
    out: io::StdoutLock<'static>,
}

impl Sampler<'_> {
    /// Peak live demand so far (see the module docs).
    fn peak_live(&self) -> usize {
        self.gauges.len() * (self.batch * BUF_SIZE + self.ring * SLOT_BYTES) + self.max_ring
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
        #[cfg(unix)]
        Strategy::Memalign => measure(params, vec![Heap::Libc; threads], None, maps_start),
        Strategy::StdAligned => measure(params, vec![Heap::Std; threads], None, maps_start),
        #[cfg(unix)]
        Strategy::Mimalloc => measure(params, vec![Heap::Mimalloc; threads], None, maps_start),
        #[cfg(unix)]
        Strategy::Jemalloc => measure(params, vec![Heap::Jemalloc; threads], None, maps_start),
        #[cfg(not(unix))]
        Strategy::Memalign | Strategy::Mimalloc | Strategy::Jemalloc => Err(format!(
            "strategy `{}` is unavailable on this platform (libc, mimalloc and jemalloc are unix-only here)",
            strategy.name()
        )
        .into()),
        Strategy::MmapEach => measure(
            params,
            (0..threads).map(|_| MmapEach).collect(),
            None,
            maps_start,
        ),
        Strategy::Pool | Strategy::PoolOverflow => {
            let demand = threads * params.batch;
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
                .map(|_| Floor::new(params.batch))
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
        batch: params.batch,
        ring: params.ring,
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
    sweep: Option<Sweep>,
}

/// What `--sweep` runs (see the module docs).
#[derive(Debug, Clone)]
struct Sweep {
    batches: Vec<usize>,
    threads: Vec<usize>,
    rounds: usize,
    seconds: f64,
}

/// What the command line asks for.
enum Mode {
    Help,
    Parent(Options),
    Child(Strategy, RunParams),
}

/// Parses `MIN..MAX` (or `MIN..=MAX`), both inclusive.
fn parse_range(flag: &str, v: &str) -> Result<(usize, usize), String> {
    let bad = || format!("{flag}: expected MIN..MAX with 1 <= MIN <= MAX, got `{v}`");
    let (lo, hi) = v.split_once("..").ok_or_else(bad)?;
    let hi = hi.strip_prefix('=').unwrap_or(hi);
    let (lo, hi): (usize, usize) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Parses a comma-separated list of positive integers.
fn parse_list(flag: &str, v: &str) -> Result<Vec<usize>, String> {
    let list = v
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| match n.trim().parse::<usize>() {
            Ok(x) if x > 0 => Ok(x),
            _ => Err(format!("{flag}: `{n}` is not a positive integer")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(format!("{flag}: empty list"));
    }
    Ok(list)
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
        batch: DEFAULT_BATCH,
        ring: DEFAULT_RING,
        object_min: DEFAULT_OBJECT_MIN,
        object_max: DEFAULT_OBJECT_MAX,
    };
    let (mut strategies, mut csv, mut svg, mut smoke, mut child) =
        (Vec::new(), None, None, false, None);
    let mut sweep = Sweep {
        batches: SWEEP_BATCHES.to_vec(),
        threads: SWEEP_THREADS.to_vec(),
        rounds: SWEEP_ROUNDS,
        seconds: SWEEP_SECONDS,
    };
    // Flags given, for the checks below.
    let mut given: Vec<&'static str> = Vec::new();
    while let Some(arg) = args.next() {
        let flag: &'static str = match arg.as_str() {
            "--help" | "-h" => return Ok(Mode::Help),
            "--threads" => {
                params.threads = value(&arg, args.next())?;
                "--threads"
            }
            "--seconds" => {
                params.seconds = value(&arg, args.next())?;
                "--seconds"
            }
            "--queries" => {
                params.queries = Some(value(&arg, args.next())?);
                "--queries"
            }
            "--seed" => {
                params.seed = value(&arg, args.next())?;
                "--seed"
            }
            "--batch" => {
                params.batch = value(&arg, args.next())?;
                "--batch"
            }
            "--ring" => {
                params.ring = value(&arg, args.next())?;
                "--ring"
            }
            "--object-size" => {
                let v: String = value(&arg, args.next())?;
                (params.object_min, params.object_max) = parse_range(&arg, &v)?;
                "--object-size"
            }
            "--strategy" => {
                let names: String = value(&arg, args.next())?;
                for name in names.split(',').filter(|n| !n.is_empty()) {
                    strategies.push(Strategy::parse(name)?);
                }
                "--strategy"
            }
            "--csv" => {
                csv = Some(value(&arg, args.next())?);
                "--csv"
            }
            "--svg" => {
                svg = Some(value(&arg, args.next())?);
                "--svg"
            }
            "--smoke" => {
                smoke = true;
                "--smoke"
            }
            "--sweep" => "--sweep",
            "--sweep-batches" => {
                sweep.batches = parse_list(&arg, &value::<String>(&arg, args.next())?)?;
                "--sweep-batches"
            }
            "--sweep-threads" => {
                sweep.threads = parse_list(&arg, &value::<String>(&arg, args.next())?)?;
                "--sweep-threads"
            }
            "--rounds" => {
                sweep.rounds = value(&arg, args.next())?;
                "--rounds"
            }
            "--sweep-seconds" => {
                sweep.seconds = value(&arg, args.next())?;
                "--sweep-seconds"
            }
            "--child" => {
                child = Some(Strategy::parse(&value::<String>(&arg, args.next())?)?);
                "--child"
            }
            other => return Err(format!("unknown argument `{other}`")),
        };
        given.push(flag);
    }
    let has = |flag: &str| given.contains(&flag);
    if params.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if params.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if !(params.seconds > 0.0 && params.seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    if let Some(strategy) = child {
        return Ok(Mode::Child(strategy, params));
    }
    if has("--sweep") {
        let sweep_only = [
            "--sweep-batches",
            "--sweep-threads",
            "--rounds",
            "--sweep-seconds",
        ];
        for flag in [
            "--smoke",
            "--strategy",
            "--threads",
            "--batch",
            "--seconds",
            "--queries",
            "--svg",
        ] {
            if has(flag) {
                return Err(format!(
                    "--sweep sets its own legs, batches, threads and times; drop {flag} (the sweep's \
                     own flags: {})",
                    sweep_only.join(", ")
                ));
            }
        }
        if sweep.rounds == 0 {
            return Err("--rounds must be at least 1".into());
        }
        if !(sweep.seconds > 0.0 && sweep.seconds.is_finite()) {
            return Err("--sweep-seconds must be a positive number".into());
        }
        if !has("--ring") {
            params.ring = SWEEP_RING;
        }
        return Ok(Mode::Parent(Options {
            params,
            strategies: Strategy::SWEEP.to_vec(),
            csv,
            svg,
            smoke,
            sweep: Some(sweep),
        }));
    }
    for flag in [
        "--sweep-batches",
        "--sweep-threads",
        "--rounds",
        "--sweep-seconds",
    ] {
        if has(flag) {
            return Err(format!("{flag} needs --sweep"));
        }
    }
    let seconds_given = has("--seconds");
    if smoke {
        if !strategies.is_empty() {
            return Err("--smoke runs its own strategies; drop --strategy".into());
        }
        for flag in ["--batch", "--ring", "--object-size"] {
            if has(flag) {
                return Err(format!(
                    "--smoke always runs the default workload; drop {flag}"
                ));
            }
        }
        strategies = vec![Strategy::Memalign, Strategy::Pool, Strategy::PoolOverflow];
        params.queries = Some(params.queries.unwrap_or(SMOKE_QUERIES));
        if !seconds_given {
            params.seconds = SMOKE_SECONDS;
        }
    } else if strategies.is_empty() {
        strategies = Strategy::DEFAULT.to_vec();
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
        sweep: None,
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

/// Runs one strategy in a fresh child process, printing its progress unless `quiet`.
fn run_strategy(
    strategy: Strategy,
    params: &RunParams,
    quiet: bool,
) -> Result<Run, Box<dyn Error>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--child", strategy.name()])
        .args(["--threads", &params.threads.to_string()])
        .args(["--seconds", &params.seconds.to_string()])
        .args(["--seed", &params.seed.to_string()])
        .args(["--batch", &params.batch.to_string()])
        .args(["--ring", &params.ring.to_string()])
        .args([
            "--object-size",
            &format!("{}..{}", params.object_min, params.object_max),
        ])
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
                if quiet {
                    samples.push(s);
                    continue;
                }
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

/// `n` with a comma every three digits.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line describing the workload of `p`, with `batch` for the number of buffers per query.
fn describe_workload(batch: &str, p: &RunParams) -> String {
    let objects = if p.ring == 0 {
        "freed at once (--ring 0: no ring)".to_string()
    } else {
        format!("replacing a random slot of a {}-slot ring", p.ring)
    };
    format!(
        "per thread and query: {batch} buffers of {BUF_SIZE} B aligned to {BUF_ALIGN} B, each followed by one \
         {}..={} B object {objects}",
        p.object_min, p.object_max
    )
}

fn print_definition(p: &RunParams) {
    println!(
        "RSS/live = (peak RSS - baseline RSS) / peak live demand\n  \
         baseline RSS: the child's RSS just before its workers start (pool built lazily: no buffer mapped yet)\n  \
         peak RSS: VmHWM; samples show (RSS - baseline) / peak live demand so far\n  \
         peak live demand: threads x {} x 8 KiB + max bytes of small objects in the rings \
         + ring slot arrays (threads x {} x {SLOT_BYTES} B)",
        p.batch,
        thousands(p.ring)
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

// ---------------------------------------------------------------------------------------------------------------
// The sweep: batch x threads, legs interleaved in rounds, each leg against the same round's floor

/// One leg's run at one point and round of the sweep.
struct LegRun {
    threads: usize,
    batch: usize,
    round: usize,
    strategy: Strategy,
    summary: Summary,
}

/// Median and range of some rounds' figures.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    /// `None` for no figures.
    fn of(mut v: Vec<f64>) -> Option<Spread> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// `median (min-max)`, or the median alone when the range is one value; `-` for none.
fn fmt_spread(s: Option<Spread>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.min == s.max => format!("{:.2}", s.median),
        Some(s) => format!("{:.2} ({:.2}-{:.2})", s.median, s.min, s.max),
    }
}

/// The legs compared with the floor, in table order.
const COMPARED: [Strategy; 4] = [
    Strategy::Pool,
    Strategy::Mimalloc,
    Strategy::Jemalloc,
    Strategy::Memalign,
];

/// One point of the sweep, summarised over its rounds.
struct Point {
    threads: usize,
    batch: usize,
    /// The floor's queries/s.
    floor_qps: Option<Spread>,
    /// Each of [`COMPARED`]'s queries/s over the same round's floor.
    of_floor: [Option<Spread>; 4],
    /// The pool's queries/s over the same round's mimalloc.
    pool_vs_mimalloc: Option<Spread>,
    /// The pool's overflow maps (`stats().overflow_maps`), least and most over the rounds.
    overflow: Option<(u64, u64)>,
}

impl Point {
    fn new(threads: usize, batch: usize, legs: &[LegRun]) -> Point {
        let legs: Vec<&LegRun> = legs
            .iter()
            .filter(|l| l.threads == threads && l.batch == batch)
            .collect();
        let qps = |round: usize, st: Strategy| {
            legs.iter()
                .find(|l| l.round == round && l.strategy == st)
                .map(|l| l.summary.queries_per_sec())
        };
        let rounds = legs.iter().map(|l| l.round + 1).max().unwrap_or(0);
        // Paired per round: both legs of a ratio ran in the same round.
        let paired = |num: Strategy, den: Strategy| {
            Spread::of(
                (0..rounds)
                    .filter_map(|r| Some(qps(r, num)? / qps(r, den)?))
                    .collect(),
            )
        };
        let overflow: Vec<u64> = legs
            .iter()
            .filter(|l| l.strategy == Strategy::Pool)
            .filter_map(|l| l.summary.overflow_maps)
            .collect();
        Point {
            threads,
            batch,
            floor_qps: Spread::of(
                (0..rounds)
                    .filter_map(|r| qps(r, Strategy::Floor))
                    .collect(),
            ),
            of_floor: COMPARED.map(|st| paired(st, Strategy::Floor)),
            pool_vs_mimalloc: paired(Strategy::Pool, Strategy::Mimalloc),
            overflow: overflow
                .iter()
                .min()
                .zip(overflow.iter().max())
                .map(|(a, b)| (*a, *b)),
        }
    }

    /// Issue #14's floor target on the medians: `Some(met)`, or `None` when a leg is missing.
    fn floor_met(&self) -> Option<bool> {
        Some(self.of_floor[0]?.median >= TARGET_OF_FLOOR)
    }

    /// The ratio to mimalloc the pool must reach here: higher where mimalloc itself is slow.
    fn mimalloc_target(&self) -> Option<f64> {
        let mimalloc = self.of_floor[1]?.median;
        Some(if mimalloc < TARGET_MIMALLOC_SLOW {
            TARGET_OF_SLOW_MIMALLOC
        } else {
            TARGET_OF_MIMALLOC
        })
    }

    fn mimalloc_met(&self) -> Option<bool> {
        Some(self.pool_vs_mimalloc?.median >= self.mimalloc_target()?)
    }

    fn overflow_met(&self) -> Option<bool> {
        Some(self.overflow?.1 == 0)
    }
}

fn verdict_cell(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "-",
    }
}

const SWEEP_HEADER: &str = "| threads | N per query | floor q/s | pool/floor | mimalloc/floor | jemalloc/floor \
    | memalign/floor | pool/mimalloc | pool overflow maps | pool >= 0.90 floor | pool vs mimalloc | 0 overflow |\n\
    |--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|\n";

/// One row of the sweep table.
fn sweep_row(p: &Point) -> String {
    let overflow = match p.overflow {
        None => "-".into(),
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a}-{b}"),
    };
    let mimalloc = match (p.mimalloc_met(), p.mimalloc_target()) {
        (Some(met), Some(target)) => format!("{} (>= {target:.2}x)", verdict_cell(Some(met))),
        _ => "-".into(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {overflow} | {} | {mimalloc} | {} |\n",
        p.threads,
        p.batch,
        p.floor_qps
            .map_or("-".into(), |s| format!("{:.0}", s.median)),
        fmt_spread(p.of_floor[0]),
        fmt_spread(p.of_floor[1]),
        fmt_spread(p.of_floor[2]),
        fmt_spread(p.of_floor[3]),
        fmt_spread(p.pool_vs_mimalloc),
        verdict_cell(p.floor_met()),
        verdict_cell(p.overflow_met()),
    )
}

/// One CSV row per leg run: its figures and its ratio to the same round's floor.
fn write_sweep_csv(path: &str, legs: &[LegRun]) -> io::Result<()> {
    let mut out = String::from(
        "threads,batch,round,leg,queries,wall_s,cpu_s,queries_per_s,queries_per_cpu_s,of_floor,rss_live,\
         overflow_maps\n",
    );
    for l in legs {
        let floor = legs.iter().find(|f| {
            (f.threads, f.batch, f.round, f.strategy)
                == (l.threads, l.batch, l.round, Strategy::Floor)
        });
        let s = &l.summary;
        let of_floor = floor.map_or(String::new(), |f| {
            format!("{:.4}", s.queries_per_sec() / f.summary.queries_per_sec())
        });
        let overflow = s.overflow_maps.map_or(String::new(), |n| n.to_string());
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.4},{:.4},{:.1},{:.1},{of_floor},{:.4},{overflow}",
            l.threads,
            l.batch,
            l.round,
            l.strategy.name(),
            s.queries,
            s.wall,
            s.cpu,
            s.queries_per_sec(),
            s.queries_per_cpu_sec(),
            s.ratio(),
        );
    }
    fs::write(path, out)
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn run_sweep(opts: &Options, sweep: &Sweep) -> Result<ExitCode, Box<dyn Error>> {
    let legs_per_round = Strategy::SWEEP.len();
    let points = sweep.threads.len() * sweep.batches.len();
    let total = points * sweep.rounds * legs_per_round;
    let names: Vec<&str> = Strategy::SWEEP.iter().map(|s| s.name()).collect();
    let list = |v: &[usize]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "seed workload sweep: batch {{{}}} x threads {{{}}}, {} round(s) of the legs {} ({} leg runs of {} s, \
         each in a fresh child process; at least {:.0} s in all), seed {}",
        list(&sweep.batches),
        list(&sweep.threads),
        sweep.rounds,
        names.join(", "),
        total,
        sweep.seconds,
        total as f64 * sweep.seconds,
        opts.params.seed
    );
    println!("{}", describe_workload("N", &opts.params));
    println!(
        "pool: capacity threads x N, otherwise the builder's defaults; cores available: {}; load average at \
         start: {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let started = Instant::now();
    let mut legs: Vec<LegRun> = Vec::new();
    let mut table = String::from(SWEEP_HEADER);
    let mut failed = false;
    let mut done = 0usize;
    for &threads in &sweep.threads {
        for &batch in &sweep.batches {
            let params = RunParams {
                threads,
                batch,
                seconds: sweep.seconds,
                queries: None,
                ..opts.params
            };
            for round in 0..sweep.rounds {
                for k in 0..legs_per_round {
                    let strategy = Strategy::SWEEP[(round + k) % legs_per_round];
                    done += 1;
                    match run_strategy(strategy, &params, true) {
                        Ok(run) => {
                            let s = &run.summary;
                            println!(
                                "  [{done}/{total}] threads {threads} N {batch} round {round} {:<9} {:>11.0} q/s \
                                 ({} queries in {:.2} s){}",
                                strategy.name(),
                                s.queries_per_sec(),
                                s.queries,
                                s.wall,
                                s.overflow_maps
                                    .map_or(String::new(), |n| format!(", {n} overflow maps"))
                            );
                            legs.push(LegRun {
                                threads,
                                batch,
                                round,
                                strategy,
                                summary: run.summary,
                            });
                        }
                        Err(e) => {
                            eprintln!("error: threads {threads} N {batch} round {round}: {e}");
                            failed = true;
                        }
                    }
                }
            }
            let row = sweep_row(&Point::new(threads, batch, &legs));
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "{SWEEP_HEADER}{row}  ({:.0} s so far, about {:.0} s to go; load average {})",
                elapsed,
                elapsed / done as f64 * (total - done) as f64,
                load_average()
            );
            table.push_str(&row);
        }
    }
    let points: Vec<Point> = sweep
        .threads
        .iter()
        .flat_map(|&t| sweep.batches.iter().map(move |&b| (t, b)))
        .map(|(t, b)| Point::new(t, b, &legs))
        .collect();
    println!();
    println!(
        "queries/s (wall) of each leg over the same round's floor: median over {} round(s), (min-max) when they \
         differ; pool/mimalloc paired per round likewise",
        sweep.rounds
    );
    println!(
        "targets (issue #14, on the medians): pool >= {TARGET_OF_FLOOR:.2} of the floor; pool >= \
         {TARGET_OF_MIMALLOC:.1}x mimalloc, >= {TARGET_OF_SLOW_MIMALLOC:.1}x where mimalloc < \
         {TARGET_MIMALLOC_SLOW:.2} of the floor; 0 overflow maps (capacity = demand)\n"
    );
    print!("{table}");
    let count =
        |f: fn(&Point) -> Option<bool>| points.iter().filter(|p| f(p) == Some(true)).count();
    println!(
        "\ntargets met at {} of {} points: pool >= {TARGET_OF_FLOOR:.2} floor at {}, pool vs mimalloc at {}, \
         0 overflow maps at {}",
        points
            .iter()
            .filter(|p| [p.floor_met(), p.mimalloc_met(), p.overflow_met()]
                .iter()
                .all(|m| *m == Some(true)))
            .count(),
        points.len(),
        count(Point::floor_met),
        count(Point::mimalloc_met),
        count(Point::overflow_met),
    );
    if let Some(path) = &opts.csv {
        write_sweep_csv(path, &legs)?;
        println!("wrote {path}");
    }
    println!(
        "total time {:.1} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run_parent(opts: &Options) -> Result<ExitCode, Box<dyn Error>> {
    if let Some(sweep) = &opts.sweep {
        return run_sweep(opts, sweep);
    }
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
    println!("{}", describe_workload(&p.batch.to_string(), p));
    print_definition(p);
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut failed = false;
    for &strategy in &opts.strategies {
        println!("{} (fresh child process):", strategy.name());
        match run_strategy(strategy, p, false) {
            Ok(run) => runs.push(run),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    println!();
    print_definition(p);
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
