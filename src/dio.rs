//! Direct I/O (`O_DIRECT`): what alignment a file needs, and pools whose every buffer meets it.
//!
//! With `O_DIRECT` the kernel moves data between the device and your buffer without the page cache, and
//! refuses (`EINVAL`) a buffer address, a length or a file offset that is not a multiple of what the file
//! system and device require. [`requirements`] asks the kernel what that is for one file;
//! [`PoolBuilder::for_direct_io`] builds a pool whose buffers all satisfy it, so any whole pooled buffer can be
//! read or written at any aligned offset of that file.
//!
//! ```
//! use std::fs::File;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = File::open("Cargo.toml")?;
//! match pagepool::dio::requirements(&file) {
//!     Ok(align) => {
//!         let pool = pagepool::PagePool::builder().direct_io(align).capacity(8).build()?;
//!         let buf = pool.acquire()?;
//!         assert!(align.is_aligned(&buf, 0));
//!         println!("{align:?}"); // e.g. DioAlign { mem_align: 512, offset_align: 512, source: Statx }
//!     }
//!     // The repository lives on a file system with no direct I/O (tmpfs, say).
//!     Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported),
//! }
//! # Ok(()) }
//! ```

use crate::config::PoolBuilder;
use crate::error::ConfigError;
use crate::sys;
use std::fs::{File, OpenOptions};
use std::io;

/// The alignment assumed when neither the file system nor the device answers: 4096 bytes, which every Linux
/// block device with 512- or 4096-byte logical blocks accepts for memory, offsets and lengths.
///
/// # Examples
/// ```
/// assert!(pagepool::dio::DEFAULT_ALIGN.is_power_of_two());
/// ```
pub const DEFAULT_ALIGN: usize = 4096;

/// Which source answered [`requirements`].
///
/// # Examples
/// ```
/// use pagepool::dio::{requirements, DioSource};
/// # fn main() -> std::io::Result<()> {
/// if let Ok(a) = requirements(&std::fs::File::open("Cargo.toml")?) {
///     let exact = match a.source() {
///         DioSource::Statx => true,
///         _ => false, // a conservative fallback
///     };
///     println!("exact answer from the file system: {exact}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DioSource {
    /// The file system, through `statx(STATX_DIOALIGN)` (Linux 6.1 and later, on file systems that implement
    /// it: ext4, xfs, f2fs, block devices, ...). Exact: it may allow less alignment than the device's logical
    /// block size for memory.
    Statx,
    /// The logical block size of the device under the file (`BLKSSZGET` for a block device, sysfs
    /// `queue/logical_block_size` for a file on one), used for both memory and offsets. Conservative.
    LogicalBlockSize,
    /// Nothing answered (no `STATX_DIOALIGN`, no block device found, or not Linux): [`DEFAULT_ALIGN`] for both.
    Default,
}

/// The alignment direct I/O on one file needs, from [`requirements`].
///
/// Every buffer address must be a multiple of [`mem_align`](Self::mem_align), and every file offset and
/// transfer length a multiple of [`offset_align`](Self::offset_align). Both are powers of two.
///
/// # Examples
/// ```
/// # fn main() -> std::io::Result<()> {
/// let align = pagepool::dio::requirements(&std::fs::File::open("Cargo.toml")?);
/// if let Ok(align) = align {
///     assert!(align.mem_align().is_power_of_two() && align.offset_align().is_power_of_two());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DioAlign {
    mem_align: usize,
    offset_align: usize,
    source: DioSource,
}

impl DioAlign {
    /// Both alignments must be powers of two (the `sys` layer validates what the kernel says).
    pub(crate) fn new(mem_align: usize, offset_align: usize, source: DioSource) -> Self {
        debug_assert!(mem_align.is_power_of_two() && offset_align.is_power_of_two());
        DioAlign {
            mem_align,
            offset_align,
            source,
        }
    }

    /// Required alignment of a buffer's address, in bytes (a power of two).
    ///
    /// # Examples
    /// ```
    /// # let align = pagepool::dio::requirements(&std::fs::File::open("Cargo.toml").unwrap());
    /// # if let Ok(align) = align {
    /// // Pool buffers are page-aligned, which covers any memory alignment up to the page size.
    /// assert!(align.mem_align() >= 1);
    /// # }
    /// ```
    pub fn mem_align(&self) -> usize {
        self.mem_align
    }

    /// Required alignment of file offsets and transfer lengths, in bytes (a power of two).
    ///
    /// # Examples
    /// ```
    /// # let align = pagepool::dio::requirements(&std::fs::File::open("Cargo.toml").unwrap());
    /// # if let Ok(align) = align {
    /// let file_len: u64 = 10_000;
    /// let direct_part = file_len / align.offset_align() as u64 * align.offset_align() as u64;
    /// assert!(direct_part <= file_len && file_len - direct_part < align.offset_align() as u64);
    /// # }
    /// ```
    pub fn offset_align(&self) -> usize {
        self.offset_align
    }

    /// Which source answered.
    ///
    /// # Examples
    /// ```
    /// use pagepool::dio::DioSource;
    /// # let align = pagepool::dio::requirements(&std::fs::File::open("Cargo.toml").unwrap());
    /// # if let Ok(align) = align {
    /// if align.source() == DioSource::Default {
    ///     assert_eq!(align.offset_align(), pagepool::dio::DEFAULT_ALIGN);
    /// }
    /// # }
    /// ```
    pub fn source(&self) -> DioSource {
        self.source
    }

    /// True if a direct transfer of `buf` at file offset `offset` meets these requirements: the address is a
    /// multiple of `mem_align`, and the length and offset are multiples of `offset_align`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let Ok(align) = pagepool::dio::requirements(&std::fs::File::open("Cargo.toml")?) else { return Ok(()) };
    /// let pool = pagepool::PagePool::builder().direct_io(align).capacity(1).build()?;
    /// let buf = pool.acquire()?;
    /// assert!(align.is_aligned(&buf, 0));
    /// assert!(!align.is_aligned(&buf[..buf.len() - 1], 0)); // a short length
    /// assert!(!align.is_aligned(&buf, 1));                   // an odd offset
    /// # Ok(()) }
    /// ```
    pub fn is_aligned(&self, buf: &[u8], offset: u64) -> bool {
        (buf.as_ptr() as usize) % self.mem_align == 0
            && buf.len() % self.offset_align == 0
            && offset % self.offset_align as u64 == 0
    }
}

/// Asks the kernel what alignment `O_DIRECT` transfers on `file` need.
///
/// On Linux, in order: `statx(STATX_DIOALIGN)` (kernels 6.1+, file systems that report it: the exact memory and
/// offset alignments, [`DioSource::Statx`]); else the logical block size of the device under the file, for
/// both ([`DioSource::LogicalBlockSize`]); else [`DEFAULT_ALIGN`] for both ([`DioSource::Default`]). Other
/// platforms always answer [`DioSource::Default`]. `file` may be open with or without `O_DIRECT`; nothing about
/// it changes. A `debug` event (target `pagepool`) records the answer, an `info` event a default.
///
/// # Errors
/// - [`io::ErrorKind::Unsupported`] when the file cannot do direct I/O: `statx` reports an alignment of 0 (the
///   file system refuses `O_DIRECT` for this file), or the file is on tmpfs or ramfs (ramfs refuses `O_DIRECT`;
///   tmpfs on Linux 6.6+ accepts it but serves it from the page cache, enforcing no alignment, so there is no
///   direct I/O to align for).
/// - [`io::ErrorKind::Unsupported`] also when `statx` does not answer and `file` is neither a regular file nor
///   a block device (a directory, a character device, ...).
/// - [`io::ErrorKind::InvalidData`] if `statx` reports an alignment that is not a power of two.
/// - The OS error of `statx`, `fstatfs` or `fstat` if one fails (e.g. `EBADF`).
///
/// # Examples
/// ```
/// use pagepool::dio::{requirements, DioSource};
/// # fn main() -> std::io::Result<()> {
/// let file = std::fs::File::open("Cargo.toml")?;
/// match requirements(&file) {
///     Ok(a) => println!("O_DIRECT needs {} / {} bytes (from {:?})", a.mem_align(), a.offset_align(), a.source()),
///     Err(e) => println!("no direct I/O here: {e}"),
/// }
/// # Ok(()) }
/// ```
pub fn requirements(file: &File) -> io::Result<DioAlign> {
    match sys::dio::requirements(file) {
        Ok(a) => {
            if a.source == DioSource::Default {
                tracing::info!(target: "pagepool", align = a.mem_align, "direct I/O alignment unknown: assuming the default");
            } else {
                tracing::debug!(target: "pagepool", mem_align = a.mem_align, offset_align = a.offset_align, source = ?a.source, "direct I/O alignment");
            }
            Ok(a)
        }
        Err(e) => {
            tracing::debug!(target: "pagepool", error = %e, "no direct I/O alignment");
            Err(e)
        }
    }
}

/// Adds `O_DIRECT` to `opts` (Linux), so the file is opened for direct I/O. It sets `opts`'s custom flags,
/// replacing any set before.
///
/// # Errors
/// [`io::ErrorKind::Unsupported`] on platforms other than Linux (the options are unchanged). Opening may then
/// still fail with `EINVAL` on a file system that refuses `O_DIRECT`.
///
/// # Examples
/// ```
/// use std::fs::OpenOptions;
/// # fn main() -> std::io::Result<()> {
/// let mut opts = OpenOptions::new();
/// opts.read(true);
/// if pagepool::dio::o_direct(&mut opts).is_ok() {
///     match opts.open("Cargo.toml") {
///         Ok(file) => drop(file),                      // direct I/O from here on
///         Err(e) => println!("no O_DIRECT here: {e}"), // e.g. a file system that refuses it
///     }
/// }
/// # Ok(()) }
/// ```
pub fn o_direct(opts: &mut OpenOptions) -> io::Result<&mut OpenOptions> {
    sys::dio::set_direct(opts)?;
    Ok(opts)
}

impl PoolBuilder {
    /// Makes every buffer usable for `O_DIRECT` transfers with the given requirements, applied by
    /// [`build`](Self::build) whatever order the setters come in: the alignment becomes at least
    /// `align.mem_align()` (never lowered below a larger [`alignment`](Self::alignment)), and `buf_size` is
    /// rounded **up** to a multiple of `max(page size, align.offset_align())` (a `debug` event, target
    /// `pagepool`, reports a rounding; [`PagePool::buf_size`](crate::PagePool::buf_size) returns the result).
    /// `buf_size(0)` is still [`ConfigError::ZeroBufSize`], and an invalid `alignment` is still reported as
    /// given (never raised into a valid one).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let Ok(align) = pagepool::dio::requirements(&std::fs::File::open("Cargo.toml")?) else { return Ok(()) };
    /// let pool = pagepool::PagePool::builder().direct_io(align).buf_size(1000).capacity(4).build()?;
    /// assert_eq!(pool.buf_size() % align.offset_align(), 0);
    /// assert!(pool.buf_size() >= 1000);
    /// # Ok(()) }
    /// ```
    pub fn direct_io(mut self, align: DioAlign) -> Self {
        self.direct_io = Some(align);
        self
    }

    /// Queries [`requirements`] for `file` and applies them as [`direct_io`](Self::direct_io) does.
    ///
    /// # Errors
    /// [`ConfigError::DirectIo`] carrying the `io::Error` of [`requirements`] (for instance
    /// [`io::ErrorKind::Unsupported`] for a file on tmpfs).
    ///
    /// # Examples
    /// ```
    /// use pagepool::{ConfigError, PagePool};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let file = std::fs::File::open("Cargo.toml")?;
    /// match PagePool::builder().capacity(16).for_direct_io(&file) {
    ///     Ok(builder) => {
    ///         let pool = builder.build()?;
    ///         assert_eq!(pool.acquire()?.as_ptr() as usize % pool.alignment(), 0);
    ///     }
    ///     Err(ConfigError::DirectIo { source }) => println!("no direct I/O for this file: {source}"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn for_direct_io(self, file: &File) -> Result<Self, ConfigError> {
        match requirements(file) {
            Ok(align) => Ok(self.direct_io(align)),
            Err(source) => Err(ConfigError::DirectIo { source }),
        }
    }

    /// This builder with the direct I/O requirement folded into `buf_size` and `alignment`.
    pub(crate) fn resolve_direct_io(&self) -> Result<Option<PoolBuilder>, ConfigError> {
        let Some(d) = self.direct_io else {
            return Ok(None);
        };
        let page_size = sys::page_size();
        if self.buf_size == 0 {
            return Err(ConfigError::ZeroBufSize { page_size });
        }
        // Both are powers of two: the larger is a multiple of the smaller.
        let unit = page_size.max(d.offset_align);
        let buf_size =
            self.buf_size
                .checked_next_multiple_of(unit)
                .ok_or(ConfigError::TooLarge {
                    buf_size: self.buf_size,
                    stride: usize::MAX,
                    capacity: self.capacity,
                })?;
        if buf_size != self.buf_size {
            tracing::debug!(target: "pagepool", from = self.buf_size, to = buf_size, "buf_size rounded up for direct I/O");
        }
        let mut b = self.clone();
        b.direct_io = None;
        b.buf_size = buf_size;
        b.alignment = Some(match self.alignment {
            // An invalid alignment stays as given, for `layout()` to report: raising it would hide the mistake.
            Some(a) if !a.is_power_of_two() || a < page_size => a,
            Some(a) => a.max(d.mem_align),
            None => page_size.max(d.mem_align),
        });
        Ok(Some(b))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn page() -> usize {
        sys::page_size()
    }

    #[test]
    fn offset_alignment_above_the_page_rounds_buf_size() {
        // A device with 16 KiB logical blocks and 64 KiB DMA alignment (made up: no such device here).
        let d = DioAlign::new(64 << 10, 16 << 10, DioSource::LogicalBlockSize);
        let l = PoolBuilder::default()
            .buf_size(page())
            .capacity(4)
            .direct_io(d)
            .layout()
            .unwrap();
        assert_eq!(
            (l.buf_size, l.align, l.stride),
            (16 << 10, 64 << 10, 64 << 10)
        );
        let l = PoolBuilder::default()
            .direct_io(d)
            .buf_size(5 << 10)
            .alignment(2 << 20)
            .capacity(4)
            .layout()
            .unwrap();
        assert_eq!((l.buf_size, l.align), (16 << 10, 2 << 20));
    }

    #[test]
    fn small_requirements_change_nothing() {
        let d = DioAlign::new(512, 512, DioSource::Statx);
        let with = PoolBuilder::default()
            .buf_size(8192)
            .capacity(4)
            .direct_io(d);
        let without = PoolBuilder::default().buf_size(8192).capacity(4);
        assert_eq!(with.layout().unwrap(), without.layout().unwrap());
    }

    #[test]
    fn rounding_overflow_and_zero_are_errors() {
        let d = DioAlign::new(512, 1 << 20, DioSource::Statx);
        let e = PoolBuilder::default()
            .buf_size(usize::MAX)
            .direct_io(d)
            .layout();
        assert!(matches!(e, Err(ConfigError::TooLarge { .. })), "{e:?}");
        let e = PoolBuilder::default().buf_size(0).direct_io(d).layout();
        assert!(matches!(e, Err(ConfigError::ZeroBufSize { .. })), "{e:?}");
        // Other settings are still validated after the rounding.
        let e = PoolBuilder::default().capacity(0).direct_io(d).layout();
        assert!(matches!(e, Err(ConfigError::ZeroCapacity)), "{e:?}");
        // Invalid alignments are reported as given, never raised into validity by the requirement.
        let big = DioAlign::new(64 << 10, 512, DioSource::Statx);
        for bad in [3, 3 << 12] {
            let e = PoolBuilder::default()
                .alignment(bad)
                .direct_io(big)
                .layout();
            assert!(
                matches!(e, Err(ConfigError::AlignmentNotPowerOfTwo { alignment, .. }) if alignment == bad),
                "{e:?}"
            );
        }
        let e = PoolBuilder::default()
            .alignment(1024)
            .direct_io(big)
            .layout();
        assert!(
            matches!(
                e,
                Err(ConfigError::AlignmentBelowPageSize {
                    alignment: 1024,
                    ..
                })
            ),
            "{e:?}"
        );
    }

    #[test]
    fn is_aligned_checks_address_length_and_offset() {
        let d = DioAlign::new(4096, 512, DioSource::Default);
        let pool = crate::PagePool::builder()
            .buf_size(8192)
            .capacity(1)
            .build()
            .unwrap();
        let buf = pool.acquire().unwrap();
        assert!(d.is_aligned(&buf, 0));
        assert!(d.is_aligned(&buf[..512], 1024));
        assert!(!d.is_aligned(&buf[512..1024], 0), "address");
        assert!(!d.is_aligned(&buf[..513], 0), "length");
        assert!(!d.is_aligned(&buf, 256), "offset");
    }

    #[test]
    fn o_direct_sets_the_flag_on_linux_only() {
        let mut o = OpenOptions::new();
        o.read(true);
        let r = o_direct(&mut o).map(|_| ());
        if cfg!(target_os = "linux") {
            r.unwrap();
        } else {
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::Unsupported);
        }
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn elsewhere_the_default_answers() {
        let f = File::open(file!())
            .or_else(|_| File::open("Cargo.toml"))
            .unwrap();
        let a = requirements(&f).unwrap();
        assert_eq!(
            (a.mem_align(), a.offset_align(), a.source()),
            (DEFAULT_ALIGN, DEFAULT_ALIGN, DioSource::Default)
        );
    }
}
