//! Buffer sources shared by the benchmarks and by `examples/callgrind_ops.rs`: the pool and every baseline it is
//! compared with, behind one small [`Strategy`] trait so that each benchmark loop is written once.
//!
//! Every strategy hands out 8 KiB buffers aligned to 4 KiB ([`BUF_SIZE`], [`ALIGN`]). The baselines:
//!
//! | name | what one acquire / release is |
//! |---|---|
//! | `floor` | pop / push on this thread's own `Vec` stack of pre-made buffers: no allocator at all |
//! | `arrayqueue` | pop / push on a shared `crossbeam_queue::ArrayQueue` (FIFO) of pre-made buffers |
//! | `mutex_vec` | lock a shared `Mutex<Vec<_>>` (LIFO) of pre-made buffers, pop / push |
//! | `posix_memalign` | glibc `posix_memalign(4096, 8192)` / `free` |
//! | `std_aligned` | `std::alloc::alloc(Layout(8192, 4096))` / `dealloc` (glibc's `posix_memalign` underneath) |
//! | `jemalloc` | `tikv_jemallocator::Jemalloc` as a value: `GlobalAlloc::alloc` / `dealloc`, same layout |
//! | `memmap2` | `MmapMut::map_anon(8192)` / drop (`mmap` / `munmap` per buffer) |
//! | `pagepool` | `PagePool::acquire` / drop of the `AlignedBuf`, default per-thread cache |
//! | `pagepool_nocache` | the same with `thread_cache(0)`: every operation goes to the shared freelist |
//!
//! Pre-made buffers live in one [`Slab`]: a single anonymous mapping, every page faulted in up front.
//!
//! `posix_memalign` and `jemalloc` are unix-only (libc, tikv-jemallocator): on Windows those legs are left
//! out, and the others (memmap2 maps through `CreateFileMapping` there) build and run.
#![allow(dead_code)] // each bench uses a different subset

use crossbeam_queue::ArrayQueue;
use pagepool::{AlignedBuf, OverflowPolicy, PagePool};
#[cfg(unix)]
use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Bytes per buffer in every benchmark.
pub const BUF_SIZE: usize = 8192;
/// Alignment asked of the allocators (the page size on x86-64 Linux).
pub const ALIGN: usize = 4096;
/// Buffers in the pool and in every pre-made baseline (and the batch size).
pub const POOL_CAP: usize = 1024;

/// The layout every allocator baseline is asked for.
pub fn layout() -> Layout {
    // 8192 is non-zero and 4096 is a power of two, so this never fails.
    Layout::from_size_align(BUF_SIZE, ALIGN).expect("valid layout")
}

/// Writes one byte through `p`, in a way the compiler must keep, so that a buffer is really used.
#[inline(always)]
pub fn touch(p: *mut u8) {
    // SAFETY: every caller passes the start of a live, writable buffer of BUF_SIZE bytes that it holds
    // exclusively (see each `Strategy::ptr`).
    unsafe { p.write_volatile(1) }
}

/// A source of buffers, driven from one thread through `&mut self`. Shared sources are cheap handles (an `Arc`
/// or a `PagePool` clone), so a multi-threaded benchmark gives each thread its own handle.
pub trait Strategy {
    /// What an acquire hands out.
    type Buf;
    /// Takes a buffer.
    fn acquire(&mut self) -> Self::Buf;
    /// Gives a buffer back (or frees it).
    fn release(&mut self, buf: Self::Buf);
    /// Start of the buffer's `BUF_SIZE` writable bytes, valid while `buf` is held.
    fn ptr(buf: &mut Self::Buf) -> *mut u8;
}

/// One acquire, touch, release: the hot path every group measures in some form.
///
/// The handle goes through `black_box` first, so the compiler cannot see that a pop followed by a push of the
/// same buffer leaves a stack unchanged and hoist the floor's work out of a loop.
#[inline(always)]
pub fn cycle<S: Strategy>(s: &mut S) {
    let s = black_box(s);
    let mut b = s.acquire();
    touch(S::ptr(&mut b));
    s.release(b);
}

/// The query pattern: acquire `n` buffers (touching each), then release them in the order they were taken.
/// `held` is scratch space, empty on entry and on return, with capacity for `n` so that it never allocates.
#[inline(always)]
pub fn batch<S: Strategy>(s: &mut S, held: &mut Vec<S::Buf>, n: usize) {
    let s = black_box(s);
    for _ in 0..n {
        let mut b = s.acquire();
        touch(S::ptr(&mut b));
        held.push(b);
    }
    for b in held.drain(..) {
        s.release(b);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pre-made buffers.

/// A pointer to one pre-made buffer in a [`Slab`]. Whoever holds the token owns those bytes.
#[derive(Debug)]
pub struct RawBuf(NonNull<u8>);

// SAFETY: a RawBuf is a unique token for BUF_SIZE bytes of a Slab (each slab hands every buffer out exactly
// once), so moving it to another thread moves that exclusive ownership; the Slab itself is kept alive by an Arc
// in every strategy that hands these out.
unsafe impl Send for RawBuf {}

/// `n` pre-made buffers in one anonymous mapping, every page faulted in. Kept alive (by an `Arc`) as long as any
/// strategy that hands out its buffers.
#[derive(Debug)]
pub struct Slab {
    _map: memmap2::MmapMut,
}

impl Slab {
    /// Maps and faults in `n` buffers; returns the slab and a token for each buffer, once each.
    pub fn new(n: usize) -> (Arc<Slab>, Vec<RawBuf>) {
        let mut map = memmap2::MmapMut::map_anon(n * BUF_SIZE).expect("mmap slab");
        for page in map.chunks_mut(ALIGN) {
            page[0] = 1;
        }
        let base = map.as_mut_ptr();
        let mut bufs = Vec::with_capacity(n);
        bufs.extend(
            (0..n)
                .map(|i| RawBuf(NonNull::new(base.wrapping_add(i * BUF_SIZE)).expect("non-null"))),
        );
        (Arc::new(Slab { _map: map }), bufs)
    }
}

/// The floor: this thread's own stack of pre-made buffers. Pop, touch, push; no allocator, no sharing.
#[derive(Debug)]
pub struct Floor {
    stack: Vec<RawBuf>,
    _slab: Arc<Slab>,
}

impl Floor {
    /// A stack of `n` fresh pre-made buffers, owned by whoever holds this value (one per thread).
    pub fn new(n: usize) -> Floor {
        let (slab, stack) = Slab::new(n);
        Floor { stack, _slab: slab }
    }
}

impl Strategy for Floor {
    type Buf = RawBuf;
    #[inline(always)]
    fn acquire(&mut self) -> RawBuf {
        self.stack.pop().expect("floor stack empty")
    }
    #[inline(always)]
    fn release(&mut self, buf: RawBuf) {
        self.stack.push(buf);
    }
    #[inline(always)]
    fn ptr(buf: &mut RawBuf) -> *mut u8 {
        buf.0.as_ptr()
    }
}

/// A shared lock-free FIFO (`crossbeam_queue::ArrayQueue`) of pre-made buffers: the pool's freelist (until issue
/// #17) without the pool around it.
#[derive(Debug, Clone)]
pub struct QueuePool {
    q: Arc<ArrayQueue<RawBuf>>,
    _slab: Arc<Slab>,
}

impl QueuePool {
    /// A queue holding `n` pre-made buffers.
    pub fn new(n: usize) -> QueuePool {
        let (slab, bufs) = Slab::new(n);
        let q = ArrayQueue::new(n);
        for b in bufs {
            q.push(b).expect("queue sized for the slab");
        }
        QueuePool {
            q: Arc::new(q),
            _slab: slab,
        }
    }
}

impl Strategy for QueuePool {
    type Buf = RawBuf;
    #[inline(always)]
    fn acquire(&mut self) -> RawBuf {
        self.q.pop().expect("queue empty")
    }
    #[inline(always)]
    fn release(&mut self, buf: RawBuf) {
        let pushed = self.q.push(buf);
        debug_assert!(pushed.is_ok());
    }
    #[inline(always)]
    fn ptr(buf: &mut RawBuf) -> *mut u8 {
        buf.0.as_ptr()
    }
}

/// A shared `Mutex<Vec<_>>` (LIFO) of pre-made buffers: the pool everyone writes first.
#[derive(Debug, Clone)]
pub struct MutexPool {
    v: Arc<Mutex<Vec<RawBuf>>>,
    _slab: Arc<Slab>,
}

impl MutexPool {
    /// A stack holding `n` pre-made buffers.
    pub fn new(n: usize) -> MutexPool {
        let (slab, v) = Slab::new(n);
        MutexPool {
            v: Arc::new(Mutex::new(v)),
            _slab: slab,
        }
    }
}

impl Strategy for MutexPool {
    type Buf = RawBuf;
    #[inline(always)]
    fn acquire(&mut self) -> RawBuf {
        self.v.lock().unwrap().pop().expect("mutex pool empty")
    }
    #[inline(always)]
    fn release(&mut self, buf: RawBuf) {
        self.v.lock().unwrap().push(buf);
    }
    #[inline(always)]
    fn ptr(buf: &mut RawBuf) -> *mut u8 {
        buf.0.as_ptr()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Allocators.

/// A buffer from one of the allocator baselines, freed by the same allocator.
#[derive(Debug)]
pub struct HeapBuf(NonNull<u8>);

// SAFETY: a HeapBuf uniquely owns its allocation (it is created by one alloc call and consumed by one free), and
// all three allocators used here accept a free from a thread other than the allocating one.
unsafe impl Send for HeapBuf {}

/// glibc `posix_memalign(4096, 8192)` / `free`. Unix-only.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Memalign;

#[cfg(unix)]
impl Strategy for Memalign {
    type Buf = HeapBuf;
    #[inline(always)]
    fn acquire(&mut self) -> HeapBuf {
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: `p` is a valid out-pointer; ALIGN is a power of two and a multiple of size_of::<*mut c_void>().
        let rc = unsafe { libc::posix_memalign(&mut p, ALIGN, BUF_SIZE) };
        assert_eq!(rc, 0, "posix_memalign failed");
        HeapBuf(NonNull::new(p.cast()).expect("non-null on success"))
    }
    #[inline(always)]
    fn release(&mut self, buf: HeapBuf) {
        // SAFETY: the pointer came from posix_memalign above and is freed exactly once (HeapBuf is consumed).
        unsafe { libc::free(buf.0.as_ptr().cast()) }
    }
    #[inline(always)]
    fn ptr(buf: &mut HeapBuf) -> *mut u8 {
        buf.0.as_ptr()
    }
}

/// `std::alloc::alloc` / `dealloc` with `Layout(8192, 4096)`: Rust's `System` allocator (the default global
/// allocator here), which calls glibc's `posix_memalign` for over-aligned layouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdAligned;

impl Strategy for StdAligned {
    type Buf = HeapBuf;
    #[inline(always)]
    fn acquire(&mut self) -> HeapBuf {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout()) };
        HeapBuf(NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout())))
    }
    #[inline(always)]
    fn release(&mut self, buf: HeapBuf) {
        // SAFETY: the pointer came from std::alloc::alloc with this same layout and is freed exactly once.
        unsafe { std::alloc::dealloc(buf.0.as_ptr(), layout()) }
    }
    #[inline(always)]
    fn ptr(buf: &mut HeapBuf) -> *mut u8 {
        buf.0.as_ptr()
    }
}

/// jemalloc (tikv-jemallocator, prefixed symbols) called directly as a `GlobalAlloc` value, not installed as the
/// global allocator, so that every other allocation in the process stays on glibc. Unix-only, like its
/// dev-dependency.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Jemalloc;

#[cfg(unix)]
impl Strategy for Jemalloc {
    type Buf = HeapBuf;
    #[inline(always)]
    fn acquire(&mut self) -> HeapBuf {
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { tikv_jemallocator::Jemalloc.alloc(layout()) };
        HeapBuf(NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout())))
    }
    #[inline(always)]
    fn release(&mut self, buf: HeapBuf) {
        // SAFETY: the pointer came from Jemalloc.alloc with this same layout and is freed exactly once.
        unsafe { tikv_jemallocator::Jemalloc.dealloc(buf.0.as_ptr(), layout()) }
    }
    #[inline(always)]
    fn ptr(buf: &mut HeapBuf) -> *mut u8 {
        buf.0.as_ptr()
    }
}

/// One anonymous mapping per buffer (`mmap` on acquire, `munmap` on release): what the pool's overflow path does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mmap;

impl Strategy for Mmap {
    type Buf = memmap2::MmapMut;
    #[inline(always)]
    fn acquire(&mut self) -> memmap2::MmapMut {
        memmap2::MmapMut::map_anon(BUF_SIZE).expect("mmap")
    }
    #[inline(always)]
    fn release(&mut self, buf: memmap2::MmapMut) {
        drop(buf);
    }
    #[inline(always)]
    fn ptr(buf: &mut memmap2::MmapMut) -> *mut u8 {
        buf.as_mut_ptr()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The pool.

impl Strategy for PagePool {
    type Buf = AlignedBuf;
    #[inline(always)]
    fn acquire(&mut self) -> AlignedBuf {
        PagePool::acquire(self).expect("pool acquire")
    }
    #[inline(always)]
    fn release(&mut self, buf: AlignedBuf) {
        drop(buf);
    }
    #[inline(always)]
    fn ptr(buf: &mut AlignedBuf) -> *mut u8 {
        buf.as_mut_ptr()
    }
}

/// The pool every group measures: 8 KiB buffers, `capacity` of them, mapped and faulted in at build, with the
/// default per-thread cache.
pub fn prealloc_pool(capacity: usize) -> PagePool {
    PagePool::builder()
        .buf_size(BUF_SIZE)
        .capacity(capacity)
        .overflow(OverflowPolicy::Map)
        .prealloc(true)
        .build()
        .expect("build pool")
}

/// As [`prealloc_pool`] without per-thread caches (`thread_cache(0)`): every acquire and release goes to the
/// shared lock-free freelist.
pub fn prealloc_pool_nocache(capacity: usize) -> PagePool {
    PagePool::builder()
        .buf_size(BUF_SIZE)
        .capacity(capacity)
        .overflow(OverflowPolicy::Map)
        .prealloc(true)
        .thread_cache(0)
        .build()
        .expect("build pool")
}

/// An exhausted pool: capacity 1 with that one buffer held by the returned `AlignedBuf`, overflow by mapping,
/// with the given `overflow_decay` (`Duration::ZERO`: every overflow buffer mapped and unmapped).
pub fn exhausted_pool(decay: std::time::Duration) -> (PagePool, AlignedBuf) {
    let pool = PagePool::builder()
        .buf_size(BUF_SIZE)
        .capacity(1)
        .overflow(OverflowPolicy::Map)
        .overflow_decay(decay)
        .build()
        .expect("build pool");
    let held = pool.acquire().expect("the one pooled buffer");
    assert!(!held.is_overflow());
    (pool, held)
}

/// A pool of `capacity` buffers brought to its steady state the way a long-running process gets there: not
/// preallocated, but every buffer acquired once (mapping every chunk), touched when `touch_all`, then all
/// released. With `touch_all` one page per buffer becomes resident (4 KiB x capacity). `thread_cache`: `None`
/// for the default per-thread cache, `Some(n)` to set it.
pub fn warmed_pool(capacity: usize, touch_all: bool, thread_cache: Option<usize>) -> PagePool {
    let mut builder = PagePool::builder()
        .buf_size(BUF_SIZE)
        .capacity(capacity)
        .overflow(OverflowPolicy::Fail);
    if let Some(n) = thread_cache {
        builder = builder.thread_cache(n);
    }
    let pool = builder.build().expect("build pool");
    let mut held = Vec::with_capacity(capacity);
    for _ in 0..capacity {
        let mut b = pool.acquire().expect("within capacity");
        if touch_all {
            touch(b.as_mut_ptr());
        }
        held.push(b);
    }
    drop(held);
    assert_eq!(pool.stats().in_use, 0);
    pool
}

/// Re-orders an idle pool's freelist at random, as a long run of releases in arbitrary order leaves it: takes
/// every buffer, then releases them in a shuffled order (Fisher-Yates with a fixed-seed xorshift).
pub fn shuffle_freelist(pool: &PagePool) {
    let capacity = pool.capacity();
    let mut held: Vec<AlignedBuf> = (0..capacity)
        .map(|_| pool.acquire().expect("idle pool"))
        .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..held.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        held.swap(i, (x % (i as u64 + 1)) as usize);
    }
    drop(held);
    assert_eq!(pool.stats().in_use, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-threaded driver.

/// Runs `iters` acquire+touch+release cycles split over `threads` threads, each with its own handle from `make`
/// (built before the clock starts), and returns the wall time from the first thread's start to the last thread's
/// end. Each thread reads the clock itself, right after the common start line and right after its last cycle, so
/// a measuring thread that is descheduled (threads > cores) cannot shorten or stretch the interval.
pub fn run_threads<S, F>(threads: usize, iters: u64, make: F) -> Duration
where
    S: Strategy,
    F: Fn() -> S + Sync,
{
    let start_line = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let share = iters / threads as u64 + u64::from(t < iters % threads as u64);
                let (make, start_line) = (&make, &start_line);
                scope.spawn(move || {
                    let mut s = make();
                    start_line.wait();
                    let start = Instant::now();
                    for _ in 0..share {
                        cycle(&mut s);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    last - first
}
