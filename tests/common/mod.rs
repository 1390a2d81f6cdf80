//! Helpers shared by the integration tests: OS mapping inspection (/proc/self/maps on Linux, `VirtualQuery` on
//! Windows) and a tracing event recorder.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard};

/// Serialises the tests of one file that count mappings: libtest runs tests on parallel threads, whose
/// stacks and allocations would otherwise move the counts.
pub fn maps_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines of /proc/self/maps: one per VMA.
#[cfg(target_os = "linux")]
pub fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// The /proc/self/maps line whose range contains `addr`, if any.
#[cfg(target_os = "linux")]
pub fn mapping_of(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .find(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let lo = usize::from_str_radix(lo, 16).unwrap();
            let hi = usize::from_str_radix(hi, 16).unwrap();
            (lo..hi).contains(&addr)
        })
        .map(str::to_owned)
}

// "Address `a` is in /proc/self/maps" after a pool unmapped it does not prove a leak: any other mapping of
// the process may be placed over `a` before the check reads the file (a starting thread's sigaltstack, a guard
// page plus 8 KiB, has landed in a dead pool's 16 KiB hole). So tests tag the buffers they will check while
// they hold them (`tag`: MADV_DONTDUMP, the VMA flag `dd`), and `tagged_mapping_of` reports only a tagged
// mapping. Sound because only MADV_DODUMP clears `dd` (nothing in these tests calls it, nor do they enable the
// pool's `dont_dump` policy), a VMA split copies its flags and VMAs merge only with equal flags: while the
// pool's tagged page is mapped, the VMA holding it has `dd`; a mapping made later has it only if tagged.
// (tests/proptest_model.rs explains the same with its own copy, which reads into preallocated buffers.)

/// Tags a buffer this test holds (see above). Only a VMA flag changes; never the bytes or the protection.
#[cfg(target_os = "linux")]
pub fn tag(buf: &[u8]) {
    // SAFETY: the range is a buffer the caller holds: page-aligned, whole pages, inside a live private
    // anonymous mapping. MADV_DONTDUMP sets a VMA flag only.
    let rc = unsafe {
        libc::madvise(
            buf.as_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MADV_DONTDUMP,
        )
    };
    assert_eq!(
        rc,
        0,
        "madvise(MADV_DONTDUMP) on {:p}: {}",
        buf.as_ptr(),
        std::io::Error::last_os_error()
    );
}

/// The smaps header and flags of the tagged (`dd`) mapping containing `addr`, if any; an untagged mapping
/// there means the tagged page is gone and someone else's mapping took its place.
#[cfg(target_os = "linux")]
pub fn tagged_mapping_of(addr: usize) -> Option<String> {
    mapping_of(addr)?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut header: Option<&str> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                header = (lo..hi).contains(&addr).then_some(line);
                continue;
            }
        }
        if let (Some(h), Some(flags)) = (header, line.strip_prefix("VmFlags:")) {
            if flags.split_whitespace().any(|f| f == "dd") {
                return Some(format!("{h} [{}]", flags.trim()));
            }
            return None;
        }
    }
    None
}

/// No reuse check on Windows: `VirtualQuery` describes the region, and the Wine runs are serial.
#[cfg(windows)]
pub fn tag(_buf: &[u8]) {}

#[cfg(windows)]
pub fn tagged_mapping_of(addr: usize) -> Option<String> {
    mapping_of(addr)
}

// Each test file uses a different subset.
#[cfg(windows)]
#[allow(unused_imports)]
pub use self::windows::{mapping_count, mapping_of, query, Region};

#[cfg(windows)]
mod windows {
    use windows_sys::Win32::System::Memory::{
        VirtualQuery, MEMORY_BASIC_INFORMATION, MEM_COMMIT, MEM_FREE, MEM_RESERVE,
    };
    use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

    /// What `VirtualQuery` says about the region (pages of equal state and protection) containing an address.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Region {
        /// Start of the region (page-aligned).
        pub base: usize,
        /// Bytes from `base` to the end of the region.
        pub size: usize,
        /// Base of the `VirtualAlloc` reservation the region belongs to (0 when free).
        pub allocation_base: usize,
        /// `MEM_COMMIT`, `MEM_RESERVE` or `MEM_FREE`.
        pub state: u32,
        /// `PAGE_*` protection of committed pages (0 otherwise).
        pub protect: u32,
        /// `MEM_PRIVATE`, `MEM_MAPPED` or `MEM_IMAGE` (0 when free).
        pub kind: u32,
    }

    /// `VirtualQuery(addr)`; `None` past the end of the user address space.
    pub fn query(addr: usize) -> Option<Region> {
        let mut mbi = MEMORY_BASIC_INFORMATION::default();
        let len = std::mem::size_of::<MEMORY_BASIC_INFORMATION>();
        // SAFETY: VirtualQuery only reads the process's page tables and writes at most `len` bytes to `mbi`,
        // which is exclusively borrowed; any address is a valid query.
        let n = unsafe { VirtualQuery(addr as *const _, &mut mbi, len) };
        (n == len).then_some(Region {
            base: mbi.BaseAddress as usize,
            size: mbi.RegionSize,
            allocation_base: mbi.AllocationBase as usize,
            state: mbi.State,
            protect: mbi.Protect,
            kind: mbi.Type,
        })
    }

    /// Reservations (distinct allocation bases) in the user address space: the Windows analogue of a
    /// /proc/self/maps line count. The regions of one reservation are contiguous, so counting changes of
    /// allocation base needs no allocation (which could itself reserve memory and move the count).
    pub fn mapping_count() -> usize {
        let mut info = SYSTEM_INFO::default();
        // SAFETY: GetSystemInfo only writes the struct it is given.
        unsafe { GetSystemInfo(&mut info) };
        let end = info.lpMaximumApplicationAddress as usize;
        let mut addr = info.lpMinimumApplicationAddress as usize;
        let (mut count, mut last_base) = (0, 0);
        while addr < end {
            let Some(r) = query(addr) else { break };
            if r.state != MEM_FREE && r.allocation_base != last_base {
                count += 1;
                last_base = r.allocation_base;
            }
            match r.base.checked_add(r.size) {
                Some(next) if next > addr => addr = next,
                _ => break,
            }
        }
        count
    }

    /// A description of the reserved or committed region containing `addr`, or `None` if it is free: the
    /// Windows counterpart of the /proc/self/maps line for that address.
    pub fn mapping_of(addr: usize) -> Option<String> {
        let r = query(addr)?;
        let state = match r.state {
            MEM_COMMIT => "commit",
            MEM_RESERVE => "reserve",
            _ => return None,
        };
        Some(format!(
            "{:#x}-{:#x} {state} protect={:#x} type={:#x} allocation_base={:#x}",
            r.base,
            r.base + r.size,
            r.protect,
            r.kind,
            r.allocation_base
        ))
    }
}

/// One recorded tracing event.
#[derive(Debug, Clone)]
pub struct Event {
    pub level: tracing::Level,
    pub target: String,
    pub message: String,
}

/// A minimal `tracing` subscriber that records every event.
#[derive(Clone, Default)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<Event>>>,
}

/// Reads an event's message (`message(event)`).
pub struct MessageVisitor(pub String);

/// The message of a tracing event.
pub fn message(event: &tracing::Event<'_>) -> String {
    let mut v = MessageVisitor(String::new());
    event.record(&mut v);
    v.0
}

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        self.events.lock().unwrap().push(Event {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: v.0,
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl Recorder {
    /// Runs `f` with this recorder as the thread's default subscriber.
    pub fn record<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::subscriber::with_default(self.clone(), f)
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

/// The waiting tests' watchdog: a wait that takes this long is a hang, not a slow machine.
pub const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(60);

/// A pool that waits at its capacity: no thread cache (waiting is exact), no overflow.
pub fn waiting_pool(capacity: usize) -> pagepool::PoolBuilder {
    pagepool::PagePool::builder()
        .buf_size(pagepool::page_size())
        .capacity(capacity)
        .thread_cache(0)
        .max_overflow(0)
        .overflow(pagepool::OverflowPolicy::Wait)
}

/// Spins until `n` callers wait on `pool` (panics after the watchdog).
pub fn until_waiting(pool: &pagepool::PagePool, n: usize) {
    let start = std::time::Instant::now();
    while pool.stats().waiters != n {
        assert!(start.elapsed() < WATCHDOG, "never reached {n} waiters");
        std::thread::yield_now();
    }
}

/// The error of an `acquire` from the exhausted `pool`, converted to an `io::Error`: checked to be `OutOfMemory`
/// with the `AcquireError::Exhausted` inside.
pub fn exhausted_io_error(pool: &pagepool::PagePool) -> std::io::Error {
    let e: std::io::Error = pool.acquire().unwrap_err().into();
    assert_eq!(e.kind(), std::io::ErrorKind::OutOfMemory);
    assert!(matches!(
        e.get_ref()
            .unwrap()
            .downcast_ref::<pagepool::AcquireError>(),
        Some(pagepool::AcquireError::Exhausted { .. })
    ));
    e
}
