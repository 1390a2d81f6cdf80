//! Reads a file with O_DIRECT through monoio (its io_uring driver, `RuntimeBuilder::<IoUringDriver>`) into pool buffers (`AlignedBuf` is a
//! `monoio::buf::IoBufMut`), keeps `--depth` reads in flight, prints the checksum and the throughput, and
//! verifies the checksum against an ordinary buffered read. Needs the `monoio` feature and Linux.
//!
//! ```sh
//! cargo run --release --features monoio --example monoio_read -- --create 256 target/rt-src.bin
//! cargo run --release --features monoio --example monoio_read -- [--depth 8] [--buf-size 524288] FILE
//! ```
//!
//! `--create MIB` first writes a MIB-mebibyte pseudo-random FILE plus 3 bytes, so the last read is short. The
//! pool is built with `for_direct_io(&file)` (alignment and `buf_size` fit the file's O_DIRECT requirements)
//! and `capacity = depth`. Each read takes a buffer from the pool (full, as `acquire` returns it); the runtime
//! owns it while the kernel fills it and hands it back with `len()` = the bytes read (monoio's `set_init` sets
//! the length); it goes home when dropped. Where the kernel
//! refuses `io_uring_setup`, it prints `SKIPPED: monoio_read: ...` and exits 0.

#[cfg(target_os = "linux")]
#[path = "dio_common/mod.rs"]
mod dio_common;

#[cfg(target_os = "linux")]
fn main() {
    if let Err(e) = run() {
        eprintln!("monoio_read: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_os = "linux")]
fn run() -> Result<(), Box<dyn std::error::Error>> {
    use std::io;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Instant;

    let usage = "usage: monoio_read [--depth N] [--buf-size BYTES] [--create MIB] FILE";
    let Some(args) = dio_common::read::ReadArgs::parse(usage, 1024)? else {
        return Ok(());
    };
    let Some(dio_common::read::Prepared { pool, len }) =
        dio_common::read::prepare("monoio_read", "monoio", &args)?
    else {
        return Ok(());
    };
    let (depth, path) = (args.depth, &args.path);

    let t = Instant::now();
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(depth.next_power_of_two().max(8) as u32)
        .build()?;
    let (checksum, reads) = rt.block_on(async {
        let file = monoio::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .await?;
        // Full from `acquire`: monoio's `set_init` sets the length to the bytes read.
        let read = dio_common::read::read_in_order(&pool, len, depth, |buf, offset| {
            file.read_at(buf, offset)
        })
        .await?;
        file.close().await?;
        Ok::<_, io::Error>(read)
    })?;
    dio_common::read::print_read(len, reads, "reads", t.elapsed(), checksum);
    dio_common::read::verify(path, checksum, "the direct reads read different bytes")?;
    dio_common::read::print_pool_stats(&pool);
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("monoio_read: io_uring is Linux only");
    std::process::exit(1);
}
