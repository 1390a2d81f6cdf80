//! Fallback backend for targets without a virtual-memory backend yet: the crate compiles, and every attempt to
//! map memory returns `ErrorKind::Unsupported`.

use std::io;
use std::ptr::NonNull;

pub(crate) fn page_size() -> usize {
    4096
}

/// Never constructed on this target.
#[derive(Debug)]
pub(crate) struct Mapping {
    never: std::convert::Infallible,
}

impl Mapping {
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        match self.never {}
    }
    pub(crate) fn reserved(&self) -> usize {
        match self.never {}
    }
}

pub(crate) fn map(
    _reserve: usize,
    _len: usize,
    _align: usize,
    _populate: bool,
) -> io::Result<Mapping> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "pagepool has no virtual-memory backend for this target",
    ))
}

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "pagepool has no virtual-memory backend for this target",
    )
}

pub(crate) fn map_hugetlb(_len: usize, _populate: bool) -> io::Result<Mapping> {
    Err(unsupported())
}

pub(crate) fn supports(_advice: super::Advice) -> bool {
    false
}

pub(crate) fn advise(_ptr: NonNull<u8>, _len: usize, _advice: super::Advice) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn decommit(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Err(unsupported())
}

/// Nothing is ever mapped here, so nothing is ever uncommitted.
pub(crate) fn commit(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, not(loom)))]
pub(crate) fn committed(_ptr: NonNull<u8>, _len: usize) -> bool {
    true
}

pub(crate) fn lock(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn protect_none(_ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn memlock_limit() -> Option<usize> {
    None
}

pub(crate) fn lock_exempt() -> bool {
    false
}

// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier() -> bool {
    false
}

// Reclaim calls these outside loom only (loom models the barrier as a fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier_ready() -> bool {
    false
}

pub(crate) fn max_map_count() -> Option<usize> {
    None
}

pub(crate) fn touch(_ptr: NonNull<u8>, _len: usize) {}
