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
    pub(crate) fn len(&self) -> usize {
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
