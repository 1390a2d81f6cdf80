//! Shared by examples/uring_read.rs and tests/uring.rs (feature `io-uring`): a whole-file O_DIRECT read with
//! io_uring `READ_FIXED` into registered pool buffers, checksummed in file order.
#![allow(dead_code)]

use super::{open_direct_read, Checksum};
use io_uring::{opcode, types, IoUring};
use pagepool::{AlignedBuf, PagePool};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// What [`read_fixed`] read.
#[derive(Debug, Clone, Copy)]
pub struct FixedRead {
    pub bytes: u64,
    pub checksum: u64,
    /// Requests submitted.
    pub requests: u64,
}

/// Reads `path` with O_DIRECT through `ring`: registers every buffer of `pool` (`pool.iovecs()`), keeps up to
/// `depth` `READ_FIXED` requests of one pool buffer each in flight, folds completed blocks into the checksum in
/// file order, and unregisters the buffers at the end. `pool` needs at least `depth` idle pooled buffers.
///
/// A buffer stays owned here until the kernel has completed the request that writes into it: on an error the
/// function still waits for every request in flight before it returns (and drops the buffers).
pub fn read_fixed(
    ring: &mut IoUring,
    path: &Path,
    pool: &PagePool,
    depth: usize,
) -> io::Result<FixedRead> {
    let file = open_direct_read(path)?;
    let len = file.metadata()?.len();
    let iovecs = pool.iovecs().map_err(io::Error::other)?;
    // SAFETY: the iovecs describe pool memory that stays mapped while `pool` lives, which outlives the
    // registration: we unregister below before returning.
    unsafe { ring.submitter().register_buffers(&iovecs) }.map_err(|e| match e.raw_os_error() {
        Some(libc::ENOMEM) => io::Error::new(
            e.kind(),
            format!(
                "register_buffers: {e}: the {} registered bytes are pinned and count against RLIMIT_MEMLOCK \
                 (`ulimit -l`) without CAP_IPC_LOCK; use fewer or smaller buffers or raise the limit",
                pool.capacity() * pool.buf_size()
            ),
        ),
        _ => e,
    })?;
    let result = run(ring, &file, len, pool, depth.max(1));
    let unregistered = ring.submitter().unregister_buffers();
    let read = result?;
    unregistered?;
    Ok(read)
}

fn run(
    ring: &mut IoUring,
    file: &std::fs::File,
    len: u64,
    pool: &PagePool,
    depth: usize,
) -> io::Result<FixedRead> {
    let block = pool.buf_size() as u64;
    let fd = types::Fd(file.as_raw_fd());
    let mut in_flight: HashMap<u64, AlignedBuf> = HashMap::new();
    // Completed buffers waiting for their turn in file order, each truncated to the bytes its read returned.
    let mut done: BTreeMap<u64, AlignedBuf> = BTreeMap::new();
    let (mut next_submit, mut next_fold) = (0u64, 0u64);
    let mut sum = Checksum::default();
    let mut requests = 0u64;
    let mut error: Option<io::Error> = None;
    let blocks = len.div_ceil(block);
    loop {
        // Submit while there is room (buffers waiting to be folded count against the depth too).
        while error.is_none() && next_submit < blocks && in_flight.len() + done.len() < depth {
            let mut buf = match pool.acquire() {
                Ok(b) => b,
                Err(e) => {
                    error = Some(e.into());
                    break;
                }
            };
            let Some(index) = buf.index() else {
                error = Some(io::Error::other(
                    "an overflow buffer is not registered: raise the capacity",
                ));
                break;
            };
            let entry = opcode::ReadFixed::new(fd, buf.as_mut_ptr(), buf.len() as u32, index)
                .offset(next_submit * block)
                .build()
                .user_data(next_submit);
            // SAFETY: the entry points into `buf`, a registered pool buffer that we keep in `in_flight` until
            // its completion arrives, and into nothing else.
            if unsafe { ring.submission().push(&entry) }.is_err() {
                break; // submission queue full: submit what we have first
            }
            in_flight.insert(next_submit, buf);
            next_submit += 1;
            requests += 1;
        }
        if in_flight.is_empty() {
            break;
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The kernel may still write into the buffers in flight: never give them back to the pool.
                std::mem::forget(in_flight);
                return Err(e);
            }
        }
        for cqe in ring.completion() {
            let b = cqe.user_data();
            let mut buf = in_flight
                .remove(&b)
                .expect("completion for a request we made");
            let want = (len - b * block).min(block) as usize;
            match cqe.result() {
                r if r < 0 => {
                    error.get_or_insert(io::Error::from_raw_os_error(-r));
                }
                r if r as usize != want => {
                    error.get_or_insert(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("short read at block {b}: {r} of {want} bytes"),
                    ));
                }
                r => {
                    buf.truncate(r as usize);
                    done.insert(b, buf);
                }
            }
        }
        while let Some(buf) = done.remove(&next_fold) {
            sum.update(&buf);
            next_fold += 1;
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(FixedRead {
        bytes: len,
        checksum: sum.finish(),
        requests,
    })
}
