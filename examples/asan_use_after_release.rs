//! A deliberate use after release, for `ci/sanitizers.sh` to prove AddressSanitizer catches it.
//!
//! Built with `-Zsanitizer=address --cfg pagepool_asan`, the pool poisons a pooled buffer's bytes when the
//! buffer is released, so the read below must abort with an ASan `use-after-poison` report. Without the cfg it
//! just prints the byte: pooled memory stays mapped while the pool lives, which is exactly why a use after
//! release would otherwise go unnoticed. Not a usage example.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = pagepool::PagePool::builder().capacity(4).build()?;
    let mut buf = pool.acquire()?;
    buf[0] = 42;
    let stale: *const u8 = buf.as_ptr();
    drop(buf);
    // SAFETY: none; this read is the bug under test. The page is still mapped (the pool holds it), so without
    // ASan it reads a stale byte instead of faulting.
    let byte = unsafe { std::ptr::read_volatile(stale) };
    println!("read {byte} through a released buffer: use after release went unnoticed");
    Ok(())
}
