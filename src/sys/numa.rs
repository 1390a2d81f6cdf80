//! NUMA calls: the online node set (`/sys/devices/system/node/online`), `mbind` and `getcpu` (Linux). Elsewhere
//! [`supported`] says no and the builder refuses every non-default [`NumaPolicy`](crate::NumaPolicy) with
//! `ConfigError::Unsupported`; the functions below then report `Unsupported` or node 0.

use std::io;
use std::ptr::NonNull;

/// Node ids at or above this are refused at build (`ConfigError::NumaNodeTooLarge`): the largest
/// `MAX_NUMNODES` a Linux kernel can be built with (`CONFIG_NODES_SHIFT` is at most 10).
pub(crate) const MAX_NODES: usize = 1 << 10;

/// The memory policy mode given to `mbind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `MPOL_PREFERRED`: allocate on the (single) node, fall back to others when it is out of memory.
    Preferred,
    /// `MPOL_BIND`: allocate only on the node set.
    Bind,
    /// `MPOL_INTERLEAVE`: spread the pages round-robin over the node set.
    Interleave,
}

/// True if [`mbind`] and [`current_node`] work on this platform.
pub(crate) fn supported() -> bool {
    cfg!(target_os = "linux")
}

/// The online nodes, ascending, from `/sys/devices/system/node/online`; `None` when it cannot be read (no
/// sysfs, or not Linux).
pub(crate) fn online_nodes() -> Option<Vec<usize>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let online = std::fs::read_to_string("/sys/devices/system/node/online").ok()?;
    parse_list(online.trim(), MAX_NODES)
}

/// The most CPU ids [`cpu_nodes`] maps.
const MAX_CPUS: usize = 1 << 16;

/// The node of each CPU id (index), from `/sys/devices/system/node/node<N>/cpulist` of every online node;
/// `None` when sysfs cannot be read. CPUs no list names (offline) map to node 0.
pub(crate) fn cpu_nodes() -> Option<Vec<u16>> {
    let mut table = Vec::new();
    for node in online_nodes()? {
        let path = format!("/sys/devices/system/node/node{node}/cpulist");
        for cpu in parse_list(std::fs::read_to_string(path).ok()?.trim(), MAX_CPUS)? {
            if table.len() <= cpu {
                table.resize(cpu + 1, 0);
            }
            table[cpu] = node as u16;
        }
    }
    Some(table)
}

/// Parses the kernel's node list format (`0`, `0-3`, `0,2-5,7`); `None` if malformed.
#[cfg(test)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn parse_node_list(s: &str) -> Option<Vec<usize>> {
    parse_list(s, MAX_NODES)
}

/// Parses the kernel's list format (`0`, `0-3`, `0,2-5,7`) of ids below `bound`; `None` if malformed.
fn parse_list(s: &str, bound: usize) -> Option<Vec<usize>> {
    let mut nodes = Vec::new();
    if s.is_empty() {
        return Some(nodes);
    }
    for part in s.split(',') {
        let (lo, hi): (usize, usize) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
            None => {
                let n = part.trim().parse().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi >= bound {
            return None;
        }
        nodes.extend(lo..=hi);
    }
    nodes.sort_unstable();
    nodes.dedup();
    Some(nodes)
}

/// Sets the memory policy of `[ptr, ptr + len)`, a page-aligned range of a fresh mapping the caller owns and
/// has not touched yet, so that every page is allocated under it (`mbind(2)`, no flags). `nodes` is non-empty,
/// each below [`MAX_NODES`], and a single node for [`Mode::Preferred`].
pub(crate) fn mbind(ptr: NonNull<u8>, len: usize, mode: Mode, nodes: &[usize]) -> io::Result<()> {
    #[cfg(all(test, not(loom)))]
    super::fault::check_call()?;
    imp::mbind(ptr, len, mode, nodes)
}

/// The NUMA node of the CPU the calling thread runs on now (`getcpu(2)`); 0 where unknown. The thread may
/// move right after: a hint. A system call: see [`current_cpu`] for the fast path.
pub(crate) fn current_node() -> usize {
    imp::current_node()
}

/// The CPU the calling thread runs on now (`sched_getcpu`, glibc's and musl's wrapper of `getcpu`, served by
/// the vDSO without entering the kernel), `None` where unknown. With [`cpu_nodes`] it gives the current node
/// in a few nanoseconds.
pub(crate) fn current_cpu() -> Option<usize> {
    imp::current_cpu()
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{Mode, MAX_NODES};
    use std::io;
    use std::ptr::NonNull;

    const MPOL_PREFERRED: libc::c_long = 1;
    const MPOL_BIND: libc::c_long = 2;
    const MPOL_INTERLEAVE: libc::c_long = 3;
    const BITS: usize = libc::c_ulong::BITS as usize;

    pub(super) fn mbind(
        ptr: NonNull<u8>,
        len: usize,
        mode: Mode,
        nodes: &[usize],
    ) -> io::Result<()> {
        let top = nodes.iter().copied().max().unwrap_or(0);
        if top >= MAX_NODES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NUMA node {top} is at or above {MAX_NODES}"),
            ));
        }
        let mut mask = vec![0 as libc::c_ulong; top / BITS + 1];
        for &n in nodes {
            mask[n / BITS] |= 1 << (n % BITS);
        }
        let mode = match mode {
            Mode::Preferred => MPOL_PREFERRED,
            Mode::Bind => MPOL_BIND,
            Mode::Interleave => MPOL_INTERLEAVE,
        };
        // The kernel reads `maxnode - 1` bits (a historical off-by-one that every caller, libnuma included,
        // compensates for), so pass one more than the bits of the mask.
        let maxnode = (mask.len() * BITS + 1) as libc::c_ulong;
        // SAFETY: `[ptr, ptr + len)` is a page-aligned range of a live private anonymous mapping the caller owns;
        // mbind only sets the policy its future page allocations follow (no flags: nothing is moved). The mask
        // is a live array of `maxnode - 1` bits that the kernel only reads.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                ptr.as_ptr(),
                len as libc::c_ulong,
                mode,
                mask.as_ptr(),
                maxnode,
                0 as libc::c_uint,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn current_cpu() -> Option<usize> {
        // SAFETY: sched_getcpu takes no arguments and only returns a number (or -1).
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).ok()
    }

    pub(super) fn current_node() -> usize {
        let mut cpu: libc::c_uint = 0;
        let mut node: libc::c_uint = 0;
        // SAFETY: getcpu writes the two integers it is given (both valid and exclusively borrowed); the third
        // argument (a cache, unused since Linux 2.6.24) may be null.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_getcpu,
                &mut cpu as *mut libc::c_uint,
                &mut node as *mut libc::c_uint,
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        if rc == 0 {
            node as usize
        } else {
            0
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Mode;
    use std::io;
    use std::ptr::NonNull;

    pub(super) fn mbind(
        _ptr: NonNull<u8>,
        _len: usize,
        _mode: Mode,
        _nodes: &[usize],
    ) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "NUMA placement (mbind) is Linux-only",
        ))
    }

    pub(super) fn current_node() -> usize {
        0
    }

    pub(super) fn current_cpu() -> Option<usize> {
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn node_lists_parse() {
        assert_eq!(parse_node_list("0"), Some(vec![0]));
        assert_eq!(parse_node_list("0-3"), Some(vec![0, 1, 2, 3]));
        assert_eq!(parse_node_list("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        assert_eq!(parse_node_list(""), Some(vec![]));
        assert_eq!(parse_node_list("3-1"), None);
        assert_eq!(parse_node_list("x"), None);
        assert_eq!(parse_node_list("0-5000"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_node_zero_online() {
        let nodes = online_nodes().expect("sysfs node list");
        assert!(nodes.contains(&0), "{nodes:?}");
        assert!(nodes.contains(&current_node()), "{nodes:?}");
        let table = cpu_nodes().expect("sysfs cpu lists");
        let cpu = current_cpu().expect("sched_getcpu");
        assert!(cpu < table.len(), "cpu {cpu} of {table:?}");
        assert!(nodes.contains(&usize::from(table[cpu])));
    }
}
