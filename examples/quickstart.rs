//! The smallest tour of the pool: build, acquire past capacity, watch the stats.
//!
//! Run: `cargo run --release --example quickstart`

use pagepool::{OverflowPolicy, PagePool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = PagePool::builder()
        .buf_size(8192)
        .capacity(4)
        .overflow(OverflowPolicy::Map)
        .build()?;
    println!("page size {} bytes; {pool:?}", pagepool::page_size());

    let mut held = Vec::new();
    for i in 0..6u8 {
        let mut buf = pool.acquire()?;
        buf.fill(i);
        println!(
            "buffer {i}: {:p}, {} bytes, {}",
            buf.as_ptr(),
            buf.len(),
            if buf.is_overflow() {
                "overflow (own mapping)"
            } else {
                "pooled"
            }
        );
        held.push(buf);
    }
    println!("while held: {:?}", pool.stats());
    drop(held);
    println!("after drop: {:?}", pool.stats());
    Ok(())
}
