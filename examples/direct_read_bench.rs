//! O_DIRECT sequential read of a large file with pool buffers vs `posix_memalign` buffers, side by side in one
//! run: MB/s and RSS for each (docs/benchmarks.md, "Direct I/O read").
//!
//! ```sh
//! cargo run --release --example direct_read_bench -- [--file target/dio-bench.bin] [--size-mib 1024]
//!     [--buf-size 65536] [--depth 8] [--rounds 3]
//! ```
//!
//! The file is created (pseudo-random bytes) if it is missing or has the wrong size. Each pass reads the whole
//! file in order, `buf-size` bytes per read, keeping the last `depth` buffers alive (a window of reads whose
//! data is still being used) and one small long-lived allocation per read (an index entry, as a storage engine
//! keeps): the pattern that fragments glibc's heap when the buffers come from it. Passes alternate
//! (pool, posix_memalign, pool, ...); for each: throughput, RSS growth over the pass start, and the checksum of
//! the bytes read (equal for every pass, or the run fails). Linux only.

#[cfg(target_os = "linux")]
#[path = "dio_common/mod.rs"]
mod dio_common;

#[cfg(target_os = "linux")]
fn main() {
    if let Err(e) = run() {
        eprintln!("direct_read_bench: {e}");
        std::process::exit(1);
    }
}

/// One buffer from `posix_memalign`, freed on drop.
#[cfg(target_os = "linux")]
struct HeapBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

#[cfg(target_os = "linux")]
impl HeapBuf {
    fn new(len: usize, align: usize) -> std::io::Result<HeapBuf> {
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: `p` is a valid out-pointer; align is a power of two multiple of sizeof(void *).
        let r = unsafe { libc::posix_memalign(&mut p, align, len) };
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r));
        }
        let ptr = std::ptr::NonNull::new(p.cast()).ok_or_else(|| std::io::Error::other("null"))?;
        Ok(HeapBuf { ptr, len })
    }
}

#[cfg(target_os = "linux")]
impl std::ops::Deref for HeapBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes from posix_memalign, owned by this value; read only after `read_at` filled them
        // (uninitialised bytes are never read: callers read `buf[..n]` after a read of n bytes).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(target_os = "linux")]
impl std::ops::DerefMut for HeapBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, with `&mut self` for exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from posix_memalign and is freed once.
        unsafe { libc::free(self.ptr.as_ptr().cast()) }
    }
}

#[cfg(target_os = "linux")]
struct Pass {
    mb_s: f64,
    rss_growth: u64,
    rss_peak: u64,
    checksum: u64,
}

/// Reads `file` (length `len`) in order with buffers from `get`, keeping the last `depth` alive.
#[cfg(target_os = "linux")]
fn pass<B: std::ops::DerefMut<Target = [u8]>>(
    file: &std::fs::File,
    len: u64,
    depth: usize,
    mut get: impl FnMut() -> std::io::Result<B>,
) -> std::io::Result<Pass> {
    use std::collections::VecDeque;
    let rss0 = dio_common::rss_bytes();
    let mut peak = rss0;
    let mut window: VecDeque<B> = VecDeque::with_capacity(depth);
    let mut index: Vec<Box<[u64; 5]>> = Vec::new();
    let mut sum = dio_common::Checksum::default();
    let t = std::time::Instant::now();
    let mut offset = 0u64;
    while offset < len {
        if window.len() == depth {
            window.pop_front();
        }
        let mut buf = get()?;
        let n = dio_common::read_full_at(file, &mut buf, offset)?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
        index.push(Box::new([offset, n as u64, 0, 0, 0]));
        window.push_back(buf);
        offset += n as u64;
        if index.len() % 256 == 0 {
            peak = peak.max(dio_common::rss_bytes());
        }
    }
    let elapsed = t.elapsed();
    peak = peak.max(dio_common::rss_bytes());
    drop(window);
    drop(index);
    Ok(Pass {
        mb_s: offset as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
        rss_growth: peak.saturating_sub(rss0),
        rss_peak: peak,
        checksum: sum.finish(),
    })
}

#[cfg(target_os = "linux")]
fn run() -> Result<(), Box<dyn std::error::Error>> {
    use pagepool::{dio, PagePool};
    use std::path::PathBuf;

    let mut path = PathBuf::from("target/dio-bench.bin");
    let (mut size_mib, mut buf_size, mut depth, mut rounds) =
        (1024u64, 64usize << 10, 8usize, 3usize);
    let usage = "usage: direct_read_bench [--file PATH] [--size-mib N] [--buf-size BYTES] [--depth N] [--rounds N]";
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(usage)?;
        let num = || v.parse::<u64>().map_err(|_| usage);
        match a.as_str() {
            "--file" => path = v.clone().into(),
            "--size-mib" => size_mib = num()?,
            "--buf-size" => buf_size = num()? as usize,
            "--depth" => depth = num()?.max(1) as usize,
            "--rounds" => rounds = num()?.max(1) as usize,
            _ => return Err(usage.into()),
        }
    }
    let len = size_mib << 20;
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(len) {
        println!("creating {} ({size_mib} MiB)", path.display());
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut block = vec![0u8; 1 << 20];
        for i in 0..size_mib {
            dio_common::fill_pattern(&mut block, i + 1);
            std::io::Write::write_all(&mut f, &block)?;
        }
        f.into_inner()?.sync_all()?;
    }
    let file = dio_common::open_direct_read(&path)?;
    let align = dio::requirements(&file)?;
    let pool = PagePool::builder()
        .buf_size(buf_size)
        .capacity(depth + 1)
        .prealloc(true)
        .for_direct_io(&file)?
        .build()?;
    let heap_align = pool.alignment();
    println!(
        "{}: {len} bytes, O_DIRECT {align:?}; reads of {} B, {depth} buffers kept alive, {rounds} rounds",
        path.display(),
        pool.buf_size()
    );
    println!(
        "{:<16} {:>6} {:>10} {:>16} {:>14} {:>18}",
        "buffers", "round", "MB/s", "RSS growth (KiB)", "RSS peak (KiB)", "checksum"
    );
    let row = |name: &str, round: usize, p: &Pass| {
        println!(
            "{name:<16} {round:>6} {:>10.0} {:>16} {:>14} {:>18x}",
            p.mb_s,
            p.rss_growth >> 10,
            p.rss_peak >> 10,
            p.checksum
        )
    };
    let mut sums = Vec::new();
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        let p = pass(&file, len, depth, || Ok(pool.acquire()?))?;
        row("pagepool", round, &p);
        rates[0].push(p.mb_s);
        sums.push(p.checksum);
        let size = pool.buf_size();
        let p = pass(&file, len, depth, || HeapBuf::new(size, heap_align))?;
        row("posix_memalign", round, &p);
        rates[1].push(p.mb_s);
        sums.push(p.checksum);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "median: pagepool {a:.0} MB/s, posix_memalign {b:.0} MB/s (ratio {:.2}); pool mapped {} KiB; final RSS {} KiB",
        a / b.max(1e-9),
        pool.stats().mapped_bytes >> 10,
        dio_common::rss_bytes() >> 10
    );
    if sums.windows(2).any(|w| w[0] != w[1]) {
        return Err("passes read different bytes".into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("direct_read_bench: O_DIRECT is only supported on Linux");
    std::process::exit(1);
}
