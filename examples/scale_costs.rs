//! The per-operation costs behind docs/scaling.md (issue #17 item 3), measured on this machine.
//!
//! Run: `cargo run --release --example scale_costs` (7 rounds, about 1-2 minutes; builds pools of up to 2^27
//! slots, about 2.5 GiB of bookkeeping) or `cargo run --release --example scale_costs -- --quick` (3 short
//! rounds, pools up to 2^20 slots: a smoke run of a few seconds). `--rounds N` overrides the round count.
//! Linux only (raw `mmap`, `membarrier`, `getcpu`, `/proc`); elsewhere it prints a message and exits.
//!
//! Every leg runs once per round and the rounds interleave the legs (round 1 of every leg, then round 2, ...),
//! so that a noisy neighbour on a shared VM spreads over all legs instead of spoiling one; the table gives the
//! median over the rounds and the range (min-max). All pools use 8 KiB buffers.
//!
//! Legs (ns per operation unless stated):
//! - `hit`: acquire + release through the default thread cache (one thread);
//! - `hit 2t`: the same on two threads at once, one pool (per-thread latency);
//! - `nocache`: `thread_cache(0)`: acquire + release on the shared freelist (a crossbeam `ArrayQueue`: one CAS
//!   each way), one thread, then `nocache 2t`: two threads hammering one pool (the CAS lines bounce);
//! - `refill/flush`: a fixed cache of 16 (`thread_cache(16)`, magazines of 8) and batches of 256: acquire 256,
//!   release 256, so every 8 operations go through the depot (a magazine swap: two CAS) and the freelist; per
//!   acquire + release pair; `refill/flush 2t` on two threads;
//! - `grow`: the first `acquire` of a fresh pool of 512 slots (one 4 MiB chunk mapped, not touched);
//! - raw `mmap`/first touch/`munmap` of anonymous private mappings of several sizes: µs per call and ns per
//!   4 KiB page touched;
//! - `overflow map+unmap`: a pool of capacity 1 whose buffer is held, `OverflowPolicy::Map`,
//!   `overflow_decay(ZERO)`: every acquire maps and every release unmaps (untouched, and with every page
//!   written), on one and two threads; `overflow reserve`: the same with the default decay (the mapping reused);
//! - `membarrier(PRIVATE_EXPEDITED)` after `REGISTER_PRIVATE_EXPEDITED`: with only the calling thread, with a
//!   second thread spinning (running on the other CPU) and with a second thread blocked; `getppid` (a plain
//!   syscall) for scale;
//! - `sched_getcpu` (glibc, vDSO) and `syscall(SYS_getcpu)`;
//! - `build()` time and RSS growth for capacities 2^10..2^24 (2^27 without `--quick`), each in a fresh child
//!   process (so no earlier free leaves pages in the heap), and the drop time;
//! - mappings: the VMAs a fully grown pool adds to `/proc/self/maps` (and `stats().chunks`), against
//!   `vm.max_map_count`.

#[cfg(target_os = "linux")]
mod linux {
    use pagepool::{OverflowPolicy, PagePool};
    use std::hint::black_box;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    const BUF: usize = 8192;
    /// Set in the children's environment: a child given no child mode stops instead of measuring (and spawning).
    const CHILD_ENV: &str = "PAGEPOOL_SCALE_COSTS_CHILD";
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 8;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 16;

    struct Opts {
        quick: bool,
        rounds: usize,
        leg: Duration,
    }

    /// One sample per round for each named figure, in first-seen order.
    #[derive(Default)]
    struct Table {
        rows: Vec<(String, &'static str, Vec<f64>)>,
    }

    impl Table {
        fn add(&mut self, name: &str, unit: &'static str, v: f64) {
            match self.rows.iter_mut().find(|r| r.0 == name) {
                Some(r) => r.2.push(v),
                None => self.rows.push((name.to_string(), unit, vec![v])),
            }
        }

        fn print(&mut self) {
            println!(
                "{:<52} {:>12} {:>12} {:>12}  unit (n)",
                "figure", "median", "min", "max"
            );
            for (name, unit, v) in &mut self.rows {
                v.sort_by(|a, b| a.total_cmp(b));
                let med = if v.len() % 2 == 1 {
                    v[v.len() / 2]
                } else {
                    (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
                };
                println!(
                    "{:<52} {:>12} {:>12} {:>12}  {} ({})",
                    name,
                    fmt(med),
                    fmt(v[0]),
                    fmt(v[v.len() - 1]),
                    unit,
                    v.len()
                );
            }
        }
    }

    fn fmt(v: f64) -> String {
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    }

    /// Runs `op` for about `dur` and returns ns per call.
    fn per_op(dur: Duration, mut op: impl FnMut()) -> f64 {
        // Warm up.
        for _ in 0..64 {
            op();
        }
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..64 {
                op();
            }
            n += 64;
            let t = start.elapsed();
            if t >= dur {
                return t.as_nanos() as f64 / n as f64;
            }
        }
    }

    /// Runs `op` on `threads` threads at once for about `dur`; returns the mean per-thread ns per call.
    fn per_op_threads<F>(threads: usize, dur: Duration, make: impl Fn() -> F) -> f64
    where
        F: FnMut() + Send,
    {
        let barrier = Barrier::new(threads);
        let ops: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let mut op = make();
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        per_op(dur, &mut op)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        ops.iter().sum::<f64>() / ops.len() as f64
    }

    fn pool(cache: Option<usize>, capacity: usize) -> PagePool {
        let mut b = PagePool::builder().buf_size(BUF).capacity(capacity);
        if let Some(c) = cache {
            b = b.thread_cache(c);
        }
        b.build().unwrap()
    }

    fn cycle(p: &PagePool) {
        let b = p.acquire().unwrap();
        drop(black_box(b));
    }

    fn batch(p: &PagePool, held: &mut Vec<pagepool::AlignedBuf>, n: usize) {
        for _ in 0..n {
            held.push(p.acquire().unwrap());
        }
        held.clear();
    }

    fn pool_legs(o: &Opts, t: &mut Table) {
        let d = o.leg;
        let p = pool(None, 1024);
        t.add(
            "hit: acquire+release, 1 thread",
            "ns",
            per_op(d, || cycle(&p)),
        );
        t.add(
            "hit 2t: acquire+release, 2 threads, 1 pool",
            "ns",
            per_op_threads(2, d, || {
                let p = p.clone();
                move || cycle(&p)
            }),
        );
        let p = pool(Some(0), 1024);
        t.add(
            "nocache: acquire+release, 1 thread",
            "ns",
            per_op(d, || cycle(&p)),
        );
        t.add(
            "nocache 2t: acquire+release, 2 threads, 1 pool",
            "ns",
            per_op_threads(2, d, || {
                let p = p.clone();
                move || cycle(&p)
            }),
        );
        let p = pool(Some(16), 4096);
        let mut held = Vec::with_capacity(256);
        let ns = per_op(d, || batch(&p, &mut held, 256)) / 256.0;
        t.add("refill/flush: cache 16, batch 256, 1 thread", "ns", ns);
        let ns = per_op_threads(2, d, || {
            let p = p.clone();
            let mut held = Vec::with_capacity(256);
            move || batch(&p, &mut held, 256)
        }) / 256.0;
        t.add("refill/flush 2t: cache 16, batch 256, 2 threads", "ns", ns);
        // The depot and freelist alone: no cache (magazine size 0, no depot), same batches.
        let p = pool(Some(0), 4096);
        let ns = per_op(d, || batch(&p, &mut held, 256)) / 256.0;
        t.add("nocache batch 256, 1 thread", "ns", ns);
    }

    fn grow_leg(o: &Opts, t: &mut Table) {
        let n = if o.quick { 20 } else { 100 };
        let mut total = Duration::ZERO;
        for _ in 0..n {
            let p = pool(Some(0), 512);
            let start = Instant::now();
            let b = p.acquire().unwrap();
            total += start.elapsed();
            drop(b);
            assert_eq!(p.stats().chunks, 1);
        }
        t.add(
            "grow: first acquire of a fresh 512-slot pool (4 MiB chunk)",
            "us",
            total.as_nanos() as f64 / n as f64 / 1e3,
        );
    }

    fn raw_map_legs(o: &Opts, t: &mut Table) {
        let page = pagepool::page_size();
        let sizes: &[usize] = if o.quick {
            &[4 << 20, 64 << 20]
        } else {
            &[4 << 20, 64 << 20, 512 << 20]
        };
        for &size in sizes {
            let mib = size >> 20;
            // SAFETY: an anonymous private mapping of `size` bytes, written page by page and unmapped below.
            unsafe {
                let t0 = Instant::now();
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                let t1 = Instant::now();
                assert_ne!(p, libc::MAP_FAILED);
                let base = p as *mut u8;
                for i in 0..size / page {
                    base.add(i * page).write_volatile(1);
                }
                let t2 = Instant::now();
                assert_eq!(libc::munmap(p, size), 0);
                let t3 = Instant::now();
                let pages = (size / page) as f64;
                t.add(
                    &format!("mmap {mib} MiB (untouched)"),
                    "us",
                    (t1 - t0).as_nanos() as f64 / 1e3,
                );
                t.add(
                    &format!("first touch, {mib} MiB mapping"),
                    "ns/page",
                    (t2 - t1).as_nanos() as f64 / pages,
                );
                t.add(
                    &format!("munmap {mib} MiB (all touched)"),
                    "ns/page",
                    (t3 - t2).as_nanos() as f64 / pages,
                );
            }
        }
        // Untouched map + unmap of a chunk-sized mapping: what growth costs before the faults.
        let n = if o.quick { 50 } else { 200 };
        let start = Instant::now();
        for _ in 0..n {
            // SAFETY: map and unmap an anonymous mapping that nothing uses.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4 << 20,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                assert_eq!(libc::munmap(p, 4 << 20), 0);
            }
        }
        t.add(
            "mmap+munmap 4 MiB untouched",
            "us",
            start.elapsed().as_nanos() as f64 / n as f64 / 1e3,
        );
    }

    fn overflow_pool(decay: Option<Duration>) -> (PagePool, pagepool::AlignedBuf) {
        let mut b = PagePool::builder()
            .buf_size(BUF)
            .capacity(1)
            .thread_cache(0)
            .overflow(OverflowPolicy::Map);
        if let Some(d) = decay {
            b = b.overflow_decay(d);
        }
        let p = b.build().unwrap();
        let held = p.acquire().unwrap();
        (p, held)
    }

    fn overflow_legs(o: &Opts, t: &mut Table) {
        let d = o.leg;
        let page = pagepool::page_size();
        let (p, _held) = overflow_pool(Some(Duration::ZERO));
        t.add(
            "overflow map+unmap, untouched, 1 thread",
            "ns",
            per_op(d, || {
                let b = p.acquire().unwrap();
                debug_assert!(b.is_overflow());
                drop(black_box(b));
            }),
        );
        t.add(
            "overflow map+unmap, pages written, 1 thread",
            "ns",
            per_op(d, || {
                let mut b = p.acquire().unwrap();
                for i in (0..BUF).step_by(page) {
                    b[i] = 1;
                }
                drop(black_box(b));
            }),
        );
        t.add(
            "overflow map+unmap, untouched, 2 threads",
            "ns",
            per_op_threads(2, d, || {
                let p = p.clone();
                move || drop(black_box(p.acquire().unwrap()))
            }),
        );
        t.add(
            "overflow map+unmap, pages written, 2 threads",
            "ns",
            per_op_threads(2, d, || {
                let p = p.clone();
                move || {
                    let mut b = p.acquire().unwrap();
                    for i in (0..BUF).step_by(page) {
                        b[i] = 1;
                    }
                    drop(black_box(b));
                }
            }),
        );
        let (p, _held) = overflow_pool(None);
        t.add(
            "overflow reserve reuse (default decay), 1 thread",
            "ns",
            per_op(d, || drop(black_box(p.acquire().unwrap()))),
        );
    }

    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: membarrier takes (cmd, flags, cpu_id) and touches no memory of ours.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_uint,
                0 as libc::c_int,
            )
        }
    }

    fn membarrier_legs(o: &Opts, t: &mut Table) {
        let d = o.leg;
        let mb = || {
            let r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
            debug_assert_eq!(r, 0);
            black_box(r);
        };
        t.add(
            "membarrier PRIVATE_EXPEDITED, 1 thread",
            "ns",
            per_op(d, mb),
        );
        // A second thread spinning: it runs on the other CPU, so each call interrupts it.
        let stop = AtomicBool::new(false);
        let spinning = std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
            std::thread::sleep(Duration::from_millis(5));
            let ns = per_op(d, mb);
            stop.store(true, Ordering::Relaxed);
            ns
        });
        t.add(
            "membarrier PRIVATE_EXPEDITED, +1 thread spinning",
            "ns",
            spinning,
        );
        // A second thread blocked: it runs nowhere, so no IPI is needed.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let blocked = std::thread::scope(|s| {
            s.spawn(move || rx.recv().ok());
            std::thread::sleep(Duration::from_millis(5));
            let ns = per_op(d, mb);
            tx.send(()).unwrap();
            ns
        });
        t.add(
            "membarrier PRIVATE_EXPEDITED, +1 thread blocked",
            "ns",
            blocked,
        );
        t.add(
            "getppid syscall (a plain syscall)",
            "ns",
            per_op(d, || {
                // SAFETY: getppid has no preconditions.
                black_box(unsafe { libc::syscall(libc::SYS_getppid) });
            }),
        );
        t.add(
            "sched_getcpu (glibc, vDSO)",
            "ns",
            per_op(d, || {
                // SAFETY: sched_getcpu has no preconditions.
                black_box(unsafe { libc::sched_getcpu() });
            }),
        );
        t.add(
            "syscall(SYS_getcpu)",
            "ns",
            per_op(d, || {
                let (mut cpu, mut node) = (0u32, 0u32);
                // SAFETY: getcpu writes two u32s through the pointers given; the cache argument is unused.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_getcpu,
                        &mut cpu as *mut u32,
                        &mut node as *mut u32,
                        std::ptr::null_mut::<libc::c_void>(),
                    )
                };
                black_box((r, cpu, node));
            }),
        );
    }

    /// `--child-build CAP`: build a pool of CAP slots in this fresh process; print the figures, drop it.
    fn child_build(cap: usize) {
        let before = rss_bytes();
        let start = Instant::now();
        let p = pool(None, cap);
        let build = start.elapsed();
        let after = rss_bytes();
        let chunks_max = layout_chunks(cap, BUF);
        let start = Instant::now();
        drop(black_box(p));
        let dropped = start.elapsed();
        let end = rss_bytes();
        println!(
            "build cap={cap} build_ns={} rss_delta={} drop_ns={} rss_left={} chunks={chunks_max}",
            build.as_nanos(),
            after.saturating_sub(before),
            dropped.as_nanos(),
            end.saturating_sub(before)
        );
    }

    /// `--child-grow CAP`: the first acquire of a fresh pool of CAP slots (thread_cache(0)): one chunk mapped and
    /// its other slots pushed onto the freelist.
    fn child_grow(cap: usize) {
        let p = pool(Some(0), cap);
        let start = Instant::now();
        let b = p.acquire().unwrap();
        let grow = start.elapsed();
        let slots = cap / layout_chunks(cap, BUF);
        println!("grow cap={cap} slots={slots} grow_ns={}", grow.as_nanos());
        drop(b);
    }

    /// `--child-maps CAP GUARD`: grow a pool of CAP slots fully (every slot acquired, untouched) and count the
    /// lines it adds to /proc/self/maps.
    fn child_maps(cap: usize, guard: bool) {
        let p = PagePool::builder()
            .buf_size(BUF)
            .capacity(cap)
            .thread_cache(0)
            .guard_pages(guard)
            .build()
            .unwrap();
        let before = map_count();
        let held: Vec<_> = (0..cap).map(|_| p.acquire().unwrap()).collect();
        let after = map_count();
        println!(
            "maps cap={cap} guard={guard} chunks={} vmas={}",
            p.stats().chunks,
            after - before
        );
        drop(held);
    }

    /// `/proc/loadavg`'s three averages: how busy the (shared) machine was.
    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    }

    fn map_count() -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    }

    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * pagepool::page_size()
    }

    /// The chunk count of config.rs `Layout` (unix: allocation granularity = page size): chunks of at least
    /// 4 MiB, at most 512 of them, a power of two slots each.
    pub fn layout_chunks(cap: usize, stride: usize) -> usize {
        let per = (4usize << 20)
            .div_ceil(stride)
            .max(cap.div_ceil(512))
            .min(cap)
            .next_power_of_two();
        cap.div_ceil(per)
    }

    fn child(args: &[&str]) -> String {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args(args)
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "child {args:?} failed: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn field(line: &str, key: &str) -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .parse()
            .unwrap()
    }

    fn grow_child_legs(o: &Opts, t: &mut Table) {
        let shifts: &[u32] = if o.quick { &[20] } else { &[20, 24, 27] };
        for &shift in shifts {
            let line = child(&["--child-grow", &(1usize << shift).to_string()]);
            let slots = field(&line, "slots");
            t.add(
                &format!(
                    "grow: first acquire, 2^{shift} pool, 2^{} slots/chunk",
                    slots.log2()
                ),
                "ms",
                field(&line, "grow_ns") / 1e6,
            );
        }
    }

    fn build_legs(o: &Opts, t: &mut Table) {
        let top = if o.quick { 20 } else { 27 };
        let mut shift = 10;
        while shift <= top {
            let line = child(&["--child-build", &(1usize << shift).to_string()]);
            t.add(
                &format!("build() 2^{shift} slots"),
                "ms",
                field(&line, "build_ns") / 1e6,
            );
            t.add(
                &format!("RSS growth of build() 2^{shift} slots"),
                "MiB",
                field(&line, "rss_delta") / (1 << 20) as f64,
            );
            t.add(
                &format!("RSS left after drop 2^{shift} slots"),
                "MiB",
                field(&line, "rss_left") / (1 << 20) as f64,
            );
            t.add(
                &format!("drop 2^{shift} slots"),
                "ms",
                field(&line, "drop_ns") / 1e6,
            );
            shift += if shift < 24 { 2 } else { 1 };
        }
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.first().map(String::as_str) {
            Some("--child-build") => return child_build(args[1].parse().unwrap()),
            Some("--child-grow") => return child_grow(args[1].parse().unwrap()),
            Some("--child-maps") => return child_maps(args[1].parse().unwrap(), args[2] == "true"),
            Some(other) if other.starts_with("--child") => panic!("unknown child mode {other}"),
            _ => {}
        }
        // A child never runs the whole measurement (it would start children of its own).
        assert!(
            std::env::var_os(CHILD_ENV).is_none(),
            "scale_costs child started without a child mode: {args:?}"
        );
        if args.iter().any(|a| a == "--help" || a == "-h") {
            println!(
                "scale_costs [--quick] [--rounds N]: per-operation costs for docs/scaling.md \
                 (see the module docs of examples/scale_costs.rs)"
            );
            return;
        }
        let quick = args.iter().any(|a| a == "--quick");
        let mut rounds = if quick { 3 } else { 7 };
        if let Some(i) = args.iter().position(|a| a == "--rounds") {
            rounds = args[i + 1].parse().expect("--rounds N");
        }
        let o = Opts {
            quick,
            rounds,
            leg: Duration::from_millis(if quick { 40 } else { 200 }),
        };
        let reg = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
        assert_eq!(
            reg,
            0,
            "membarrier register: {}",
            std::io::Error::last_os_error()
        );
        println!(
            "scale_costs: {} rounds, {} ms per timed leg, {} CPUs, page {} B, buffers {} B",
            o.rounds,
            o.leg.as_millis(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            pagepool::page_size(),
            BUF
        );
        println!("load average at start: {}", loadavg());
        let mut t = Table::default();
        let total = Instant::now();
        for r in 0..o.rounds {
            eprintln!("round {}/{}", r + 1, o.rounds);
            pool_legs(&o, &mut t);
            grow_leg(&o, &mut t);
            grow_child_legs(&o, &mut t);
            raw_map_legs(&o, &mut t);
            overflow_legs(&o, &mut t);
            membarrier_legs(&o, &mut t);
            build_legs(&o, &mut t);
        }
        println!("load average at end: {}", loadavg());
        t.print();
        // Mappings: once (they do not vary).
        let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        println!("\nvm.max_map_count = {max_map_count}");
        let mut cases = vec![(1usize << 14, false), (1 << 12, true)];
        if !quick {
            cases.push((1 << 20, false));
            cases.push((1 << 13, true));
        }
        for (cap, guard) in cases {
            let line = child(&["--child-maps", &cap.to_string(), &guard.to_string()]);
            println!(
                "fully grown pool, 2^{} slots of 8 KiB, guard_pages({guard}): stats().chunks = {}, \
                 /proc/self/maps lines added = {} (layout chunks = {})",
                cap.trailing_zeros(),
                field(&line, "chunks"),
                field(&line, "vmas"),
                layout_chunks(cap, if guard { BUF + pagepool::page_size() } else { BUF })
            );
        }
        for shift in [20u32, 24, 27, 30] {
            let cap = 1usize << shift;
            println!(
                "layout: 2^{shift} slots of 8 KiB ({} GiB): {} chunks of {} MiB",
                (cap * BUF) >> 30,
                layout_chunks(cap, BUF),
                (cap / layout_chunks(cap, BUF) * BUF) >> 20
            );
        }
        eprintln!("total {:.1} s", total.elapsed().as_secs_f64());
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    linux::main();
    #[cfg(not(target_os = "linux"))]
    println!(
        "scale_costs measures Linux system calls (mmap, membarrier, getcpu) and /proc: Linux only"
    );
}
