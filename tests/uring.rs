//! io_uring registered buffers (feature `io-uring`): `READ_FIXED` into pool buffers registered with
//! `pool.iovecs()`, checksums verified, for awkward file sizes; registered buffers that stay coherent through
//! `trim()`, thread caches and idle trimming (`READ_FIXED` and `WRITE_FIXED` on every buffer); `iovecs` under a
//! `max_bytes` below the capacity (a typed error, under a watchdog). Where the kernel refuses `io_uring_setup`
//! (seccomp, `kernel.io_uring_disabled`), each ring test prints `SKIPPED: <name>: io_uring_setup refused: <err>`.
#![cfg(all(feature = "io-uring", target_os = "linux"))]

mod common;
#[path = "../examples/dio_common/mod.rs"]
mod dio_common;

use dio_common::{fill_pattern, Checksum};
use io_uring::IoUring;
use pagepool::{OverflowPolicy, PagePool, RegisterError};
use std::fs::File;
use std::path::{Path, PathBuf};

fn ring(test: &str) -> Option<IoUring> {
    match IoUring::new(8) {
        Ok(r) => Some(r),
        Err(e) => {
            println!("SKIPPED: {test}: io_uring_setup refused: {e}");
            None
        }
    }
}

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("uring-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn read_fixed_into_registered_pool_buffers() {
    let Some(mut ring) = ring("read_fixed_into_registered_pool_buffers") else {
        return;
    };
    let dir = scratch("read_fixed");
    for (i, len) in [0usize, 1, 4095, 4096, 4097, (1 << 20) + 3]
        .into_iter()
        .enumerate()
    {
        let path = dir.join(format!("f-{len}"));
        let mut data = vec![0u8; len];
        fill_pattern(&mut data, 40 + i as u64);
        std::fs::write(&path, &data).unwrap();
        let pool = PagePool::builder()
            .buf_size(64 << 10)
            .capacity(8)
            .for_direct_io(&File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let r = dio_common::uring::read_fixed(&mut ring, &path, &pool, 4).unwrap();
        let mut sum = Checksum::default();
        sum.update(&data);
        assert_eq!(
            (r.bytes, r.checksum),
            (len as u64, sum.finish()),
            "size {len}"
        );
        assert_eq!(
            r.requests,
            (len as u64).div_ceil(pool.buf_size() as u64),
            "size {len}"
        );
        let s = pool.stats();
        assert_eq!((s.overflow_maps, s.in_use), (0, 0), "size {len}: {s:?}");
    }
}

#[test]
fn unregistered_index_is_refused_by_the_kernel() {
    // Proves the index matters: READ_FIXED naming a buffer index past the registration fails (EFAULT/EINVAL),
    // so a passing read above really used the registered buffers.
    let Some(mut ring) = ring("unregistered_index_is_refused_by_the_kernel") else {
        return;
    };
    let dir = scratch("bad_index");
    let path = dir.join("f");
    std::fs::write(&path, vec![7u8; 8192]).unwrap();
    let file = dio_common::open_direct_read(&path).unwrap();
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(2)
        .for_direct_io(&file)
        .unwrap()
        .build()
        .unwrap();
    let iovecs = pool.iovecs().unwrap();
    // SAFETY: the pool outlives the registration (unregistered at the end of the test).
    unsafe { ring.submitter().register_buffers(&iovecs).unwrap() };
    let mut buf = pool.acquire().unwrap();
    let fd = io_uring::types::Fd(std::os::unix::io::AsRawFd::as_raw_fd(&file));
    let mut res = Vec::new();
    for index in [buf.index().unwrap(), 2] {
        let e =
            io_uring::opcode::ReadFixed::new(fd, buf.as_mut_ptr(), buf.len() as u32, index).build();
        // SAFETY: `buf` lives until the completion is reaped right below.
        unsafe { ring.submission().push(&e).unwrap() };
        ring.submit_and_wait(1).unwrap();
        res.push(ring.completion().next().unwrap().result());
    }
    ring.submitter().unregister_buffers().unwrap();
    assert_eq!(res[0], 8192, "{res:?}");
    assert!(
        res[1] == -libc::EFAULT || res[1] == -libc::EINVAL,
        "{res:?}"
    );
    assert!(buf[..8192].iter().all(|&b| b == 7));
}

#[test]
fn iovecs_warn_when_the_pool_exceeds_rlimit_memlock() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit to a live local.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    assert_eq!(r, 0);
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur > 256 << 20 {
        println!(
            "SKIPPED: iovecs_warn_when_the_pool_exceeds_rlimit_memlock: RLIMIT_MEMLOCK is {} bytes",
            lim.rlim_cur
        );
        return;
    }
    let limit = lim.rlim_cur as usize;
    let rec = common::Recorder::default();
    let warned = |capacity: usize| {
        let pool = PagePool::builder().capacity(capacity).build().unwrap();
        rec.record(|| pool.iovecs().unwrap());
        rec.events().iter().any(|e| {
            e.target == "pagepool"
                && e.level == tracing::Level::WARN
                && e.message.contains("RLIMIT_MEMLOCK")
        })
    };
    let page = pagepool::page_size();
    assert!(!warned((limit / page).max(1)), "a pool within the limit");
    assert!(warned(limit / page + 1), "a pool one page over the limit");
}

// Registered memory is never discarded (issue #13, item 3). `MADV_DONTNEED` on a registered buffer would give
// the process fresh pages at the same addresses while the kernel keeps the pinned old ones: `READ_FIXED`
// would land where the program never looks, and `WRITE_FIXED` would send what the buffer held before the trim.
// So every test below registers the pool, lets a trim path run, and then checks both directions on every
// buffer with a real ring.

/// Submits `e` and returns its completion's result.
fn run_one(ring: &mut IoUring, e: &io_uring::squeue::Entry) -> i32 {
    // SAFETY: every buffer an entry of these tests names lives until this call returns with its completion.
    unsafe { ring.submission().push(e).unwrap() };
    ring.submit_and_wait(1).unwrap();
    ring.completion().next().unwrap().result()
}

/// Takes every pooled buffer of `pool` (whose buffers are registered with `ring`) and checks that the kernel
/// and the program see the same memory through each one: `READ_FIXED` of known file contents must be what the
/// buffer then holds, and what the program writes into it must be what `WRITE_FIXED` sends. Returns the buffers
/// (all of the pool), so the caller decides when they go back.
fn check_every_buffer(
    ring: &mut IoUring,
    pool: &PagePool,
    dir: &Path,
    seed: u64,
) -> Vec<pagepool::AlignedBuf> {
    use std::os::unix::io::AsRawFd;
    let len = pool.buf_size();
    let n = pool.capacity();
    let src_path = dir.join(format!("src-{seed}"));
    let mut data = vec![0u8; n * len];
    fill_pattern(&mut data, seed);
    std::fs::write(&src_path, &data).unwrap();
    let src = File::open(&src_path).unwrap();
    let dst_path = dir.join(format!("dst-{seed}"));
    let dst = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&dst_path)
        .unwrap();
    let mut held: Vec<_> = (0..n).map(|_| pool.acquire().unwrap()).collect();
    assert!(held.iter().all(|b| !b.is_overflow()));
    held.sort_by_key(|b| b.index().unwrap());
    let mut written = vec![0u8; n * len];
    fill_pattern(&mut written, seed ^ 0xA5A5);
    for (i, buf) in held.iter_mut().enumerate() {
        let index = buf.index().unwrap();
        let at = (i * len) as u64;
        let read = io_uring::opcode::ReadFixed::new(
            io_uring::types::Fd(src.as_raw_fd()),
            buf.as_mut_ptr(),
            len as u32,
            index,
        )
        .offset(at)
        .build();
        assert_eq!(
            run_one(ring, &read),
            len as i32,
            "READ_FIXED, buffer {index}"
        );
        let want = &data[i * len..(i + 1) * len];
        if buf[..] != *want {
            let zeros = buf.iter().filter(|&&b| b == 0).count();
            panic!(
                "buffer {index}: READ_FIXED reported {len} bytes read, but the buffer does not hold them \
                 ({zeros} of {len} bytes are zero): the kernel wrote into pages the program no longer sees"
            );
        }
        buf.copy_from_slice(&written[i * len..(i + 1) * len]);
        let write = io_uring::opcode::WriteFixed::new(
            io_uring::types::Fd(dst.as_raw_fd()),
            buf.as_ptr(),
            len as u32,
            index,
        )
        .offset(at)
        .build();
        assert_eq!(
            run_one(ring, &write),
            len as i32,
            "WRITE_FIXED, buffer {index}"
        );
    }
    let sent = std::fs::read(&dst_path).unwrap();
    for i in 0..n {
        assert!(
            sent[i * len..(i + 1) * len] == written[i * len..(i + 1) * len],
            "buffer {}: WRITE_FIXED sent other bytes than the buffer holds",
            held[i].index().unwrap()
        );
    }
    held
}

/// Registers every buffer of `pool` with `ring`.
fn register(ring: &mut IoUring, pool: &PagePool) {
    let iovecs = pool.iovecs().unwrap();
    // SAFETY: each test unregisters (or drops the ring) before its pool goes.
    unsafe { ring.submitter().register_buffers(&iovecs).unwrap() };
}

#[test]
fn trim_does_not_discard_registered_buffers() {
    let Some(mut ring) = ring("trim_does_not_discard_registered_buffers") else {
        return;
    };
    let dir = scratch("trim_registered");
    let pool = PagePool::builder()
        .buf_size(pagepool::page_size())
        .capacity(8)
        .thread_cache(0)
        .build()
        .unwrap();
    register(&mut ring, &pool);
    // Every buffer idle in the shared pool, with contents: exactly what trim gives back when it may.
    drop(check_every_buffer(&mut ring, &pool, &dir, 1));
    let trimmed = pool.trim();
    drop(check_every_buffer(&mut ring, &pool, &dir, 2));
    ring.submitter().unregister_buffers().unwrap();
    assert_eq!(trimmed, 0, "trim reports that it gave nothing back");
    let s = pool.stats();
    assert_eq!((s.trimmed_bytes, s.in_use, s.idle), (0, 0, 8), "{s:?}");
}

#[test]
fn trim_does_not_discard_registered_buffers_resting_in_thread_caches() {
    let Some(mut ring) = ring("trim_does_not_discard_registered_buffers_resting_in_thread_caches")
    else {
        return;
    };
    let dir = scratch("trim_registered_cached");
    let cap = 32;
    let pool = PagePool::builder()
        .buf_size(pagepool::page_size())
        .capacity(cap)
        .thread_cache(8)
        .build()
        .unwrap();
    register(&mut ring, &pool);
    drop(check_every_buffer(&mut ring, &pool, &dir, 3));
    // Buffers rest in this thread's cache and in another live thread's cache, the rest in the shared pool.
    std::thread::scope(|s| {
        // Made inside the scope: if an assertion below fails, `go` is dropped before the scope joins the
        // other thread, whose `recv` then returns instead of waiting forever.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let other = pool.clone();
        let t = s.spawn(move || {
            drop((0..6).map(|_| other.acquire().unwrap()).collect::<Vec<_>>());
            done.send(()).unwrap();
            if wait.recv().is_ok() {
                // The next pool operation of this thread flushes its cache (the trim epoch moved); its exit
                // flushes what it cached since.
                drop(other.acquire().unwrap());
            }
        });
        finished.recv().unwrap();
        drop((0..6).map(|_| pool.acquire().unwrap()).collect::<Vec<_>>());
        let s = pool.stats();
        assert!(s.cached >= 2, "both threads cache buffers: {s:?}");
        let mut trimmed = pool.trim();
        go.send(()).unwrap();
        t.join().unwrap();
        trimmed += pool.trim(); // what the other thread flushed
        drop(check_every_buffer(&mut ring, &pool, &dir, 4));
        assert_eq!(trimmed, 0);
    });
    ring.submitter().unregister_buffers().unwrap();
    assert_eq!(pool.stats().trimmed_bytes, 0);
}

#[test]
fn idle_trim_does_not_discard_registered_buffers() {
    let Some(mut ring) = ring("idle_trim_does_not_discard_registered_buffers") else {
        return;
    };
    let dir = scratch("idle_trim_registered");
    let period = std::time::Duration::from_millis(20);
    let pool = PagePool::builder()
        .buf_size(pagepool::page_size())
        .capacity(8)
        .thread_cache(0)
        .idle_trim_after(period)
        .build()
        .unwrap();
    register(&mut ring, &pool);
    drop(check_every_buffer(&mut ring, &pool, &dir, 5));
    // Two whole periods with every buffer idle: the explicit check, then the pool's own slow path.
    std::thread::sleep(period * 2);
    let mut trimmed = pool.trim_idle();
    std::thread::sleep(period * 2);
    drop(pool.acquire().unwrap());
    std::thread::sleep(period * 2);
    trimmed += pool.trim_idle();
    drop(check_every_buffer(&mut ring, &pool, &dir, 6));
    ring.submitter().unregister_buffers().unwrap();
    assert_eq!(trimmed, 0);
    assert_eq!(pool.stats().trimmed_bytes, 0);
}

/// A chunk of a pool of 64 KiB buffers: 64 buffers, 4 MiB (`CHUNK_TARGET_BYTES`). What it reserves against
/// `max_bytes`, measured on a one-chunk pool.
fn chunk_reserve() -> usize {
    let probe = PagePool::builder()
        .buf_size(64 << 10)
        .capacity(64)
        .build()
        .unwrap();
    drop(probe.acquire().unwrap());
    assert_eq!(probe.stats().chunks, 1);
    probe.stats().mapped_bytes
}

/// Runs `pool.iovecs()` on a thread of its own and waits for it at most 10 s: a spinning `iovecs` fails the
/// test instead of hanging it (the spinning thread is left behind).
fn iovecs_or_hang(pool: &PagePool) -> Result<Vec<libc::iovec>, pagepool::RegisterError> {
    struct Iovecs(Vec<libc::iovec>);
    // SAFETY: the iovecs are plain addresses and lengths, only compared in these tests.
    unsafe impl Send for Iovecs {}
    let (tx, rx) = std::sync::mpsc::channel();
    let p = pool.clone();
    std::thread::spawn(move || {
        let _ = tx.send(p.iovecs().map(Iovecs));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("iovecs() did not return within 10 s: it spins")
        .map(|v| v.0)
}

#[test]
fn iovecs_over_budget_is_a_typed_error_not_a_hang() {
    let chunk = chunk_reserve();
    // Two chunks of capacity, a budget of one.
    let pool = PagePool::builder()
        .buf_size(64 << 10)
        .capacity(128)
        .max_bytes(chunk)
        .build()
        .unwrap();
    let e = iovecs_or_hang(&pool).unwrap_err();
    assert!(
        matches!(e, RegisterError::OverBudget { max_bytes, needed, capacity: 128 } if max_bytes == chunk && needed == 2 * chunk),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("max_bytes is {chunk} bytes"))
            && msg.contains(&format!("raise max_bytes to at least {}", 2 * chunk))
            && msg.contains("lower capacity"),
        "{msg}"
    );
    assert_eq!(pool.stats().chunks, 0, "refused before mapping anything");
    // The pool still serves within its budget, and still trims: nothing was registered.
    let mut b = pool.acquire().unwrap();
    assert!(!b.is_overflow());
    b.fill(1);
    drop(b);
    assert!(pool.trim() > 0);
}

#[test]
fn iovecs_with_budget_held_by_overflow_buffers_is_a_typed_error_not_a_hang() {
    let chunk = chunk_reserve();
    // The whole capacity (two chunks) fits in the budget, but an overflow buffer holds part of it.
    let pool = PagePool::builder()
        .buf_size(64 << 10)
        .capacity(128)
        .max_bytes(2 * chunk)
        .overflow(OverflowPolicy::Map)
        .build()
        .unwrap();
    let first = pool.acquire().unwrap(); // maps the first chunk
    let big = pool.acquire_len(1 << 20).unwrap(); // larger than any pooled buffer: overflow, budget held
    assert!(big.is_overflow());
    let held = pool.stats().mapped_bytes - chunk;
    let e = iovecs_or_hang(&pool).unwrap_err();
    assert!(
        matches!(e, RegisterError::BudgetHeld { max_bytes, needed, held: h } if max_bytes == 2 * chunk && needed == 2 * chunk && h == held),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("hold {held} bytes")) && msg.contains("max_bytes"),
        "{msg}"
    );
    // Once the overflow buffer is gone, registration succeeds.
    drop(big);
    let iovecs = iovecs_or_hang(&pool).unwrap();
    assert_eq!(iovecs.len(), 128);
    assert_eq!(
        iovecs[first.index().unwrap() as usize].iov_base as *const u8,
        first.as_ptr()
    );
}

#[test]
fn trim_of_a_registered_pool_says_why_it_gives_nothing_back() {
    let rec = common::Recorder::default();
    let pool = PagePool::builder()
        .capacity(16)
        .thread_cache(0)
        .build()
        .unwrap();
    drop(pool.acquire().unwrap());
    let disabled = |e: &common::Event| {
        e.target == "pagepool"
            && e.message
                .contains("trimming is disabled by io_uring registration")
    };
    // Before registration: trimmed, no such event.
    assert!(rec.record(|| pool.trim()) > 0);
    assert!(!rec.events().iter().any(disabled));
    pool.iovecs().unwrap();
    assert_eq!(rec.record(|| pool.trim()), 0);
    let events = rec.events();
    assert_eq!(
        events.iter().filter(|e| disabled(e)).count(),
        1,
        "{events:?}"
    );
    assert!(events
        .iter()
        .filter(|e| disabled(e))
        .all(|e| e.level == tracing::Level::DEBUG));
}
