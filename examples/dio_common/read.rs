//! Shared by the whole-file read examples (examples/uring_read.rs, tokio_uring_read.rs, monoio_read.rs): their
//! command line, the pool built for the file, the io_uring SKIPPED check, and the checks printed at the end.
#![allow(dead_code)]

use pagepool::dio::{self, DioAlign};
use pagepool::PagePool;
use std::error::Error;
use std::path::{Path, PathBuf};

/// `[--depth N] [--buf-size BYTES] [--create MIB] FILE`.
pub struct ReadArgs {
    pub depth: usize,
    pub buf_size: usize,
    pub create: Option<u64>,
    pub path: PathBuf,
}

impl ReadArgs {
    /// Parses the process arguments; `--depth` is clamped to `1..=max_depth`. `None` after `--help` (the usage
    /// is printed); a bad command line is an error that says `usage`.
    pub fn parse(usage: &'static str, max_depth: u64) -> Result<Option<ReadArgs>, Box<dyn Error>> {
        let (mut depth, mut buf_size, mut create) = (8usize, 512usize << 10, None::<u64>);
        let mut path: Option<PathBuf> = None;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut num =
                || -> Result<u64, &str> { args.next().and_then(|v| v.parse().ok()).ok_or(usage) };
            match a.as_str() {
                "--depth" => depth = num()?.clamp(1, max_depth) as usize,
                "--buf-size" => buf_size = num()? as usize,
                "--create" => create = Some(num()?),
                "-h" | "--help" => {
                    println!("{usage}");
                    return Ok(None);
                }
                _ if path.is_none() => path = Some(a.into()),
                _ => return Err(usage.into()),
            }
        }
        let path = path.ok_or(usage)?;
        Ok(Some(ReadArgs {
            depth,
            buf_size,
            create,
            path,
        }))
    }
}

/// The file's length and O_DIRECT requirements, and a pool of `depth` buffers built `for_direct_io` for it.
pub fn direct_pool(args: &ReadArgs) -> Result<(PagePool, DioAlign, u64), Box<dyn Error>> {
    let file = std::fs::File::open(&args.path)?;
    let len = file.metadata()?.len();
    let align = dio::requirements(&file)?;
    let pool = PagePool::builder()
        .buf_size(args.buf_size)
        .capacity(args.depth)
        .for_direct_io(&file)?
        .build()?;
    Ok((pool, align, len))
}

/// What [`prepare`] set up for a runtime's reads.
pub struct Prepared {
    pub pool: PagePool,
    /// The file's length.
    pub len: u64,
}

/// For the runtime examples (`name` reads through `runtime`): creates the file if asked (the pattern plus 3
/// bytes), prints `SKIPPED: ...` and returns `None` where the kernel refuses `io_uring_setup`, builds the pool
/// and prints the header line.
pub fn prepare(
    name: &str,
    runtime: &str,
    args: &ReadArgs,
) -> Result<Option<Prepared>, Box<dyn Error>> {
    let path = &args.path;
    if let Some(mib) = args.create {
        let len = super::create_pattern_file(path, mib, 3)?;
        println!("created {} ({len} bytes)", path.display());
    }
    if let Err(e) = io_uring::IoUring::new(8) {
        println!("SKIPPED: {name}: io_uring_setup refused: {e}");
        return Ok(None);
    }
    let (pool, align, len) = direct_pool(args)?;
    println!(
        "{}: O_DIRECT {align:?}; {} reads of {} B in flight through {runtime}",
        path.display(),
        args.depth,
        pool.buf_size()
    );
    Ok(Some(Prepared { pool, len }))
}

/// Prints the throughput line of `len` bytes read in `count` `unit` ("reads", "requests").
pub fn print_read(len: u64, count: u64, unit: &str, elapsed: std::time::Duration, checksum: u64) {
    println!(
        "read {len} bytes in {count} {unit} in {elapsed:.2?}: {:.0} MB/s, checksum {checksum:016x}",
        len as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
    );
}

/// Checks `checksum` against an ordinary buffered read of `path` and prints the verdict; a mismatch is the
/// error `mismatch`.
pub fn verify(path: &Path, checksum: u64, mismatch: &'static str) -> Result<(), Box<dyn Error>> {
    let expected = super::buffered_checksum(path)?;
    let verdict = if expected == checksum {
        "MATCH"
    } else {
        "MISMATCH"
    };
    println!("buffered read checksum {expected:016x}: {verdict}");
    if expected != checksum {
        return Err(mismatch.into());
    }
    Ok(())
}

/// Prints the pool's counters at the end.
pub fn print_pool_stats(pool: &PagePool) {
    let s = pool.stats();
    println!(
        "pool: {} acquires, {} overflow maps, {} in use at the end",
        s.acquires, s.overflow_maps, s.in_use
    );
}

/// Reads the `len` bytes of a file in pool-buffer blocks, `depth` reads in flight (`pool` holds `depth`
/// buffers: never more out than that), through `read_at` (a runtime's read of a fresh buffer at an offset,
/// which hands back the buffer with `len()` = the bytes read). Completions are taken in file order, so the
/// checksum folds the bytes in order. Returns the checksum and the reads made.
pub async fn read_in_order<F, Fut>(
    pool: &PagePool,
    len: u64,
    depth: usize,
    mut read_at: F,
) -> std::io::Result<(u64, u64)>
where
    F: FnMut(pagepool::AlignedBuf, u64) -> Fut,
    Fut: std::future::Future<Output = (std::io::Result<usize>, pagepool::AlignedBuf)>,
{
    use futures::stream::{FuturesOrdered, StreamExt};
    use std::io;
    let block = pool.buf_size() as u64;
    let mut sum = super::Checksum::default();
    let mut in_flight = FuturesOrdered::new();
    let (mut next, mut reads) = (0u64, 0u64);
    loop {
        while next < len && in_flight.len() < depth {
            in_flight.push_back(read_at(pool.acquire()?, next));
            next += block;
        }
        let Some((res, buf)) = in_flight.next().await else {
            break;
        };
        let n = res?;
        let want = (len - reads * block).min(block) as usize;
        if n != want || buf.len() != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read {reads}: {n} bytes, len() {}, expected {want}",
                    buf.len()
                ),
            ));
        }
        sum.update(&buf);
        reads += 1;
    }
    Ok((sum.finish(), reads))
}
