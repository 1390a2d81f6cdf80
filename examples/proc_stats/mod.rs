//! What the benchmark examples share (`seed_workload.rs` and `overflow_burst.rs`, through `#[path]`): their
//! own resident set size and its peak from `/proc/self` (Linux), and the `kind k=v k=v ...` lines a child run
//! reports to its parent.

use std::collections::HashMap;
use std::{fs, io};

/// Resident set size of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> io::Result<u64> {
    let statm = fs::read_to_string("/proc/self/statm")?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/self/statm"))?;
    Ok(resident * pagepool::page_size() as u64)
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`).
pub fn hwm_bytes() -> io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmHWM in /proc/self/status"))
}

/// Splits `kind k=v k=v ...`.
pub fn parse_line(line: &str) -> Option<(&str, HashMap<&str, &str>)> {
    let mut words = line.split_whitespace();
    let kind = words.next()?;
    Some((kind, words.filter_map(|w| w.split_once('=')).collect()))
}

pub fn field<T: std::str::FromStr>(kv: &HashMap<&str, &str>, key: &str) -> Result<T, String> {
    kv.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("child output lacks a valid `{key}`"))
}
