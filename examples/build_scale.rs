//! Build cost and bookkeeping: time and RSS growth of `build()` for capacities 2^10, 2^12, ... 2^max (4 KiB
//! buffers, nothing acquired), then the RSS growth of acquiring `n` buffers (each written once) from a pool of
//! capacity 2^acquire_exp, against `n x buf_size`. Linux (reads /proc/self/statm).
//!
//! Run: `cargo run --release --example build_scale -- [max_exp=30] [n=262144] [acquire_exp=30]`

use pagepool::PagePool;
use std::time::Instant;

/// Resident bytes of this process.
#[cfg(target_os = "linux")]
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * pagepool::page_size()
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map_or(default, |a| a.parse().expect("a number"))
}

#[cfg(not(target_os = "linux"))]
fn rss() -> usize {
    0 // no /proc/self/statm: build times only
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (max_exp, n, acquire_exp) = (arg(1, 30), arg(2, 1 << 18), arg(3, 30));
    let buf = 4096;
    println!("| capacity | build time | RSS growth at build |");
    println!("|---|---|---|");
    for exp in (10..=max_exp).step_by(2) {
        let before = rss();
        let t = Instant::now();
        let pool = PagePool::builder()
            .buf_size(buf)
            .capacity(1 << exp)
            .build()?;
        let took = t.elapsed();
        let grown = rss().saturating_sub(before);
        println!(
            "| 2^{exp} | {:.3} ms | {:.1} KiB |",
            took.as_secs_f64() * 1e3,
            grown as f64 / 1024.0
        );
        drop(pool);
    }
    // Acquire n buffers (thread cache 0: every acquire and release goes through the shared freelist), writing
    // one byte per page; then release them all (the freelist links every one of them).
    let pool = PagePool::builder()
        .buf_size(buf)
        .capacity(1 << acquire_exp)
        .thread_cache(0)
        .build()?;
    let mut held = Vec::with_capacity(n);
    held.resize_with(n, || None);
    held.clear();
    let before = rss();
    for _ in 0..n {
        let mut b = pool.acquire()?;
        for page in b.chunks_mut(pagepool::page_size()) {
            page[0] = 1;
        }
        held.push(Some(b));
    }
    let data = n * buf;
    let report = |what: &str, grown: usize| {
        println!(
            "{what} {n} x {buf} B from a 2^{acquire_exp} pool: RSS +{} KiB for {} KiB of buffers: \
             bookkeeping {} B ({:.4}%, {:.2} B per buffer)",
            grown / 1024,
            data / 1024,
            grown as isize - data as isize,
            (grown as f64 - data as f64) * 100.0 / data as f64,
            (grown as f64 - data as f64) / n as f64,
        )
    };
    report("acquired", rss().saturating_sub(before));
    held.clear();
    report("released", rss().saturating_sub(before));
    println!("{:?}", pool.stats());
    Ok(())
}
