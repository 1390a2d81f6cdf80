//! Direct I/O queries: the alignment O_DIRECT needs for a file, the O_DIRECT open flag, and the locked-memory
//! limit that io_uring registered buffers count against.
//!
//! | function | Linux | elsewhere |
//! |---|---|---|
//! | [`requirements`] | `statx(STATX_DIOALIGN)` (6.1+), else the device's logical block size (`BLKSSZGET` for a block device, `/sys/dev/block/MAJ:MIN[/..]/queue/logical_block_size` for a file on one), else 4096; regular files on tmpfs/ramfs or refusing O_DIRECT, and other file types, are `Unsupported` | 4096 ([`DioSource::Default`]) |
//! | [`set_direct`] | `O_DIRECT` in `OpenOptions::custom_flags` | `Unsupported` |
//! | [`memlock_limit`] | `getrlimit(RLIMIT_MEMLOCK)` soft limit | `None` |
//!
//! `statx` is called as a raw system call with our own copy of the kernel's `struct statx`, so neither the libc
//! crate's version nor glibc's `statx` wrapper (2.28+) matters; a kernel older than 4.11 answers `ENOSYS` and a
//! kernel older than 6.1 leaves `STATX_DIOALIGN` out of the returned mask, and both fall through to the logical
//! block size.

use crate::dio::{DioAlign, DioSource, DEFAULT_ALIGN};
use std::fs::{File, OpenOptions};
use std::io;

/// The alignment O_DIRECT needs for `file`; see the table above.
pub(crate) fn requirements(file: &File) -> io::Result<DioAlign> {
    #[cfg(target_os = "linux")]
    {
        linux::requirements(file)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Ok(DioAlign::new(
            DEFAULT_ALIGN,
            DEFAULT_ALIGN,
            DioSource::Default,
        ))
    }
}

/// Adds `O_DIRECT` to `opts` (replacing any custom flags set before).
pub(crate) fn set_direct(opts: &mut OpenOptions) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_DIRECT);
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = opts;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "O_DIRECT is only supported on Linux by pagepool",
        ))
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes; `None` when unlimited or unknown (and off Linux).
#[cfg_attr(not(all(feature = "io-uring", target_os = "linux")), allow(dead_code))]
pub(crate) fn memlock_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        linux::memlock_limit()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::os::unix::io::AsRawFd;

    /// The kernel's `struct statx` (include/uapi/linux/stat.h), 256 bytes. Only the fields we read are used.
    #[repr(C)]
    #[allow(dead_code)]
    pub(super) struct Statx {
        pub(super) mask: u32,
        blksize: u32,
        attributes: u64,
        nlink: u32,
        uid: u32,
        gid: u32,
        mode: u16,
        spare0: u16,
        ino: u64,
        size: u64,
        blocks: u64,
        attributes_mask: u64,
        /// atime, btime, ctime, mtime: `{ i64 tv_sec; u32 tv_nsec; i32 reserved }` each.
        times: [[u64; 2]; 4],
        rdev: [u32; 2],
        dev: [u32; 2],
        mnt_id: u64,
        pub(super) dio_mem_align: u32,
        pub(super) dio_offset_align: u32,
        spare3: [u64; 12],
    }

    const _: () = assert!(std::mem::size_of::<Statx>() == 256);

    /// `STATX_DIOALIGN` (include/uapi/linux/stat.h).
    const STATX_DIOALIGN: u32 = 0x2000;
    /// `TMPFS_MAGIC` and `RAMFS_MAGIC` (include/uapi/linux/magic.h).
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    const RAMFS_MAGIC: u32 = 0x8584_58f6;

    /// `statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN)`: `Ok(None)` when the kernel does not know the call or
    /// does not answer for direct I/O alignment.
    pub(super) fn statx_dio(fd: libc::c_int) -> io::Result<Option<(u32, u32)>> {
        let mut buf = std::mem::MaybeUninit::<Statx>::zeroed();
        // SAFETY: statx writes at most sizeof(struct statx) = 256 bytes (asserted above) to `buf`, which we own;
        // the path is a valid NUL-terminated empty string, which AT_EMPTY_PATH makes the call apply to `fd`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_statx,
                fd,
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                STATX_DIOALIGN,
                buf.as_mut_ptr(),
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOSYS) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: the buffer was zero-initialised (a valid Statx: plain integers) and the kernel filled it in.
        let st = unsafe { buf.assume_init() };
        if st.mask & STATX_DIOALIGN == 0 {
            return Ok(None);
        }
        Ok(Some((st.dio_mem_align, st.dio_offset_align)))
    }

    fn fstat(fd: libc::c_int) -> io::Result<libc::stat> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: fstat writes one `struct stat` to the buffer we own; `fd` is open (borrowed from a File).
        if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: zero-initialised plain integers, filled in by a successful fstat.
        Ok(unsafe { st.assume_init() })
    }

    /// The file system magic number of `fd`'s file system.
    pub(super) fn fs_magic(fd: libc::c_int) -> io::Result<u32> {
        let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: fstatfs writes one `struct statfs` to the buffer we own; `fd` is open.
        if unsafe { libc::fstatfs(fd, st.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: zero-initialised plain integers, filled in by a successful fstatfs.
        let st = unsafe { st.assume_init() };
        // f_type is a signed word whose width differs by architecture; magics are 32-bit patterns.
        Ok(st.f_type as u32)
    }

    /// Whether the regular file open at `fd` can be opened with `O_DIRECT`: true if `fd` already has it, else
    /// by opening it again read-only through `/proc/self/fd` (the open is where the kernel refuses it). Only an
    /// `EINVAL` from that open says no; any other failure (no /proc, a write-only file) is inconclusive: yes.
    fn accepts_o_direct(fd: libc::c_int) -> bool {
        // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags >= 0 && flags & libc::O_DIRECT != 0 {
            return true;
        }
        let Ok(path) = std::ffi::CString::new(format!("/proc/self/fd/{fd}")) else {
            return true;
        };
        let probe_flags =
            libc::O_RDONLY | libc::O_DIRECT | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
        // SAFETY: `path` is a valid NUL-terminated string; the descriptor returned (if any) is closed below.
        let probe = unsafe { libc::open(path.as_ptr(), probe_flags) };
        if probe >= 0 {
            // SAFETY: `probe` is a descriptor we just opened and own.
            unsafe { libc::close(probe) };
            return true;
        }
        io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
    }

    /// glibc's `gnu_dev_major` / `gnu_dev_minor` encoding of `dev_t`.
    fn dev_major_minor(dev: u64) -> (u64, u64) {
        let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
        let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
        (major, minor)
    }

    fn valid_block_size(n: u64) -> Option<usize> {
        (n >= 512 && n.is_power_of_two())
            .then_some(n)
            .and_then(|n| usize::try_from(n).ok())
    }

    /// `BLKSSZGET` on a block device.
    fn blkssz(fd: libc::c_int) -> Option<usize> {
        let mut size: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int to the pointer we pass, which points at a live local.
        let r = unsafe { libc::ioctl(fd, libc::BLKSSZGET, &mut size as *mut libc::c_int) };
        if r != 0 {
            return None;
        }
        valid_block_size(u64::try_from(size).ok()?)
    }

    /// The logical block size of block device `major:minor` from sysfs (a partition's is its disk's).
    fn sysfs_logical_block_size(major: u64, minor: u64) -> Option<usize> {
        let dev = format!("/sys/dev/block/{major}:{minor}");
        [
            format!("{dev}/queue/logical_block_size"),
            format!("{dev}/../queue/logical_block_size"),
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .and_then(valid_block_size)
    }

    pub(super) fn requirements(file: &File) -> io::Result<DioAlign> {
        let fd = file.as_raw_fd();
        match statx_dio(fd)? {
            Some((0, _)) | Some((_, 0)) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the file system does not support O_DIRECT for this file \
                 (statx reports a direct I/O alignment of 0)",
            )),
            Some((mem, offset)) => {
                let (Some(mem), Some(offset)) = (
                    usize::try_from(mem).ok().filter(|m| m.is_power_of_two()),
                    usize::try_from(offset).ok().filter(|o| o.is_power_of_two()),
                ) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "statx reported direct I/O alignments that are not powers of two \
                             (memory {mem}, offset {offset})"
                        ),
                    ));
                };
                Ok(DioAlign::new(mem, offset, DioSource::Statx))
            }
            None => without_statx(fd),
        }
    }

    /// The answer when `statx` gives none (kernels before 6.1, file systems that do not report it).
    pub(super) fn without_statx(fd: libc::c_int) -> io::Result<DioAlign> {
        let st = fstat(fd)?;
        let lbs = match st.st_mode & libc::S_IFMT {
            // A block device node: its own logical block size (the node itself lives on devtmpfs).
            libc::S_IFBLK => blkssz(fd),
            libc::S_IFREG => {
                if let TMPFS_MAGIC | RAMFS_MAGIC = fs_magic(fd)? {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "the file is on tmpfs or ramfs, which has no direct I/O: O_DIRECT is refused there \
                         or (tmpfs on Linux 6.6+) accepted but served from the page cache with no alignment \
                         enforced; put the file on a block-device file system (ext4, xfs, ...)",
                    ));
                }
                if !accepts_o_direct(fd) {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "the file system refuses O_DIRECT for this file (opening it with O_DIRECT fails \
                         with EINVAL)",
                    ));
                }
                let (major, minor) = dev_major_minor(st.st_dev as u64);
                sysfs_logical_block_size(major, minor)
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "direct I/O needs a regular file or a block device",
                ))
            }
        };
        Ok(match lbs {
            Some(n) => DioAlign::new(n, n, DioSource::LogicalBlockSize),
            None => DioAlign::new(DEFAULT_ALIGN, DEFAULT_ALIGN, DioSource::Default),
        })
    }

    pub(super) fn memlock_limit() -> Option<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `struct rlimit` to the pointer we pass, which points at a live local.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
            return None;
        }
        // rlim_t is u64 on most Linux targets but not all.
        #[allow(clippy::unnecessary_cast)]
        (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as u64)
    }

    #[cfg(all(test, not(loom)))]
    mod tests {
        use super::*;

        #[test]
        fn dev_numbers_decode_like_glibc() {
            for (maj, min) in [(254u32, 0u32), (8, 1), (259, 3), (0, 27), (4095, 1 << 19)] {
                let dev = libc::makedev(maj, min);
                assert_eq!(
                    dev_major_minor(dev as u64),
                    (u64::from(maj), u64::from(min))
                );
            }
        }

        /// Our `struct statx` puts the direct I/O fields where glibc's does.
        #[cfg(target_env = "gnu")]
        #[test]
        fn statx_layout_matches_libc() {
            let ours = std::mem::MaybeUninit::<Statx>::uninit();
            let theirs = std::mem::MaybeUninit::<libc::statx>::uninit();
            let (o, t) = (ours.as_ptr(), theirs.as_ptr());
            // SAFETY: addr_of! only computes field addresses inside the (uninitialised) locals; nothing is read.
            let (om, oo, tm, to) = unsafe {
                (
                    std::ptr::addr_of!((*o).dio_mem_align) as usize - o as usize,
                    std::ptr::addr_of!((*o).dio_offset_align) as usize - o as usize,
                    std::ptr::addr_of!((*t).stx_dio_mem_align) as usize - t as usize,
                    std::ptr::addr_of!((*t).stx_dio_offset_align) as usize - t as usize,
                )
            };
            assert_eq!((om, oo), (tm, to));
            assert_eq!((om, oo), (152, 156));
            assert_eq!(std::mem::size_of::<libc::statx>(), 256);
        }

        /// The fallback path, which statx makes unreachable for ext4 on this kernel, run directly on a file of
        /// the repository: the logical block size of the device under it, as sysfs says.
        #[test]
        fn fallback_reads_the_logical_block_size() {
            let f = File::open("Cargo.toml").unwrap();
            if fs_magic(f.as_raw_fd()).unwrap() == TMPFS_MAGIC {
                println!(
                    "SKIPPED: fallback_reads_the_logical_block_size: the repository is on tmpfs"
                );
                return;
            }
            let a = without_statx(f.as_raw_fd()).unwrap();
            let (major, minor) = dev_major_minor(fstat(f.as_raw_fd()).unwrap().st_dev as u64);
            match sysfs_logical_block_size(major, minor) {
                Some(lbs) => assert_eq!(
                    (a.mem_align(), a.offset_align(), a.source()),
                    (lbs, lbs, DioSource::LogicalBlockSize)
                ),
                None => assert_eq!(a.source(), DioSource::Default),
            }
        }

        /// A block device node answers through statx or BLKSSZGET with its logical block size.
        #[test]
        fn block_device_answers_its_logical_block_size() {
            let Some((dev, lbs)) = std::fs::read_dir("/sys/block")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let lbs =
                        std::fs::read_to_string(e.path().join("queue/logical_block_size")).ok()?;
                    let f = File::open(format!("/dev/{name}")).ok()?;
                    Some((f, lbs.trim().parse::<usize>().ok()?))
                })
                .next()
            else {
                println!("SKIPPED: block_device_answers_its_logical_block_size: no readable block device");
                return;
            };
            let a = requirements(&dev).unwrap();
            assert_eq!(a.offset_align(), lbs, "{a:?}");
            assert!(a.mem_align() <= lbs, "{a:?}");
            let b = without_statx(dev.as_raw_fd()).unwrap();
            assert_eq!(
                (b.offset_align(), b.source()),
                (lbs, DioSource::LogicalBlockSize)
            );
        }

        #[test]
        fn neither_file_nor_block_device_is_unsupported() {
            for path in ["/dev/null", "."] {
                let f = File::open(path).unwrap();
                let e = requirements(&f).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{path}: {e}");
            }
        }

        #[test]
        fn block_sizes_are_validated() {
            assert_eq!(valid_block_size(512), Some(512));
            assert_eq!(valid_block_size(4096), Some(4096));
            assert_eq!(valid_block_size(0), None);
            assert_eq!(valid_block_size(256), None);
            assert_eq!(valid_block_size(3000), None);
        }
    }
}
