//! Direct I/O on real files: alignment discovery (`dio::requirements`, `for_direct_io`), O_DIRECT reads and the
//! copier over pool buffers for awkward sizes, and proof that the alignment matters (the kernel refuses a
//! misaligned buffer, length or offset with EINVAL; pool buffers never are refused).
//!
//! Files live in Cargo's per-package scratch directory (`target/tmp`), on the repository's file system. Each
//! test checks with `statfs` that it is a block-device file system (not tmpfs), and reports itself
//! `SKIPPED: <name>: <why>` on stdout otherwise.
#![cfg(target_os = "linux")]

mod common;
#[path = "../examples/dio_common/mod.rs"]
mod dio_common;

use dio_common::{copy, direct_checksum, fill_pattern, open_direct_read, read_full_at, Checksum};
use pagepool::dio::{self, DioAlign, DioSource};
use pagepool::{ConfigError, PagePool};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const TMPFS_MAGIC: u32 = 0x0102_1994;
const EXT4_SUPER_MAGIC: u32 = 0xef53;

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

/// A fresh directory for one test on the repository's file system, or `None` (after printing SKIPPED) if that
/// file system is tmpfs, where there is no direct I/O to test.
fn scratch(test: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("direct_io-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let magic = fs_magic(&dir);
    if magic == TMPFS_MAGIC {
        println!("SKIPPED: {test}: {dir:?} is on tmpfs, which has no direct I/O");
        return None;
    }
    Some(dir)
}

fn write_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    fill_pattern(&mut data, seed);
    std::fs::write(path, &data).unwrap();
    data
}

/// Linux kernel (major, minor) from /proc.
fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next().unwrap().parse().unwrap();
    let minor = it.next().unwrap().parse().unwrap();
    (major, minor)
}

fn direct_pool(file: &File, capacity: usize) -> (PagePool, DioAlign) {
    let align = dio::requirements(file).unwrap();
    let pool = PagePool::builder()
        .buf_size(64 << 10)
        .capacity(capacity)
        .for_direct_io(file)
        .unwrap()
        .build()
        .unwrap();
    (pool, align)
}

#[test]
fn requirements_on_the_repository_file_system() {
    let Some(dir) = scratch("requirements") else {
        return;
    };
    let path = dir.join("f");
    write_file(&path, 4096, 1);
    let align = dio::requirements(&File::open(&path).unwrap()).unwrap();
    println!(
        "requirements on {dir:?} (fs magic {:#x}, kernel {:?}): {align:?}",
        fs_magic(&dir),
        kernel_version()
    );
    assert!(align.mem_align().is_power_of_two() && align.offset_align().is_power_of_two());
    assert!(align.offset_align() >= 512, "{align:?}");
    // ext4 answers STATX_DIOALIGN from Linux 6.1 on; then the source must be statx, not a fallback.
    if fs_magic(&dir) == EXT4_SUPER_MAGIC && kernel_version() >= (6, 1) {
        assert_eq!(align.source(), DioSource::Statx, "{align:?}");
    }
    // Same answer with the file opened with O_DIRECT.
    assert_eq!(
        dio::requirements(&open_direct_read(&path).unwrap()).unwrap(),
        align
    );
}

#[test]
fn tmpfs_is_refused_with_a_clear_error() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || fs_magic(shm) != TMPFS_MAGIC {
        println!("SKIPPED: tmpfs_is_refused_with_a_clear_error: /dev/shm is not a tmpfs here");
        return;
    }
    let path = shm.join(format!("pagepool-dio-{}", std::process::id()));
    std::fs::write(&path, b"x").unwrap();
    let file = File::open(&path).unwrap();
    let err = dio::requirements(&file).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("tmpfs"), "{err}");
    match PagePool::builder().for_direct_io(&file) {
        Err(ConfigError::DirectIo { source }) => {
            assert_eq!(source.kind(), io::ErrorKind::Unsupported)
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let msg = PagePool::builder()
        .for_direct_io(&file)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("direct I/O") && msg.contains("tmpfs"), "{msg}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_file_system_refusing_o_direct_is_unsupported() {
    // procfs refuses O_DIRECT opens (EINVAL) and reports no STATX_DIOALIGN: the fallback path must notice.
    let file = File::open("/proc/self/status").unwrap();
    assert!(open_direct_read(Path::new("/proc/self/status")).is_err());
    let err = dio::requirements(&file).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
}

#[test]
fn for_direct_io_applies_whatever_the_setter_order() {
    let Some(dir) = scratch("order") else { return };
    let path = dir.join("f");
    write_file(&path, 1, 2);
    let file = File::open(&path).unwrap();
    let align = dio::requirements(&file).unwrap();
    let page = pagepool::page_size();
    let unit = page.max(align.offset_align());
    let a = PagePool::builder()
        .for_direct_io(&file)
        .unwrap()
        .buf_size(1000)
        .build()
        .unwrap();
    let b = PagePool::builder()
        .buf_size(1000)
        .for_direct_io(&file)
        .unwrap()
        .build()
        .unwrap();
    for p in [&a, &b] {
        assert_eq!(p.buf_size(), unit, "1000 bytes round up to one unit");
        assert!(p.alignment() >= align.mem_align() && p.alignment() >= page);
    }
    // A larger explicit alignment is kept, and an exact multiple is not rounded.
    let c = PagePool::builder()
        .alignment(1 << 16)
        .buf_size(3 * unit)
        .direct_io(align)
        .build()
        .unwrap();
    assert_eq!((c.alignment(), c.buf_size()), (1 << 16, 3 * unit));
    // Zero is still an error, not rounded up.
    assert!(matches!(
        PagePool::builder().buf_size(0).direct_io(align).build(),
        Err(ConfigError::ZeroBufSize { .. })
    ));
}

#[test]
fn requirements_log_their_answer() {
    let Some(dir) = scratch("tracing") else {
        return;
    };
    let path = dir.join("f");
    write_file(&path, 1, 3);
    let file = File::open(&path).unwrap();
    let rec = common::Recorder::default();
    let align = rec.record(|| dio::requirements(&file).unwrap());
    let ev = rec.events();
    assert!(
        ev.iter()
            .any(|e| e.target == "pagepool" && e.message.starts_with("direct I/O alignment")),
        "{align:?}: {ev:?}"
    );
}

/// Reads `path` with O_DIRECT through pool buffers, several buffers per request stream, and returns the bytes.
fn read_direct(path: &Path, pool: &PagePool, align: DioAlign) -> Vec<u8> {
    let file = open_direct_read(path).unwrap();
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut buf = pool.acquire().unwrap();
        assert!(!buf.is_overflow());
        assert!(align.is_aligned(&buf, offset));
        let n = read_full_at(&file, &mut buf, offset).unwrap();
        out.extend_from_slice(&buf[..n]);
        offset += n as u64;
        if n < buf.len() {
            return out;
        }
    }
}

const SIZES: [usize; 6] = [0, 1, 4095, 4096, 4097, (1 << 20) + 3];

#[test]
fn direct_reads_of_awkward_sizes() {
    let Some(dir) = scratch("reads") else { return };
    for (i, &len) in SIZES.iter().enumerate() {
        let path = dir.join(format!("src-{len}"));
        let data = write_file(&path, len, 10 + i as u64);
        let (pool, align) = direct_pool(&File::open(&path).unwrap(), 4);
        assert_eq!(read_direct(&path, &pool, align), data, "size {len}");
        let mut sum = Checksum::default();
        sum.update(&data);
        assert_eq!(
            direct_checksum(&path, &pool).unwrap(),
            sum.finish(),
            "size {len}"
        );
    }
}

#[test]
fn copier_copies_awkward_sizes_exactly() {
    let Some(dir) = scratch("copy") else { return };
    for (i, &len) in SIZES.iter().enumerate() {
        let src = dir.join(format!("src-{len}"));
        let dst = dir.join(format!("dst-{len}"));
        let data = write_file(&src, len, 20 + i as u64);
        // Small buffers so that the 1 MiB file takes many blocks and all threads get some.
        let file = File::open(&src).unwrap();
        let align = dio::requirements(&file).unwrap();
        let pool = PagePool::builder()
            .buf_size(8192)
            .capacity(8)
            .for_direct_io(&file)
            .unwrap()
            .build()
            .unwrap();
        let report = copy(&src, &dst, &pool, align, 4, &|_| {}).unwrap();
        assert_eq!(report.bytes, len as u64);
        assert_eq!(report.written % align.offset_align() as u64, 0);
        assert!(report.written >= len as u64);
        let copied = std::fs::read(&dst).unwrap();
        assert_eq!(copied.len(), len, "size {len}");
        assert!(copied == data, "size {len}: contents differ");
        assert_eq!(
            direct_checksum(&src, &pool).unwrap(),
            direct_checksum(&dst, &pool).unwrap()
        );
    }
}

#[test]
fn misalignment_gets_einval_and_pool_buffers_never_do() {
    let Some(dir) = scratch("einval") else { return };
    let path = dir.join("f");
    let data = write_file(&path, 1 << 20, 30);
    let file = open_direct_read(&path).unwrap();
    let (pool, align) = direct_pool(&File::open(&path).unwrap(), 8);
    let oa = align.offset_align();
    let einval = |r: io::Result<usize>, what: &str| match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{what}: {e}"),
        Ok(n) => {
            panic!("{what}: the kernel accepted a misaligned O_DIRECT read ({n} bytes): {align:?}")
        }
    };
    let mut buf = pool.acquire().unwrap();
    let page = pagepool::page_size();
    assert!(buf.len() > 2 * page);
    // Misaligned memory: one byte past an aligned start, two pages long (valid memory, wrong address). Linux
    // 6.18 on ext4/virtio accepts a misaligned address when no page boundary splits the transfer into pieces
    // that are not block multiples (e.g. 512 bytes at +1, measured), so the transfer here crosses pages.
    einval(
        file.read_at(&mut buf[1..1 + 2 * page], 0),
        "buffer address + 1",
    );
    einval(
        file.read_at(&mut buf[oa / 2..oa / 2 + 2 * page], 0),
        "buffer address + offset_align / 2",
    );
    // Misaligned offset and length, with an aligned buffer.
    einval(file.read_at(&mut buf[..oa], 1), "offset 1");
    einval(file.read_at(&mut buf[..oa + 1], 0), "length + 1");
    einval(file.read_at(&mut buf[..oa - 1], 0), "length - 1");
    // The same reads, aligned, succeed: what failed was the alignment, not the file.
    assert_eq!(file.read_at(&mut buf[..oa], 0).unwrap(), oa);
    assert_eq!(&buf[..oa], &data[..oa]);
    drop(buf);
    // Every pooled buffer (all held at once, so all are distinct), at every block-aligned offset within a page,
    // reads without EINVAL and returns the right bytes.
    let held: Vec<_> = (0..pool.capacity())
        .map(|_| pool.acquire().unwrap())
        .collect();
    assert!(held.iter().all(|b| !b.is_overflow()));
    for (i, mut b) in held.into_iter().enumerate() {
        let offset = ((i * oa) % (data.len() - b.len())) as u64;
        assert!(align.is_aligned(&b, offset));
        let n = file.read_at(&mut b, offset).unwrap();
        assert_eq!(n, b.len());
        assert!(
            b[..] == data[offset as usize..offset as usize + n],
            "buffer {i}"
        );
    }
}

#[test]
fn copier_refuses_a_tmpfs_destination() {
    let Some(dir) = scratch("copy_to_tmpfs") else {
        return;
    };
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || fs_magic(shm) != TMPFS_MAGIC {
        println!("SKIPPED: copier_refuses_a_tmpfs_destination: /dev/shm is not a tmpfs here");
        return;
    }
    let src = dir.join("src");
    write_file(&src, 10_000, 50);
    let (pool, align) = direct_pool(&File::open(&src).unwrap(), 2);
    let dst = shm.join(format!("pagepool-copy-{}", std::process::id()));
    let err = copy(&src, &dst, &pool, align, 2, &|_| {}).unwrap_err();
    let _ = std::fs::remove_file(&dst);
    assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
}
