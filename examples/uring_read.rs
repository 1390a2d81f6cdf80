//! Reads a file with io_uring `READ_FIXED` (O_DIRECT) into registered pool buffers and verifies its checksum
//! against an ordinary buffered read. Needs the `io-uring` feature and Linux.
//!
//! ```sh
//! cargo run --release --features io-uring --example uring_read -- --create 256 target/uring-src.bin
//! cargo run --release --features io-uring --example uring_read -- [--depth 8] [--buf-size 524288] FILE
//! ```
//!
//! `--create MIB` first writes a MIB-mebibyte pseudo-random FILE (plus 3 bytes, so the tail is unaligned).
//! The pool (`for_direct_io(&file)`, capacity = depth) is registered whole with
//! `Submitter::register_buffers(&pool.iovecs()?)`; each request names its buffer by `AlignedBuf::index()`.
//! Registered pages are pinned: without CAP_IPC_LOCK, depth x buf-size must fit in RLIMIT_MEMLOCK.

#[cfg(target_os = "linux")]
#[path = "dio_common/mod.rs"]
mod dio_common;

#[cfg(target_os = "linux")]
fn main() {
    if let Err(e) = run() {
        eprintln!("uring_read: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_os = "linux")]
fn run() -> Result<(), Box<dyn std::error::Error>> {
    use pagepool::{dio, PagePool};
    use std::io::Read;
    use std::path::PathBuf;
    use std::time::Instant;

    let usage = "usage: uring_read [--depth N] [--buf-size BYTES] [--create MIB] FILE";
    // 8 x 512 KiB = 4 MiB registered: within the common 8 MiB RLIMIT_MEMLOCK.
    let (mut depth, mut buf_size, mut create) = (8usize, 512usize << 10, None::<u64>);
    let mut path: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num =
            || -> Result<u64, &str> { args.next().and_then(|v| v.parse().ok()).ok_or(usage) };
        match a.as_str() {
            "--depth" => depth = num()?.clamp(1, 4096) as usize,
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
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mib {
            dio_common::fill_pattern(&mut block, i + 1);
            std::io::Write::write_all(&mut f, &block)?;
        }
        std::io::Write::write_all(&mut f, b"end")?;
        f.into_inner()?.sync_all()?;
        println!("created {} ({} bytes)", path.display(), (mib << 20) + 3);
    }

    let file = std::fs::File::open(&path)?;
    let align = dio::requirements(&file)?;
    let pool = PagePool::builder()
        .buf_size(buf_size)
        .capacity(depth)
        .for_direct_io(&file)?
        .build()?;
    let mut ring = io_uring::IoUring::new(depth.next_power_of_two() as u32)
        .map_err(|e| format!("io_uring_setup refused: {e}"))?;
    println!(
        "{}: O_DIRECT {align:?}; {} registered buffers of {} B, {depth} READ_FIXED in flight",
        path.display(),
        pool.capacity(),
        pool.buf_size()
    );

    let t = Instant::now();
    let r = dio_common::uring::read_fixed(&mut ring, &path, &pool, depth)?;
    let elapsed = t.elapsed();
    println!(
        "read {} bytes in {} requests in {elapsed:.2?}: {:.0} MB/s, checksum {:016x}",
        r.bytes,
        r.requests,
        r.bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
        r.checksum
    );

    // The reference: an ordinary buffered read of the same file.
    let mut sum = dio_common::Checksum::default();
    let mut f = std::fs::File::open(&path)?;
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut block)?;
        if n == 0 {
            break;
        }
        sum.update(&block[..n]);
    }
    let expected = sum.finish();
    println!(
        "buffered read checksum {expected:016x}: {}",
        if expected == r.checksum {
            "MATCH"
        } else {
            "MISMATCH"
        }
    );
    if expected != r.checksum {
        return Err("READ_FIXED read different bytes".into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("uring_read: io_uring is Linux only");
    std::process::exit(1);
}
