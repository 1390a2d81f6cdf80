//! Copies a file with O_DIRECT reads and writes through pool buffers, several transfers in flight, then verifies
//! a checksum of the source and the copy (both read back with O_DIRECT).
//!
//! ```sh
//! cargo run --release --example direct_copy -- --create 256 target/dio-src.bin target/dio-copy.bin
//! cargo run --release --example direct_copy -- [--threads 4] [--buf-size 1048576] SRC DST
//! ```
//!
//! `--create MIB` first writes a MIB-mebibyte pseudo-random SRC (plus 3 bytes, so the tail is unaligned).
//! The pool is built with `for_direct_io(&src)`: alignment and buffer size come from the kernel's answer for SRC
//! (printed). The last partial block is written padded to the offset alignment and the copy is then truncated
//! to the source's length. A progress bar shows on files of 64 MiB or more; throughput is printed at the end.
//! Linux only.

#[cfg(target_os = "linux")]
#[path = "dio_common/mod.rs"]
mod dio_common;

#[cfg(target_os = "linux")]
fn main() {
    if let Err(e) = run() {
        eprintln!("direct_copy: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_os = "linux")]
fn run() -> Result<(), Box<dyn std::error::Error>> {
    use indicatif::{ProgressBar, ProgressStyle};
    use pagepool::{dio, PagePool};
    use std::path::PathBuf;
    use std::time::Instant;

    let mut threads = 4usize;
    let mut buf_size = 1usize << 20;
    let mut create: Option<u64> = None;
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    let usage = "usage: direct_copy [--threads N] [--buf-size BYTES] [--create MIB] SRC DST";
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number\n{usage}"))
        };
        match a.as_str() {
            "--threads" => threads = value("--threads")?.max(1) as usize,
            "--buf-size" => buf_size = value("--buf-size")? as usize,
            "--create" => create = Some(value("--create")?),
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            _ => paths.push(a.into()),
        }
    }
    let [src, dst] = <[PathBuf; 2]>::try_from(paths).map_err(|_| usage.to_string())?;

    if let Some(mib) = create {
        let len = (mib << 20) + 3;
        let t = Instant::now();
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src)?);
        let mut block = vec![0u8; 1 << 20];
        let mut left = len;
        let mut seed = 1;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            dio_common::fill_pattern(&mut block[..n], seed);
            std::io::Write::write_all(&mut f, &block[..n])?;
            left -= n as u64;
            seed += 1;
        }
        f.into_inner()?.sync_all()?;
        println!(
            "created {} ({len} bytes) in {:.2?}",
            src.display(),
            t.elapsed()
        );
    }

    let src_file = std::fs::File::open(&src)?;
    {
        // The copy truncates DST first: never let it be SRC under another name.
        use std::os::unix::fs::MetadataExt;
        let s = src_file.metadata()?;
        if let Ok(d) = std::fs::metadata(&dst) {
            if (d.dev(), d.ino()) == (s.dev(), s.ino()) {
                return Err(
                    format!("{} and {} are the same file", src.display(), dst.display()).into(),
                );
            }
        }
    }
    let align = dio::requirements(&src_file)?;
    let pool = PagePool::builder()
        .buf_size(buf_size)
        .capacity(threads)
        .for_direct_io(&src_file)?
        .build()?;
    let len = src_file.metadata()?.len();
    println!(
        "O_DIRECT alignment for {}: memory {} B, offset/length {} B (source: {:?}); pool: {} x {} B buffers, aligned to {} B; {threads} transfers in flight",
        src.display(),
        align.mem_align(),
        align.offset_align(),
        align.source(),
        pool.capacity(),
        pool.buf_size(),
        pool.alignment()
    );

    let bar = if len >= 64 << 20 {
        let bar = ProgressBar::new(len);
        bar.set_style(ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };
    let t = Instant::now();
    let report = dio_common::copy(&src, &dst, &pool, align, threads, &|done| {
        bar.set_position(done)
    })?;
    let copy_time = t.elapsed();
    bar.finish_and_clear();
    let mb_s = |bytes: u64, d: std::time::Duration| bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9);
    println!(
        "copied {} bytes in {:.2?}: {:.0} MB/s ({} bytes written with O_DIRECT, tail truncated to {} bytes)",
        report.bytes,
        copy_time,
        mb_s(report.bytes, copy_time),
        report.written,
        std::fs::metadata(&dst)?.len()
    );

    let t = Instant::now();
    let (a, b) = (
        dio_common::direct_checksum(&src, &pool)?,
        dio_common::direct_checksum(&dst, &pool)?,
    );
    let verify_time = t.elapsed();
    println!(
        "checksum source {a:016x}, copy {b:016x}: {} (verified in {:.2?}, {:.0} MB/s)",
        if a == b { "MATCH" } else { "MISMATCH" },
        verify_time,
        mb_s(2 * report.bytes, verify_time)
    );
    if a != b || std::fs::metadata(&dst)?.len() != len {
        return Err("the copy differs from the source".into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("direct_copy: O_DIRECT is only supported on Linux");
    std::process::exit(1);
}
