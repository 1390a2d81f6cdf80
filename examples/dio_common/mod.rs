//! Shared by the direct I/O examples and `tests/direct_io.rs` (included with `#[path]`): an O_DIRECT file copier
//! over pool buffers, a direct-read checksum, and RSS from /proc. Linux only.
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod read;
#[cfg(feature = "io-uring")]
pub mod uring;

use pagepool::dio::{self, DioAlign};
use pagepool::{AlignedBuf, PagePool};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// 64-bit checksum of a byte stream fed in order, in pieces of any size: FNV-1a over bytes, then the length.
/// Detects corruption and truncation; not cryptographic.
#[derive(Debug, Clone, Copy)]
pub struct Checksum {
    h: u64,
    len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            h: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Checksum {
    pub fn update(&mut self, bytes: &[u8]) {
        // 8-byte words keep this near memory speed; the tail goes byte by byte.
        let mut chunks = bytes.chunks_exact(8);
        for w in &mut chunks {
            let w = u64::from_le_bytes(w.try_into().unwrap());
            self.h = (self.h ^ w)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(29);
        }
        for &b in chunks.remainder() {
            self.h = (self.h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }

    pub fn finish(&self) -> u64 {
        (self.h ^ self.len).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Opens `path` for O_DIRECT reading.
pub fn open_direct_read(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    dio::o_direct(&mut o)?.open(path)
}

/// Creates (truncating) `path` for O_DIRECT writing.
pub fn create_direct_write(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    dio::o_direct(&mut o)?.open(path)
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read. With O_DIRECT a read
/// may come back short only at the end of the file.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Checksum of a whole file read with O_DIRECT through pool buffers, in order.
pub fn direct_checksum(path: &Path, pool: &PagePool) -> io::Result<u64> {
    let file = open_direct_read(path)?;
    let mut sum = Checksum::default();
    let mut buf = pool.acquire()?;
    let mut offset = 0;
    loop {
        // Each block is read into the empty buffer's spare capacity; the buffer's length is then what was read.
        buf.clear();
        let n = read_full_at(&file, buf.spare_capacity_mut(), offset)?;
        // SAFETY: `n` bytes were read into the spare capacity of an empty buffer: `n <= capacity()`, and the
        // buffer's bytes are always initialised.
        unsafe { buf.set_len(n) };
        sum.update(&buf);
        offset += n as u64;
        if buf.len() < buf.capacity() {
            break;
        }
    }
    Ok(sum.finish())
}

/// What [`copy`] did.
#[derive(Debug, Clone, Copy)]
pub struct CopyReport {
    pub bytes: u64,
    /// Bytes written with O_DIRECT (the tail's last block is padded to the offset alignment, then cut off).
    pub written: u64,
}

/// Copies `src` to `dst` with O_DIRECT reads and writes through `pool` buffers, `threads` transfers in flight.
///
/// Each worker claims the next `buf_size` block of the file, reads it with O_DIRECT into a pool buffer (a read
/// at the end of the file comes back short), and writes it with O_DIRECT at the same offset; a short last block
/// is written padded with zeros to a multiple of the offset alignment (the larger of `align`'s and the
/// destination's) and the file is then truncated to the source length (`ftruncate`), so the copy ends exactly where the source does. `progress` is called with the
/// bytes copied so far, from the worker threads.
pub fn copy(
    src: &Path,
    dst: &Path,
    pool: &PagePool,
    align: DioAlign,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<CopyReport> {
    let input = open_direct_read(src)?;
    let len = input.metadata()?.len();
    let output = create_direct_write(dst)?;
    // The destination may sit on another file system: its requirements must hold too (tmpfs: Unsupported).
    let out_align = dio::requirements(&output)?;
    if pool.alignment() % out_align.mem_align() != 0
        || pool.buf_size() % out_align.offset_align() != 0
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the pool's buffers do not meet the destination's O_DIRECT requirements {out_align:?}"),
        ));
    }
    let pad_to = align.offset_align().max(out_align.offset_align());
    let block = pool.buf_size() as u64;
    let next = AtomicU64::new(0);
    let copied = AtomicU64::new(0);
    let written = AtomicU64::new(0);
    let worker = || -> io::Result<()> {
        let mut buf: AlignedBuf = pool.acquire()?;
        loop {
            let offset = next.fetch_add(block, Relaxed);
            if offset >= len {
                return Ok(());
            }
            buf.clear();
            let n = read_full_at(&input, buf.spare_capacity_mut(), offset)?;
            let want = (len - offset).min(block) as usize;
            if n != want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read at {offset}: {n} of {want} bytes (file changed?)"),
                ));
            }
            // The tail block: zeros up to the offset alignment (`padded <= capacity`: the capacity is a multiple
            // of `pad_to`, checked above).
            let padded = n.next_multiple_of(pad_to);
            buf.spare_capacity_mut()[n..padded].fill(0);
            // SAFETY: `padded <= capacity()`, and bytes `0..padded` were just written (read, then zeroed).
            unsafe { buf.set_len(padded) };
            output.write_all_at(&buf, offset)?;
            written.fetch_add(padded as u64, Relaxed);
            progress(copied.fetch_add(n as u64, Relaxed) + n as u64);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("copy worker panicked"))
    })?;
    // The padded tail (if any) goes; a copy of an empty file stays empty.
    output.set_len(len)?;
    output.sync_all()?;
    Ok(CopyReport {
        bytes: len,
        written: written.load(Relaxed),
    })
}

/// Resident set size of this process in bytes (/proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * pagepool::page_size() as u64
}

/// Fills `buf` with a deterministic pseudo-random pattern (xorshift64*) seeded by `seed`.
pub fn fill_pattern(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Creates (truncating) `path` with `mib` mebibytes of the seeded pattern plus `tail` bytes, so a tail that is not
/// a multiple of any block size ends the file; synced, so the bytes are on the device for direct reads.
pub fn create_pattern_file(path: &Path, mib: u64, tail: usize) -> io::Result<u64> {
    use std::io::Write;
    let mut f = io::BufWriter::new(File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        fill_pattern(&mut block, i + 1);
        f.write_all(&block)?;
    }
    fill_pattern(&mut block[..tail], mib + 1);
    f.write_all(&block[..tail])?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok((mib << 20) + tail as u64)
}

/// Checksum of a whole file through ordinary buffered reads: the reference the direct reads are checked
/// against.
pub fn buffered_checksum(path: &Path) -> io::Result<u64> {
    use std::io::Read;
    let mut sum = Checksum::default();
    let mut f = File::open(path)?;
    let mut block = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut block) {
            Ok(0) => return Ok(sum.finish()),
            Ok(n) => sum.update(&block[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
