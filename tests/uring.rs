//! io_uring registered buffers (feature `io-uring`): `READ_FIXED` into pool buffers registered with
//! `pool.iovecs()`, checksums verified, for awkward file sizes. Where the kernel refuses `io_uring_setup`
//! (seccomp, `kernel.io_uring_disabled`), each test prints `SKIPPED: <name>: io_uring_setup refused: <err>`.
#![cfg(all(feature = "io-uring", target_os = "linux"))]

mod common;
#[path = "../examples/dio_common/mod.rs"]
mod dio_common;

use dio_common::{fill_pattern, Checksum};
use io_uring::IoUring;
use pagepool::PagePool;
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
