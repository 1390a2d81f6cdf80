//! Reads a file with O_DIRECT through tokio-uring into pool buffers (`AlignedBuf` is a
//! `tokio_uring::buf::IoBufMut`), keeps `--depth` reads in flight, prints the checksum and the throughput, and
//! verifies the checksum against an ordinary buffered read. Needs the `tokio-uring` feature and Linux.
//!
//! ```sh
//! cargo run --release --features tokio-uring --example tokio_uring_read -- --create 256 target/rt-src.bin
//! cargo run --release --features tokio-uring --example tokio_uring_read -- [--depth 8] [--buf-size 524288] FILE
//! ```
//!
//! `--create MIB` first writes a MIB-mebibyte pseudo-random FILE plus 3 bytes, so the last read is short. The
//! pool is built with `for_direct_io(&file)` (alignment and `buf_size` fit the file's O_DIRECT requirements)
//! and `capacity = depth`. Each read takes a buffer from the pool and empties it (`clear()`: tokio-uring's
//! `set_init` only raises the length); the runtime owns it while the kernel fills it and hands it back with
//! `len()` = the bytes read; it goes home when dropped. Where the kernel
//! refuses `io_uring_setup`, it prints `SKIPPED: tokio_uring_read: ...` and exits 0.

#[cfg(target_os = "linux")]
#[path = "dio_common/mod.rs"]
mod dio_common;

#[cfg(target_os = "linux")]
fn main() {
    if let Err(e) = run() {
        eprintln!("tokio_uring_read: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_os = "linux")]
fn run() -> Result<(), Box<dyn std::error::Error>> {
    use futures::stream::{FuturesOrdered, StreamExt};
    use pagepool::{dio, PagePool};
    use std::io;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;
    use std::time::Instant;

    let usage = "usage: tokio_uring_read [--depth N] [--buf-size BYTES] [--create MIB] FILE";
    let (mut depth, mut buf_size, mut create) = (8usize, 512usize << 10, None::<u64>);
    let mut path: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num =
            || -> Result<u64, &str> { args.next().and_then(|v| v.parse().ok()).ok_or(usage) };
        match a.as_str() {
            "--depth" => depth = num()?.clamp(1, 1024) as usize,
            "--buf-size" => buf_size = num()? as usize,
            "--create" => create = Some(num()?),
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            _ if path.is_none() => path = Some(a.into()),
            _ => return Err(usage.into()),
        }
    }
    let path = path.ok_or(usage)?;
    if let Some(mib) = create {
        let len = dio_common::create_pattern_file(&path, mib, 3)?;
        println!("created {} ({len} bytes)", path.display());
    }
    if let Err(e) = io_uring::IoUring::new(8) {
        println!("SKIPPED: tokio_uring_read: io_uring_setup refused: {e}");
        return Ok(());
    }

    let std_file = std::fs::File::open(&path)?;
    let len = std_file.metadata()?.len();
    let align = dio::requirements(&std_file)?;
    let pool = PagePool::builder()
        .buf_size(buf_size)
        .capacity(depth)
        .for_direct_io(&std_file)?
        .build()?;
    drop(std_file);
    println!(
        "{}: O_DIRECT {align:?}; {depth} reads of {} B in flight through tokio-uring",
        path.display(),
        pool.buf_size()
    );

    let block = pool.buf_size() as u64;
    let t = Instant::now();
    let (checksum, reads) = tokio_uring::start(async {
        let file = tokio_uring::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .await?;
        let mut sum = dio_common::Checksum::default();
        let mut in_flight = FuturesOrdered::new();
        let (mut next, mut reads) = (0u64, 0u64);
        loop {
            while next < len && in_flight.len() < depth {
                // capacity = depth: never more buffers out than the pool holds.
                let mut buf = pool.acquire()?;
                // Empty: tokio-uring's `set_init` only raises the length, so `len()` becomes the bytes read.
                buf.clear();
                in_flight.push_back(file.read_at(buf, next));
                next += block;
            }
            // Completions are taken in file order, so the checksum folds the bytes in order.
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
        drop(in_flight);
        file.close().await?;
        Ok::<_, io::Error>((sum.finish(), reads))
    })?;
    let elapsed = t.elapsed();
    println!(
        "read {len} bytes in {reads} reads in {elapsed:.2?}: {:.0} MB/s, checksum {checksum:016x}",
        len as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
    );
    let expected = dio_common::buffered_checksum(&path)?;
    let verdict = if expected == checksum {
        "MATCH"
    } else {
        "MISMATCH"
    };
    println!("buffered read checksum {expected:016x}: {verdict}");
    if expected != checksum {
        return Err("the direct reads read different bytes".into());
    }
    let s = pool.stats();
    println!(
        "pool: {} acquires, {} overflow maps, {} in use at the end",
        s.acquires, s.overflow_maps, s.in_use
    );
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tokio_uring_read: io_uring is Linux only");
    std::process::exit(1);
}
