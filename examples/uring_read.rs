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
    use std::time::Instant;

    let usage = "usage: uring_read [--depth N] [--buf-size BYTES] [--create MIB] FILE";
    // 8 x 512 KiB = 4 MiB registered: within the common 8 MiB RLIMIT_MEMLOCK.
    let Some(args) = dio_common::read::ReadArgs::parse(usage, 4096)? else {
        return Ok(());
    };
    let (depth, path) = (args.depth, &args.path);
    if let Some(mib) = args.create {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mib {
            dio_common::fill_pattern(&mut block, i + 1);
            std::io::Write::write_all(&mut f, &block)?;
        }
        std::io::Write::write_all(&mut f, b"end")?;
        f.into_inner()?.sync_all()?;
        println!("created {} ({} bytes)", path.display(), (mib << 20) + 3);
    }

    let (pool, align, _) = dio_common::read::direct_pool(&args)?;
    let mut ring = io_uring::IoUring::new(depth.next_power_of_two() as u32)
        .map_err(|e| format!("io_uring_setup refused: {e}"))?;
    println!(
        "{}: O_DIRECT {align:?}; {} registered buffers of {} B, {depth} READ_FIXED in flight",
        path.display(),
        pool.capacity(),
        pool.buf_size()
    );

    let t = Instant::now();
    let r = dio_common::uring::read_fixed(&mut ring, path, &pool, depth)?;
    dio_common::read::print_read(r.bytes, r.requests, "requests", t.elapsed(), r.checksum);
    // The reference: an ordinary buffered read of the same file.
    dio_common::read::verify(path, r.checksum, "READ_FIXED read different bytes")?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("uring_read: io_uring is Linux only");
    std::process::exit(1);
}
