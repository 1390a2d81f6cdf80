//! Pool buffers as the buffers of io_uring runtimes (features `tokio-uring`, `monoio`): O_DIRECT reads and
//! writes through each runtime's own file API, on files in Cargo's scratch directory (`target/tmp`, which must
//! be on a block-device file system: the tests fail on tmpfs rather than test nothing).
//!
//! Where the kernel refuses `io_uring_setup` (seccomp, `kernel.io_uring_disabled`), each runtime test prints
//! `SKIPPED: <name>: io_uring_setup refused: <err>` and returns; nothing else skips.
#![cfg(all(target_os = "linux", any(feature = "tokio-uring", feature = "monoio")))]

#[path = "../examples/dio_common/mod.rs"]
mod dio_common;

use dio_common::fill_pattern;
use pagepool::{AlignedBuf, PagePool};
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TMPFS_MAGIC: u32 = 0x0102_1994;
/// The pool's buffers: 16 KiB, so the file sizes below end in short reads of several kinds.
const BUF: usize = 16 << 10;

/// `None` (after printing the SKIPPED line) if the kernel refuses `io_uring_setup`: the same probe as
/// tests/uring.rs, a ring of the io-uring crate, so the runtime's own errors are never taken for a refusal.
fn uring_refused(test: &str) -> bool {
    match io_uring::IoUring::new(8) {
        Ok(_) => false,
        Err(e) => {
            println!("SKIPPED: {test}: io_uring_setup refused: {e}");
            true
        }
    }
}

/// The file system magic of `path` (`statfs`).
fn fs_magic(path: &Path) -> u32 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is NUL-terminated and statfs writes one struct statfs into the buffer we own.
    let r = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    assert_eq!(r, 0, "statfs {path:?}: {}", io::Error::last_os_error());
    // SAFETY: zero-initialised plain integers, filled in by a successful statfs.
    unsafe { st.assume_init() }.f_type as u32
}

/// A fresh directory for one test under `target/tmp`, on the repository's (block-device) file system.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("runtimes-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert_ne!(
        fs_magic(&dir),
        TMPFS_MAGIC,
        "{dir:?} is on tmpfs, which has no direct I/O: run the tests from a checkout on a disk"
    );
    dir
}

/// Writes `len` bytes of a seeded pattern to `path` (buffered) and returns them.
fn write_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    fill_pattern(&mut data, seed);
    std::fs::write(path, &data).unwrap();
    data
}

/// A pool whose buffers meet `path`'s O_DIRECT requirements, `BUF` bytes each.
fn dio_pool(path: &Path, capacity: usize) -> PagePool {
    PagePool::builder()
        .buf_size(BUF)
        .capacity(capacity)
        .for_direct_io(&File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
}

/// File sizes: empty, shorter than a block, a block and a bit, exactly one and two buffers, and a short tail
/// after whole buffers (the final read comes back short).
const SIZES: [usize; 7] = [0, 1, 4097, BUF, 2 * BUF, 3 * BUF + 4096 + 17, 5 * BUF - 1];

/// A test's file `name` in its scratch directory, `len` bytes of the pattern seeded `seed` (returned), and a
/// pool of `capacity` buffers for it; `None` (after the SKIPPED line) where io_uring is refused.
fn dio_file(
    test: &str,
    name: &str,
    len: usize,
    seed: u64,
    capacity: usize,
) -> Option<(PathBuf, Vec<u8>, PagePool)> {
    if uring_refused(test) {
        return None;
    }
    let path = scratch(test).join(name);
    let data = write_file(&path, len, seed);
    let pool = dio_pool(&path, capacity);
    Some((path, data, pool))
}

/// A buffer from `pool` filled with the pattern seeded `seed`, and a copy of its bytes.
fn filled_buf(pool: &PagePool, seed: u64) -> (AlignedBuf, Vec<u8>) {
    let mut buf = pool.acquire().unwrap();
    fill_pattern(&mut buf, seed);
    let expect = buf.to_vec();
    (buf, expect)
}

/// Reads every file of `SIZES` (seeds from `seed`) with `read_all` and checks the bytes, the reads and the pool.
fn check_reads_into_pool_buffers(
    test: &str,
    seed: u64,
    read_all: impl Fn(&Path, &PagePool) -> io::Result<(Vec<u8>, Vec<(u64, usize)>)>,
) {
    if uring_refused(test) {
        return;
    }
    let dir = scratch(test);
    for (i, &len) in SIZES.iter().enumerate() {
        let path = dir.join(format!("f-{len}"));
        let data = write_file(&path, len, seed + i as u64);
        let pool = dio_pool(&path, 4);
        let (got, reads) = read_all(&path, &pool).unwrap();
        assert!(got == data, "size {len}: content differs");
        // One read per whole buffer, then the short one (0 bytes when the size is a multiple).
        assert_eq!(reads.len(), len / BUF + 1, "size {len}: {reads:?}");
        assert_eq!(reads.last().unwrap().1, len % BUF, "size {len}");
        let s = pool.stats();
        assert_eq!((s.in_use, s.overflow_maps), (0, 0), "size {len}: {s:?}");
    }
}

/// One read of `read_all`: `n` bytes into `buf` (of `total` bytes' room) at `offset`, checked and appended to
/// `out` and `reads`. Returns whether the read came back short (the end of the file).
fn record_read(
    buf: &AlignedBuf,
    n: usize,
    total: usize,
    offset: &mut u64,
    out: &mut Vec<u8>,
    reads: &mut Vec<(u64, usize)>,
) -> bool {
    assert!(n <= total);
    assert_eq!(buf.len(), n, "len() after a read of {n} bytes at {offset}");
    out.extend_from_slice(buf);
    reads.push((*offset, n));
    *offset += n as u64;
    n < total
}

/// Polls `fut` once (submitting its operation), asserting that it is pending, and drops it in flight.
async fn submit_then_drop<F: Future>(fut: F) {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;
    drop(fut);
}

/// Reads through `read_at` (a runtime's read of a fresh pool buffer at an offset, dropped after) until the
/// cancelled read's buffer has gone home; at most 30 seconds.
async fn drive_until_home<F, Fut>(pool: &PagePool, mut read_at: F) -> io::Result<()>
where
    F: FnMut(AlignedBuf, u64) -> Fut,
    Fut: Future<Output = io::Result<usize>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.stats().in_use != 0 {
        assert!(
            Instant::now() < deadline,
            "the cancelled read never completed"
        );
        assert_eq!(read_at(pool.acquire()?, BUF as u64).await?, BUF);
    }
    Ok(())
}

#[cfg(feature = "tokio-uring")]
mod tokio_uring_rt {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;
    use tokio_uring::buf::{IoBuf, IoBufMut};

    /// Opens `path` with O_DIRECT through tokio-uring, for writing or reading.
    async fn open_direct(path: &Path, write: bool) -> io::Result<tokio_uring::fs::File> {
        tokio_uring::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .await
    }

    /// Reads the whole of `path` with O_DIRECT through tokio-uring into fresh pool buffers, one read per buffer,
    /// and returns each read's (offset, bytes, buffer length after the read).
    async fn read_all(path: &Path, pool: &PagePool) -> io::Result<(Vec<u8>, Vec<(u64, usize)>)> {
        let file = open_direct(path, false).await?;
        let mut out = Vec::new();
        let mut reads = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut buf = pool.acquire()?;
            // tokio-uring's `set_init` only raises the length: empty the (full) buffer so that `len()` becomes
            // the bytes read.
            buf.clear();
            let total = buf.bytes_total();
            assert_eq!((total, buf.bytes_init()), (buf.capacity(), 0));
            let (res, buf) = file.read_at(buf, offset).await;
            if record_read(&buf, res?, total, &mut offset, &mut out, &mut reads) {
                break;
            }
        }
        file.close().await?;
        Ok((out, reads))
    }

    #[test]
    fn tokio_uring_o_direct_reads_into_pool_buffers() {
        check_reads_into_pool_buffers(
            "tokio_uring_o_direct_reads_into_pool_buffers",
            100,
            |path, pool| tokio_uring::start(read_all(path, pool)),
        );
    }

    #[test]
    fn tokio_uring_o_direct_write_from_pool_buffer() {
        let Some((path, _, pool)) = dio_file(
            "tokio_uring_o_direct_write_from_pool_buffer",
            "out",
            0,
            0,
            2,
        ) else {
            return;
        };
        let (buf, expect) = filled_buf(&pool, 7);
        let written = tokio_uring::start(async {
            let file = open_direct(&path, true).await?;
            assert_eq!(buf.bytes_init(), BUF);
            let (res, buf) = file.write_at(buf, 0).submit().await;
            file.close().await?;
            drop(buf);
            res
        })
        .unwrap();
        assert_eq!(written, BUF);
        assert!(std::fs::read(&path).unwrap() == expect);
        assert_eq!(pool.stats().in_use, 0);
    }

    /// One block and a short tail (8192 + 17 bytes) read into one buffer in two reads through tokio-uring's
    /// slices: the length follows each read. Then a full buffer (as `acquire` returns it) read short keeps its
    /// length: tokio-uring's `set_init` is a high-water mark.
    #[test]
    fn tokio_uring_len_tracks_reads_through_slices() {
        use tokio_uring::buf::BoundedBuf;
        let Some((path, data, pool)) = dio_file(
            "tokio_uring_len_tracks_reads_through_slices",
            "f",
            8192 + 17,
            300,
            2,
        ) else {
            return;
        };
        tokio_uring::start(async {
            let file = open_direct(&path, false).await?;
            let mut buf = pool.acquire()?;
            buf.clear();
            let (res, slice) = file.read_at(buf.slice(..8192), 0).await;
            assert_eq!(res?, 8192);
            let buf = slice.into_inner();
            assert_eq!(buf.len(), 8192);
            // The second read starts at `len()` and appends.
            let (res, slice) = file.read_at(buf.slice(8192..), 8192).await;
            assert_eq!(res?, 17);
            let buf = slice.into_inner();
            assert_eq!((buf.len(), buf.capacity()), (8192 + 17, BUF));
            assert!(buf[..] == data[..]);

            let full = pool.acquire()?;
            let (res, full) = file.read_at(full, 0).await;
            assert_eq!(res?, data.len());
            assert_eq!(full.len(), full.capacity());
            assert!(full[..data.len()] == data[..]);
            file.close().await
        })
        .unwrap();
        assert_eq!(pool.stats().in_use, 0);
    }

    /// A frozen buffer's halves written by two O_DIRECT writes from two handles (`FrozenBuf` is an `IoBuf`);
    /// the buffer goes home with the last handle.
    #[test]
    fn tokio_uring_o_direct_write_from_frozen_halves() {
        let Some((path, _, pool)) = dio_file(
            "tokio_uring_o_direct_write_from_frozen_halves",
            "out",
            0,
            0,
            2,
        ) else {
            return;
        };
        let (buf, expect) = filled_buf(&pool, 11);
        let frozen = buf.freeze();
        let half = BUF / 2;
        let (lo, hi) = (frozen.slice(..half), frozen.slice(half..));
        assert_eq!(frozen.handles(), 3);
        tokio_uring::start(async {
            let file = open_direct(&path, true).await?;
            assert_eq!((hi.bytes_init(), hi.bytes_total()), (half, half));
            assert_eq!(lo.stable_ptr(), frozen.as_ptr());
            let (r_hi, hi) = file.write_at(hi, half as u64).submit().await;
            let (r_lo, lo) = file.write_at(lo, 0).submit().await;
            assert_eq!((r_lo?, r_hi?), (half, half));
            drop((lo, hi));
            file.close().await
        })
        .unwrap();
        assert!(std::fs::read(&path).unwrap() == expect);
        assert_eq!(frozen.handles(), 1);
        assert_eq!(pool.stats().in_use, 1);
        drop(frozen);
        assert_eq!(pool.stats().in_use, 0);
    }

    /// A read whose future is dropped after submission: the runtime keeps the buffer until the kernel has
    /// completed the read (it is not home, so no one else can be handed memory the kernel is writing), then
    /// drops it, and it goes home.
    #[test]
    fn tokio_uring_cancelled_read_keeps_the_buffer_until_completion() {
        let Some((path, _, pool)) = dio_file(
            "tokio_uring_cancelled_read_keeps_the_buffer_until_completion",
            "f",
            4 * BUF,
            500,
            2,
        ) else {
            return;
        };
        tokio_uring::start(async {
            let file = open_direct(&path, false).await?;
            // One poll submits the read; then the future is dropped with the read in flight.
            submit_then_drop(file.read_at(pool.acquire()?, 0)).await;
            // Nothing has run the driver since: the completion cannot have been reaped.
            assert_eq!(pool.stats().in_use, 1, "the runtime must hold the buffer");
            // Other reads run the driver, which reaps the cancelled read's completion and drops its buffer.
            drive_until_home(&pool, |buf, offset| {
                let read = file.read_at(buf, offset);
                async move { read.await.0 }
            })
            .await?;
            file.close().await
        })
        .unwrap();
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn tokio_uring_set_init_raises_only() {
        let pool = PagePool::builder().capacity(1).build().unwrap();
        let mut buf = pool.acquire().unwrap();
        buf.clear();
        // SAFETY: 100 <= capacity, and a pool buffer's bytes are always initialised.
        unsafe { buf.set_init(100) };
        assert_eq!(buf.bytes_init(), 100);
        // SAFETY: as above.
        unsafe { buf.set_init(40) };
        assert_eq!(
            buf.len(),
            100,
            "tokio-uring's set_init never lowers the length"
        );
        assert_eq!(buf.bytes_total(), pool.buf_size());
    }

    #[test]
    fn tokio_uring_pointer_is_the_buffer_start_and_survives_moves() {
        let pool = PagePool::builder().capacity(2).build().unwrap();
        let mut buf = pool.acquire().unwrap();
        let p = buf.stable_mut_ptr() as usize;
        assert_eq!(p, buf.as_ptr() as usize);
        assert_eq!(p % pagepool::page_size(), 0);
        let moved = Box::new(buf); // a move to the heap, as a runtime's op state does
        assert_eq!(moved.stable_ptr() as usize, p);
        let back = *moved;
        assert_eq!(back.stable_ptr() as usize, p);
        assert!(back.bytes_init() <= back.bytes_total());
    }
}

#[cfg(feature = "monoio")]
mod monoio_rt {
    use super::*;
    use monoio::buf::{IoBuf, IoBufMut};
    use monoio::{IoUringDriver, RuntimeBuilder};
    use pagepool::FrozenBuf;
    use std::os::unix::fs::OpenOptionsExt;

    /// Runs `fut` on a monoio runtime with the io_uring driver. Only called after `uring_refused`, so a failure
    /// to build is a real error.
    fn block_on<F: Future>(fut: F) -> F::Output {
        RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(64)
            .build()
            .expect("monoio io_uring runtime")
            .block_on(fut)
    }

    /// Opens `path` with O_DIRECT through monoio, for writing or reading.
    async fn open_direct(path: &Path, write: bool) -> io::Result<monoio::fs::File> {
        monoio::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .await
    }

    async fn read_all(path: &Path, pool: &PagePool) -> io::Result<(Vec<u8>, Vec<(u64, usize)>)> {
        let file = open_direct(path, false).await?;
        let mut out = Vec::new();
        let mut reads = Vec::new();
        let mut offset = 0u64;
        loop {
            // Full from `acquire`: monoio's `set_init` sets the length to the bytes read, shorter or not.
            let mut buf = pool.acquire()?;
            let total = buf.bytes_total();
            assert_eq!((total, buf.bytes_init()), (buf.capacity(), buf.capacity()));
            let (res, buf) = file.read_at(buf, offset).await;
            if record_read(&buf, res?, total, &mut offset, &mut out, &mut reads) {
                break;
            }
        }
        file.close().await?;
        Ok((out, reads))
    }

    #[test]
    fn monoio_o_direct_reads_into_pool_buffers() {
        check_reads_into_pool_buffers(
            "monoio_o_direct_reads_into_pool_buffers",
            200,
            |path, pool| block_on(read_all(path, pool)),
        );
    }

    #[test]
    fn monoio_o_direct_write_from_pool_buffer() {
        let Some((path, _, pool)) =
            dio_file("monoio_o_direct_write_from_pool_buffer", "out", 0, 0, 2)
        else {
            return;
        };
        let (buf, expect) = filled_buf(&pool, 9);
        block_on(async {
            let file = open_direct(&path, true).await?;
            assert_eq!(buf.bytes_init(), BUF);
            let (res, buf) = file.write_all_at(buf, 0).await;
            file.close().await?;
            drop(buf);
            res
        })
        .unwrap();
        assert!(std::fs::read(&path).unwrap() == expect);
        assert_eq!(pool.stats().in_use, 0);
    }

    /// One block and a short tail (8192 + 17 bytes) read into one buffer in two reads through monoio's
    /// `slice_mut`: the length follows each read.
    #[test]
    fn monoio_len_tracks_reads_through_slices() {
        let Some((path, data, pool)) = dio_file(
            "monoio_len_tracks_reads_through_slices",
            "f",
            8192 + 17,
            400,
            2,
        ) else {
            return;
        };
        block_on(async {
            let file = open_direct(&path, false).await?;
            let mut buf = pool.acquire()?;
            buf.clear();
            let (res, slice) = file.read_at(buf.slice_mut(..8192), 0).await;
            assert_eq!(res?, 8192);
            let buf = slice.into_inner();
            assert_eq!(buf.len(), 8192);
            let (res, slice) = file.read_at(buf.slice_mut(8192..), 8192).await;
            assert_eq!(res?, 17);
            let buf = slice.into_inner();
            assert_eq!((buf.len(), buf.capacity()), (8192 + 17, BUF));
            assert!(buf[..] == data[..]);
            file.close().await
        })
        .unwrap();
        assert_eq!(pool.stats().in_use, 0);
    }

    /// A frozen buffer's halves written by two O_DIRECT writes from two handles (`FrozenBuf` is an `IoBuf`);
    /// the buffer goes home with the last handle.
    #[test]
    fn monoio_o_direct_write_from_frozen_halves() {
        let Some((path, _, pool)) =
            dio_file("monoio_o_direct_write_from_frozen_halves", "out", 0, 0, 2)
        else {
            return;
        };
        let (buf, expect) = filled_buf(&pool, 13);
        let frozen = buf.freeze();
        let half = BUF / 2;
        // `FrozenBuf::slice` by path: with `monoio::buf::IoBuf` in scope, `frozen.slice(..)` would pick the
        // trait's by-value `slice` (a `monoio::buf::Slice`) before the inherent `&self` one.
        let (lo, hi) = (
            FrozenBuf::slice(&frozen, ..half),
            FrozenBuf::slice(&frozen, half..),
        );
        assert_eq!(frozen.handles(), 3);
        block_on(async {
            let file = open_direct(&path, true).await?;
            assert_eq!(hi.bytes_init(), half);
            assert_eq!(lo.read_ptr(), frozen.as_ptr());
            let (r_hi, hi) = file.write_all_at(hi, half as u64).await;
            let (r_lo, lo) = file.write_all_at(lo, 0).await;
            r_hi?;
            r_lo?;
            drop((lo, hi));
            file.close().await
        })
        .unwrap();
        assert!(std::fs::read(&path).unwrap() == expect);
        assert_eq!(frozen.handles(), 1);
        drop(frozen);
        assert_eq!(pool.stats().in_use, 0);
    }

    /// A read whose future is dropped after submission: the runtime keeps the buffer until the kernel has
    /// completed the read, then drops it, and it goes home.
    #[test]
    fn monoio_cancelled_read_keeps_the_buffer_until_completion() {
        let Some((path, _, pool)) = dio_file(
            "monoio_cancelled_read_keeps_the_buffer_until_completion",
            "f",
            4 * BUF,
            600,
            2,
        ) else {
            return;
        };
        block_on(async {
            let file = open_direct(&path, false).await?;
            submit_then_drop(file.read_at(pool.acquire()?, 0)).await;
            assert_eq!(pool.stats().in_use, 1, "the runtime must hold the buffer");
            drive_until_home(&pool, |buf, offset| {
                let read = file.read_at(buf, offset);
                async move { read.await.0 }
            })
            .await?;
            file.close().await
        })
        .unwrap();
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn monoio_set_init_sets_exactly() {
        let pool = PagePool::builder().capacity(1).build().unwrap();
        let mut buf = pool.acquire().unwrap();
        assert_eq!(buf.bytes_init(), pool.buf_size());
        // SAFETY: 100 <= capacity, and a pool buffer's bytes are always initialised.
        unsafe { buf.set_init(100) };
        assert_eq!(buf.len(), 100, "monoio's set_init lowers the length too");
        // SAFETY: as above.
        unsafe { buf.set_init(300) };
        assert_eq!(buf.len(), 300);
        assert_eq!(buf.bytes_total(), pool.buf_size());
    }

    #[test]
    fn monoio_pointer_is_the_buffer_start_and_survives_moves() {
        let pool = PagePool::builder().capacity(2).build().unwrap();
        let mut buf = pool.acquire().unwrap();
        let p = buf.write_ptr() as usize;
        assert_eq!(p, buf.read_ptr() as usize);
        assert_eq!(p % pagepool::page_size(), 0);
        let mut pinned = Box::pin(buf); // what monoio does with an op's buffer
        assert_eq!(pinned.write_ptr() as usize, p);
        let back = std::pin::Pin::into_inner(pinned);
        assert_eq!(back.read_ptr() as usize, p);
    }
}
