//! Secret scratch space, tested by its real effects: zeroing seen in memory, poison caught, guard pages that kill
//! a child process, smaps `VmFlags` for dump and fork advice, a forked child that sees zeros or cannot touch the
//! memory, and locking seen in smaps and under a lowered `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`.
//!
//! Child processes: `fork` for the checks that only read or write raw memory in the child (no allocation, no
//! locks, then `_exit`), and a re-run of this test binary for the checks that need a pool of their own.
#![cfg(unix)]

mod common;
use common::Recorder;
#[cfg(not(pagepool_asan))]
use pagepool::LockPolicy;
use pagepool::{AlignedBuf, ForkPolicy, PagePool, PoolBuilder};

fn page() -> usize {
    pagepool::page_size()
}

fn builder() -> PoolBuilder {
    PagePool::builder()
        .buf_size(2 * page())
        .capacity(8)
        .thread_cache(0)
}

/// How a child process ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Signal(i32),
}

/// Runs `f` in a forked child and reports how it ended: its return value as the exit code, or the signal that
/// killed it. `f` must only touch memory (the child of a multi-threaded process may not allocate or lock).
///
/// Holds [`common::maps_lock`] while the child lives: a forked child shares the parent's pages copy-on-write,
/// which halves their proportional share in the parent's smaps (`Locked` is counted that way), so the smaps
/// checks of other tests take the same lock.
fn in_child(f: impl FnOnce() -> i32) -> Ended {
    let _g = common::maps_lock();
    // SAFETY: fork has no memory-safety preconditions; the child runs only `f` (raw memory reads and writes)
    // and `_exit`, which are async-signal-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = f();
        // SAFETY: _exit ends the child at once, without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        Ended::Exited(libc::WEXITSTATUS(status))
    } else {
        Ended::Signal(libc::WTERMSIG(status))
    }
}

/// The /proc/self/smaps block (header line plus fields) of the mapping that contains `addr`.
#[cfg(target_os = "linux")]
fn smaps_of(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut block: Option<String> = None;
    let mut found = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-').filter(|_| !line.ends_with(':')) {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                if found.is_some() {
                    break;
                }
                if (lo..hi).contains(&addr) {
                    found = Some(());
                    block = Some(String::new());
                }
            }
        }
        if let Some(b) = block.as_mut().filter(|_| found.is_some()) {
            b.push_str(line);
            b.push('\n');
        }
    }
    block.unwrap_or_else(|| panic!("no mapping contains {addr:#x}"))
}

#[cfg(target_os = "linux")]
fn vm_flags(addr: usize) -> Vec<String> {
    smaps_of(addr)
        .lines()
        .find_map(|l| l.strip_prefix("VmFlags:"))
        .expect("VmFlags line")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[cfg(all(target_os = "linux", not(pagepool_asan)))]
fn smaps_kb(addr: usize, field: &str) -> usize {
    smaps_of(addr)
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("{field} line"))
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

fn addr(b: &AlignedBuf) -> usize {
    b.as_ptr() as usize
}

// ---- zeroing ----------------------------------------------------------------------------------------------

/// Writes a secret, releases, and looks at the same slot again: through the raw address while the buffer rests in
/// the pool (where the sanitizer build would flag the read), and by acquiring it again (capacity 1: same slot).
fn secret_after_release(zero: bool) -> (bool, bool) {
    let pool = builder()
        .capacity(1)
        .overflow(pagepool::OverflowPolicy::Fail)
        .zero_on_release(zero)
        .build()
        .unwrap();
    let mut b = pool.acquire().unwrap();
    b.fill(0x5A);
    let p = b.as_ptr();
    let len = b.len();
    drop(b);
    #[cfg(not(pagepool_asan))]
    // SAFETY: test-only look at an idle slot: the pool keeps it mapped, and nobody else uses this pool.
    let raw_zero = unsafe { std::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&x| x == 0);
    #[cfg(pagepool_asan)]
    let raw_zero = {
        let _ = len;
        zero
    };
    let again = pool.acquire().unwrap();
    assert_eq!(again.as_ptr(), p, "capacity 1 hands out the same slot");
    (raw_zero, again.iter().all(|&x| x == 0))
}

#[test]
fn zero_on_release_leaves_only_zeros_in_the_slot() {
    assert_eq!(secret_after_release(true), (true, true));
    // Without the option the secret is still there: the check above can fail.
    assert_eq!(secret_after_release(false), (false, false));
}

#[test]
fn explicit_zeroize() {
    let pool = builder().build().unwrap();
    let mut b = pool.acquire().unwrap();
    b.fill(0xEE);
    b.zeroize();
    assert!(b.iter().all(|&x| x == 0));
}

// ---- poisoning --------------------------------------------------------------------------------------------

#[test]
fn poison_on_release_catches_a_write_after_release() {
    let rec = Recorder::default();
    let (clean, dirty) = rec.record(|| {
        let pool = builder()
            .capacity(1)
            .overflow(pagepool::OverflowPolicy::Fail)
            .poison_on_release(true)
            .build()
            .unwrap();
        // A well-behaved cycle: released, then reacquired untouched.
        let b = pool.acquire().unwrap();
        drop(b);
        let b = pool.acquire().unwrap();
        // The pattern, not the old contents, is what the next holder sees.
        assert!(b.iter().any(|&x| x != 0));
        let clean = pool.stats().poison_violations;
        let p = b.as_ptr() as *mut u8;
        drop(b);
        // A stale holder writes through a pointer it kept.
        #[cfg(not(pagepool_asan))]
        // SAFETY: test-only write-after-release into an idle slot of a pool nobody else uses; the memory stays
        // mapped. This is the bug poisoning exists to catch.
        unsafe {
            p.add(100).write_volatile(0x42)
        };
        #[cfg(pagepool_asan)]
        let _ = p; // AddressSanitizer itself reports this write in the sanitizer build.
        let _b = pool.acquire().unwrap();
        (clean, pool.stats().poison_violations)
    });
    assert_eq!(clean, 0);
    if cfg!(pagepool_asan) {
        return;
    }
    assert_eq!(dirty, 1);
    assert!(
        rec.events()
            .iter()
            .any(|e| e.level == tracing::Level::ERROR && e.message.contains("write after release")),
        "{:?}",
        rec.events()
    );
}

#[test]
fn poison_and_zero_together_hand_out_zeros() {
    let pool = builder()
        .capacity(1)
        .poison_on_release(true)
        .zero_on_release(true)
        .build()
        .unwrap();
    let mut b = pool.acquire().unwrap();
    b.fill(0x77);
    drop(b);
    let b = pool.acquire().unwrap();
    assert!(b.iter().all(|&x| x == 0));
    assert_eq!(pool.stats().poison_violations, 0);
}

// ---- guard pages ------------------------------------------------------------------------------------------

/// Writes one byte at `offset` from the buffer's start in a child; reports how the child ended.
fn poke(b: &AlignedBuf, offset: isize) -> Ended {
    let p = b.as_ptr() as *mut u8;
    in_child(|| {
        // SAFETY: deliberately out of bounds by one byte, in a throwaway child: the test is whether it faults.
        unsafe { p.offset(offset).write_volatile(1) };
        0
    })
}

#[test]
fn guard_pages_fault_on_overrun_and_underrun() {
    let pool = builder()
        .overflow(pagepool::OverflowPolicy::Map)
        .guard_pages(true)
        .build()
        .unwrap();
    let held: Vec<_> = (0..pool.capacity() + 1)
        .map(|_| pool.acquire().unwrap())
        .collect();
    assert!(held.last().unwrap().is_overflow());
    let len = held[0].len() as isize;
    for b in [
        &held[0],
        &held[3],
        &held[held.len() - 2],
        held.last().unwrap(),
    ] {
        assert_eq!(addr(b) % page(), 0);
        assert_eq!(poke(b, 0), Ended::Exited(0), "inside the buffer");
        assert_eq!(poke(b, len - 1), Ended::Exited(0), "last byte");
        assert_eq!(
            poke(b, len),
            Ended::Signal(libc::SIGSEGV),
            "one past the end"
        );
        assert_eq!(poke(b, -1), Ended::Signal(libc::SIGSEGV), "one before");
    }
}

#[test]
fn without_guard_pages_an_overrun_lands_silently_in_the_neighbour() {
    let pool = builder().build().unwrap();
    let a = pool.acquire().unwrap();
    let b = pool.acquire().unwrap();
    // Slots are adjacent, so writing one past `first` hits the other buffer, and nothing faults.
    let first = if addr(&a) < addr(&b) { &a } else { &b };
    assert_eq!(poke(first, first.len() as isize), Ended::Exited(0));
}

// ---- dump and fork advice (Linux) -------------------------------------------------------------------------

#[cfg(target_os = "linux")]
#[test]
fn dont_dump_marks_pooled_and_overflow_memory() {
    let pool = builder().capacity(1).dont_dump(true).build().unwrap();
    let a = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    assert!(o.is_overflow());
    for b in [&a, &o] {
        let flags = vm_flags(addr(b));
        assert!(flags.contains(&"dd".to_owned()), "{flags:?}");
    }
    let plain = builder().build().unwrap();
    let p = plain.acquire().unwrap();
    assert!(!vm_flags(addr(&p)).contains(&"dd".to_owned()));
}

#[cfg(target_os = "linux")]
#[test]
fn wipe_on_fork_child_sees_zeros() {
    for (policy, flag, child_sees_zero) in [
        (ForkPolicy::WipeOnFork, Some("wf"), true),
        (ForkPolicy::Inherit, None, false),
    ] {
        let pool = builder().capacity(1).on_fork(policy).build().unwrap();
        let mut a = pool.acquire().unwrap();
        let mut o = pool.acquire().unwrap();
        for b in [&mut a, &mut o] {
            b.fill(0xAB);
            let flags = vm_flags(addr(b));
            if let Some(f) = flag {
                assert!(flags.contains(&f.to_owned()), "{policy:?}: {flags:?}");
            }
            let (p, len) = (b.as_ptr(), b.len());
            let ended = in_child(|| {
                // SAFETY: the buffer is mapped in the child (copied or wiped); reading it is the test.
                let bytes = unsafe { std::slice::from_raw_parts(p, len) };
                i32::from(!bytes.iter().all(|&x| x == 0))
            });
            let expect = if child_sees_zero { 0 } else { 1 };
            assert_eq!(ended, Ended::Exited(expect), "{policy:?}");
            // The parent's copy is untouched either way.
            assert!(b.iter().all(|&x| x == 0xAB));
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn dont_fork_child_cannot_touch_the_memory() {
    let pool = builder()
        .capacity(1)
        .on_fork(ForkPolicy::DontFork)
        .build()
        .unwrap();
    let a = pool.acquire().unwrap();
    let o = pool.acquire().unwrap();
    for b in [&a, &o] {
        assert!(vm_flags(addr(b)).contains(&"dc".to_owned()));
        let p = b.as_ptr();
        let ended = in_child(|| {
            // SAFETY: none in the child: the range is not mapped there, and the fault is the test.
            i32::from(unsafe { p.read_volatile() })
        });
        assert_eq!(ended, Ended::Signal(libc::SIGSEGV));
    }
}

// ---- locking ----------------------------------------------------------------------------------------------
// Not under AddressSanitizer (`--cfg pagepool_asan`): its runtime intercepts mlock and makes it a no-op that
// reports success, so smaps shows nothing locked and the limit is never hit.

#[cfg(all(target_os = "linux", not(pagepool_asan)))]
#[test]
fn locked_memory_shows_in_smaps() {
    if !has_cap_ipc_lock() && pagepool::page_size() * 16 > memlock_limit() {
        println!(
            "SKIPPED: locked_memory_shows_in_smaps: no CAP_IPC_LOCK and RLIMIT_MEMLOCK too low"
        );
        return;
    }
    let _g = common::maps_lock(); // no forked child shares our pages while smaps is read
    let pool = builder()
        .capacity(16)
        .lock_memory(LockPolicy::Required)
        .build()
        .unwrap();
    let b = pool.acquire().unwrap();
    let s = pool.stats();
    assert_eq!(s.locked_bytes, s.mapped_bytes);
    assert!(vm_flags(addr(&b)).contains(&"lo".to_owned()));
    let locked_kb = smaps_kb(addr(&b), "Locked");
    assert!(
        locked_kb * 1024 >= s.locked_bytes,
        "Locked: {locked_kb} kB, pool locked {} bytes",
        s.locked_bytes
    );
    println!(
        "smaps: Locked {locked_kb} kB for a pool chunk of {} bytes",
        s.mapped_bytes
    );
    // Overflow buffers are locked too, and unlocked when unmapped.
    let held: Vec<_> = (0..16).map(|_| pool.acquire().unwrap()).collect();
    let o = held.last().unwrap();
    assert!(o.is_overflow());
    assert!(vm_flags(addr(o)).contains(&"lo".to_owned()));
    assert!(pool.stats().locked_bytes > s.locked_bytes);
    drop(held);
    // Released overflow buffers wait in the reserve, still locked, until `trim` unmaps them.
    let r = pool.stats();
    assert!(r.reserve_buffers > 0, "{r:?}");
    assert_eq!(r.locked_bytes, s.locked_bytes + r.reserve_bytes, "{r:?}");
    assert_eq!(pool.trim(), r.reserve_bytes);
    assert_eq!(pool.stats().locked_bytes, s.locked_bytes);
    // Locked pooled memory is never trimmed.
    drop(b);
    assert_eq!(pool.trim(), 0);
}

#[cfg(all(target_os = "linux", not(pagepool_asan)))]
fn has_cap_ipc_lock() -> bool {
    // Capabilities are per thread: this thread's.
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap() & (1 << 14) != 0)
        .unwrap()
}

#[cfg(all(target_os = "linux", not(pagepool_asan)))]
fn memlock_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    assert_eq!(rc, 0);
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// Drops `CAP_IPC_LOCK` from this thread's effective and permitted sets (so the limit applies even to root;
/// capabilities are per thread, and mlock checks the caller's).
#[cfg(all(target_os = "linux", not(pagepool_asan)))]
fn drop_cap_ipc_lock() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget with a v3 header fills two Data structs, which `d` provides.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    assert_eq!(r, 0, "capget: {}", std::io::Error::last_os_error());
    d[0].effective &= !(1 << 14);
    d[0].permitted &= !(1 << 14);
    // SAFETY: capset reads the header and two Data structs; dropping capabilities is always allowed.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
    assert!(!has_cap_ipc_lock());
}

/// The limit the child process runs under.
#[cfg(all(target_os = "linux", not(pagepool_asan)))]
const CHILD_LIMIT: usize = 1 << 20;

/// Runs in a child process (see `lock_memory_under_a_low_limit_without_cap_ipc_lock`): without
/// `CAP_IPC_LOCK` and with `RLIMIT_MEMLOCK` at 1 MiB, `Required` is refused up front and `BestEffort` locks
/// what fits and warns once.
#[cfg(all(target_os = "linux", not(pagepool_asan)))]
#[test]
#[ignore = "child process of lock_memory_under_a_low_limit_without_cap_ipc_lock"]
fn lock_memory_child() {
    assert_eq!(
        std::env::var("PAGEPOOL_LOCK_CHILD").as_deref(),
        Ok("1"),
        "run by lock_memory_under_a_low_limit_without_cap_ipc_lock only"
    );
    drop_cap_ipc_lock();
    let lim = libc::rlimit {
        rlim_cur: CHILD_LIMIT as libc::rlim_t,
        rlim_max: CHILD_LIMIT as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct it is given; lowering a limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) }, 0);
    // 4 MiB of pool: four times the limit.
    let pool = || {
        PagePool::builder()
            .buf_size(64 << 10)
            .capacity(64)
            .prealloc(true)
    };
    match pool().lock_memory(LockPolicy::Required).build() {
        Err(pagepool::ConfigError::MemoryLockLimit { limit, requested }) => {
            assert_eq!(limit, CHILD_LIMIT);
            assert_eq!(requested, 4 << 20);
            println!("Required: refused: limit {limit} bytes, requested {requested} bytes");
        }
        other => panic!("expected MemoryLockLimit, got {other:?}"),
    }
    let rec = Recorder::default();
    let p = rec.record(|| pool().lock_memory(LockPolicy::BestEffort).build().unwrap());
    let s = p.stats();
    assert!(s.locked_bytes > 0, "{s:?}");
    assert!(s.locked_bytes <= CHILD_LIMIT, "{s:?}");
    assert!(s.locked_bytes < s.mapped_bytes, "{s:?}");
    let b = p.acquire().unwrap();
    let locked_kb = smaps_kb(addr(&b), "Locked");
    assert_eq!(
        locked_kb * 1024,
        s.locked_bytes,
        "smaps agrees with the pool"
    );
    let warns: Vec<_> = rec
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN && e.message.contains("BestEffort"))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    println!(
        "BestEffort: locked {} of {} bytes (smaps Locked: {locked_kb} kB), one warning",
        s.locked_bytes, s.mapped_bytes
    );
}

#[cfg(all(target_os = "linux", not(pagepool_asan)))]
#[test]
fn lock_memory_under_a_low_limit_without_cap_ipc_lock() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_memory_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PAGEPOOL_LOCK_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[cfg(all(target_os = "linux", not(pagepool_asan)))]
#[test]
fn guard_pages_and_locking_together_lock_only_the_buffers() {
    if !has_cap_ipc_lock() && pagepool::page_size() * 64 > memlock_limit() {
        println!("SKIPPED: guard_pages_and_locking_together_lock_only_the_buffers: RLIMIT_MEMLOCK too low");
        return;
    }
    let pool = builder()
        .guard_pages(true)
        .lock_memory(LockPolicy::Required)
        .build()
        .unwrap();
    let b = pool.acquire().unwrap();
    let s = pool.stats();
    // mlock refuses inaccessible pages: each buffer is locked on its own, guards stay untouched.
    assert_eq!(s.locked_bytes, pool.capacity() * pool.buf_size(), "{s:?}");
    assert!(s.mapped_bytes > s.locked_bytes);
    assert!(vm_flags(addr(&b)).contains(&"lo".to_owned()));
    assert_eq!(poke(&b, b.len() as isize), Ended::Signal(libc::SIGSEGV));
}
