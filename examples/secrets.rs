//! The README's "Handling secrets" example: a pool of decryption scratch buffers with every secret-handling
//! option on (Linux; `dont_dump` and `on_fork` are Linux-only).
//!
//! Run: `cargo run --example secrets`

use pagepool::{ForkPolicy, LockPolicy, PagePool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = PagePool::builder()
        .buf_size(16 << 10)
        .capacity(256)
        .zero_on_release(true) // every byte zeroed (volatile writes) before reuse or unmap
        .lock_memory(LockPolicy::BestEffort) // mlock what fits under RLIMIT_MEMLOCK: never swapped out
        .dont_dump(true) // MADV_DONTDUMP: not in core dumps
        .on_fork(ForkPolicy::WipeOnFork) // a forked child sees zeros
        .guard_pages(true) // PROT_NONE page before and after every buffer
        .build()?;
    let mut page = scratch.acquire()?;
    page[..5].copy_from_slice(b"plain"); // decrypt into it...
    page.truncate(5); // the plaintext's length (the capacity stays 16 KiB)
    drop(page); // ...and its whole capacity is zeroed here
    println!("{:?}", scratch.stats());
    Ok(())
}
