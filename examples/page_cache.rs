//! A read-through page cache over an O_DIRECT file: the pool's buffers as a real program uses them.
//!
//! ```sh
//! cargo run --release --example page_cache                 # 64 MiB file, 8 KiB pages, 2048 cached, 4 readers, 5 s
//! cargo run --release --example page_cache -- --smoke      # 4 MiB, 128 cached pages, 2 readers, 1 s (CI)
//! cargo run --release --example page_cache -- [--file-mib 64] [--page-kib 8] [--cache-pages 2048] \
//!     [--threads 4] [--seconds 5] [--zipf 0.99] [FILE]
//! ```
//!
//! It writes FILE (default `target/page-cache.bin`: MIB mebibytes of a seeded pattern plus a 3000-byte tail, so
//! the last page is short), then runs reader threads that each pick pages with a Zipf-distributed skew (rank `r`
//! with weight `1 / (r + 1)^s`) and read them through the cache. The cache is an LRU (a `HashMap` and a
//! `VecDeque` of use stamps, under one `Mutex`) of *frozen* pages: `pagepool::FrozenBuf`, cheap to clone and
//! `Send + Sync`, so a hit is a clone handed to the reader and no copy. A miss reads the page with O_DIRECT
//! (`pagepool::dio`) into a pool buffer's spare capacity (`clear`, `spare_capacity_mut`, `set_len` to the bytes
//! read: the short last page is a shorter buffer), freezes it and inserts it; an evicted page goes back to the
//! pool when the last reader still holding a clone drops it.
//!
//! Every reader folds each page it reads into a checksum (the page number and its bytes); at the end the sum is
//! recomputed from an ordinary buffered read of the file (`std::fs::read`) with the same access counts, and every
//! page still cached is compared byte for byte. Prints the hit rate, pages/s, the disk reads and RSS (VmRSS, and
//! its peak VmHWM), and exits non-zero on any mismatch, or if a pool buffer is still out after the cache and the
//! readers are gone.

#[cfg(target_os = "linux")]
#[path = "dio_common/mod.rs"]
mod dio_common;
#[cfg(target_os = "linux")]
#[allow(dead_code)]
#[path = "proc_stats/mod.rs"]
mod proc_stats;

#[cfg(target_os = "linux")]
fn main() {
    let cfg = match app::Config::from_args(std::env::args().skip(1)) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return,
        Err(e) => {
            eprintln!("page_cache: {e}");
            std::process::exit(2);
        }
    };
    match app::run(&cfg) {
        Ok(r) if r.ok() => println!(
            "page_cache: OK ({} page reads, {} hits, {} misses)",
            r.reads, r.hits, r.misses
        ),
        Ok(_) => {
            eprintln!("page_cache: verification FAILED");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("page_cache: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("page_cache: O_DIRECT is Linux only here");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
mod app {
    use super::dio_common::{self, Checksum};
    use super::proc_stats;
    use pagepool::{dio, FrozenBuf, PagePool};
    use std::collections::{HashMap, VecDeque};
    use std::fs::File;
    use std::io;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// The bytes after the whole mebibytes: the last page is short.
    const TAIL: usize = 3000;

    #[derive(Debug, Clone)]
    pub struct Config {
        path: PathBuf,
        file_mib: u64,
        page_kib: usize,
        cache_pages: usize,
        threads: usize,
        seconds: f64,
        zipf: f64,
        /// Print the progress lines (off in the unit test).
        verbose: bool,
    }

    impl Config {
        const USAGE: &'static str =
            "usage: page_cache [--smoke] [--file-mib N] [--page-kib N] [--cache-pages N] \
                                     [--threads N] [--seconds S] [--zipf S] [FILE]";

        fn default_run() -> Self {
            Config {
                path: PathBuf::from("target/page-cache.bin"),
                file_mib: 64,
                page_kib: 8,
                cache_pages: 2048,
                threads: 4,
                seconds: 5.0,
                zipf: 0.99,
                verbose: true,
            }
        }

        fn smoke(mut self) -> Self {
            self.file_mib = 4;
            self.cache_pages = 128;
            self.threads = 2;
            self.seconds = 1.0;
            self
        }

        /// `Ok(None)` after printing the usage for `--help`.
        pub fn from_args(args: impl Iterator<Item = String>) -> Result<Option<Self>, String> {
            let usage = Self::USAGE;
            let mut cfg = Config::default_run();
            // `--smoke` sets the small defaults first, whatever its position; the other flags override them.
            let all: Vec<String> = args.collect();
            if all.iter().any(|a| a == "--smoke") {
                cfg = cfg.smoke();
            }
            let mut it = all.into_iter();
            let mut path = None;
            while let Some(a) = it.next() {
                let mut val = || {
                    it.next()
                        .ok_or_else(|| format!("{a} needs a value\n{usage}"))
                };
                let num = |v: String| {
                    v.parse::<f64>()
                        .map_err(|_| format!("not a number: {v}\n{usage}"))
                };
                match a.as_str() {
                    "--smoke" => {}
                    "--file-mib" => cfg.file_mib = num(val()?)? as u64,
                    "--page-kib" => cfg.page_kib = num(val()?)? as usize,
                    "--cache-pages" => cfg.cache_pages = num(val()?)? as usize,
                    "--threads" => cfg.threads = num(val()?)? as usize,
                    "--seconds" => cfg.seconds = num(val()?)?,
                    "--zipf" => cfg.zipf = num(val()?)?,
                    "-h" | "--help" => {
                        println!("{usage}");
                        return Ok(None);
                    }
                    _ if path.is_none() && !a.starts_with('-') => path = Some(PathBuf::from(a)),
                    _ => return Err(format!("unexpected argument {a}\n{usage}")),
                }
            }
            if let Some(p) = path {
                cfg.path = p;
            }
            if cfg.page_kib == 0 || cfg.cache_pages == 0 || cfg.threads == 0 {
                return Err(format!(
                    "--page-kib, --cache-pages and --threads must be positive\n{usage}"
                ));
            }
            if !(cfg.seconds >= 0.0 && cfg.seconds.is_finite()) {
                return Err(format!("--seconds must be a finite number >= 0\n{usage}"));
            }
            if !(cfg.zipf >= 0.0 && cfg.zipf.is_finite()) {
                return Err(format!("--zipf must be a finite number >= 0\n{usage}"));
            }
            Ok(Some(cfg))
        }
    }

    /// The cache's replacement order: least recently used first.
    ///
    /// `map` holds each cached page with the stamp of its last use; `order` holds `(page, stamp)` in use order, one
    /// entry per use. An entry whose stamp is no longer the page's is stale and skipped when it reaches the front
    /// (and swept when stale entries outnumber live ones), so a hit is O(1) and needs no list surgery.
    struct Lru {
        map: HashMap<u64, (FrozenBuf, u64)>,
        order: VecDeque<(u64, u64)>,
        clock: u64,
        capacity: usize,
        evictions: u64,
    }

    impl Lru {
        fn new(capacity: usize) -> Self {
            Lru {
                map: HashMap::with_capacity(capacity + 1),
                order: VecDeque::with_capacity(2 * capacity + 64),
                clock: 0,
                capacity,
                evictions: 0,
            }
        }

        fn get(&mut self, page: u64) -> Option<FrozenBuf> {
            let (buf, stamp) = self.map.get_mut(&page)?;
            self.clock += 1;
            *stamp = self.clock;
            let buf = buf.clone();
            self.order.push_back((page, self.clock));
            self.sweep();
            Some(buf)
        }

        /// Inserts `buf` as `page` and returns the cached handle: the one already there if another reader inserted
        /// the page first (then `buf` goes back to the pool when the caller drops it). Evicts down to capacity; an
        /// evicted page's buffer goes home when its last clone, here or in a reader, is dropped.
        fn insert(&mut self, page: u64, buf: FrozenBuf) -> FrozenBuf {
            if let Some(cached) = self.get(page) {
                return cached;
            }
            self.clock += 1;
            self.map.insert(page, (buf.clone(), self.clock));
            self.order.push_back((page, self.clock));
            while self.map.len() > self.capacity {
                let Some((p, s)) = self.order.pop_front() else {
                    break; // unreachable: every cached page has its live entry in `order`
                };
                if self.map.get(&p).is_some_and(|&(_, stamp)| stamp == s) {
                    self.map.remove(&p);
                    self.evictions += 1;
                }
            }
            self.sweep();
            buf
        }

        /// Drops the stale entries once they outnumber the live ones (amortised O(1) per use).
        fn sweep(&mut self) {
            if self.order.len() > 2 * self.map.len() + 64 {
                let map = &self.map;
                self.order
                    .retain(|(p, s)| map.get(p).is_some_and(|&(_, stamp)| stamp == *s));
            }
        }
    }

    /// A read-through cache of one file's pages.
    struct PageCache {
        file: File,
        page: usize,
        pool: PagePool,
        lru: Mutex<Lru>,
        hits: AtomicU64,
        misses: AtomicU64,
    }

    impl PageCache {
        /// The page `page` of the file: from the cache, or read with O_DIRECT, frozen and cached.
        fn get(&self, page: u64) -> io::Result<FrozenBuf> {
            if let Some(buf) = self.lru.lock().unwrap().get(page) {
                self.hits.fetch_add(1, Relaxed);
                return Ok(buf);
            }
            self.misses.fetch_add(1, Relaxed);
            // The read happens outside the lock: other readers' hits go on meanwhile.
            let mut buf = self.pool.acquire()?;
            buf.clear();
            let spare = &mut buf.spare_capacity_mut()[..self.page];
            let n = dio_common::read_full_at(&self.file, spare, page * self.page as u64)?;
            // SAFETY: `n <= self.page <= capacity()` bytes were read into the spare capacity of the empty buffer, and
            // a pool buffer's bytes are always initialised.
            unsafe { buf.set_len(n) };
            Ok(self.lru.lock().unwrap().insert(page, buf.freeze()))
        }
    }

    /// Picks page ranks with `P(r) ~ 1 / (r + 1)^s` (inverse CDF over a table).
    struct Zipf {
        cdf: Vec<f64>,
    }

    impl Zipf {
        fn new(n: usize, s: f64) -> Self {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (0..n)
                .map(|r| {
                    acc += 1.0 / ((r + 1) as f64).powf(s);
                    acc
                })
                .collect();
            for c in &mut cdf {
                *c /= acc;
            }
            Zipf { cdf }
        }

        /// A rank in `0..n` for a uniform `u` in `[0, 1)`.
        fn sample(&self, u: f64) -> u64 {
            (self
                .cdf
                .partition_point(|&c| c <= u)
                .min(self.cdf.len() - 1)) as u64
        }
    }

    /// xorshift64*: a reader's own random stream.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// What a reader saw: an order-independent sum of (page, bytes) checksums and how often it read each page.
    fn page_sum(page: u64, bytes: &[u8]) -> u64 {
        let mut c = Checksum::default();
        c.update(&page.to_le_bytes());
        c.update(bytes);
        c.finish()
    }

    struct ReaderResult {
        sum: u64,
        counts: Vec<u32>,
        reads: u64,
    }

    fn reader(
        cache: &PageCache,
        zipf: &Zipf,
        seed: u64,
        stop: &AtomicBool,
    ) -> io::Result<ReaderResult> {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut r = ReaderResult {
            sum: 0,
            counts: vec![0; zipf.cdf.len()],
            reads: 0,
        };
        while !stop.load(Relaxed) {
            // A batch between checks of the flag.
            for _ in 0..64 {
                let page = zipf.sample(rng.unit());
                let buf = cache.get(page)?;
                r.sum = r.sum.wrapping_add(page_sum(page, &buf));
                r.counts[page as usize] += 1;
                r.reads += 1;
                // `buf` drops here: if the page was evicted meanwhile, this may be its last clone, and its buffer
                // goes back to the pool now.
            }
        }
        Ok(r)
    }

    #[derive(Debug)]
    pub struct Report {
        pub reads: u64,
        pub hits: u64,
        pub misses: u64,
        checksum_ok: bool,
        cached_pages_ok: bool,
        short_page_ok: bool,
        leaked_buffers: usize,
    }

    impl Report {
        pub fn ok(&self) -> bool {
            self.checksum_ok
                && self.cached_pages_ok
                && self.short_page_ok
                && self.leaked_buffers == 0
        }
    }

    fn mib(bytes: u64) -> f64 {
        bytes as f64 / (1 << 20) as f64
    }

    pub fn run(cfg: &Config) -> Result<Report, Box<dyn std::error::Error>> {
        let say = |s: String| {
            if cfg.verbose {
                println!("{s}");
            }
        };
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let len = dio_common::create_pattern_file(&cfg.path, cfg.file_mib, TAIL)?;
        let file = dio_common::open_direct_read(&cfg.path)?;
        let align = dio::requirements(&file)?;
        let page = cfg.page_kib << 10;
        // Every cached page, plus a page being read and one just evicted but still held, per reader.
        let pool = PagePool::builder()
            .buf_size(page)
            .capacity(cfg.cache_pages + 2 * cfg.threads)
            .for_direct_io(&file)?
            .build()?;
        if pool.buf_size() != page || page % align.offset_align() != 0 {
            return Err(format!(
                "{page}-byte pages do not meet the file's O_DIRECT alignment {align:?}"
            )
            .into());
        }
        let pages = len.div_ceil(page as u64) as usize;
        say(format!(
            "page_cache: {} ({len} bytes: {pages} pages of {} KiB, the last {} bytes), O_DIRECT {align:?}",
            cfg.path.display(),
            cfg.page_kib,
            len - (pages as u64 - 1) * page as u64,
        ));
        say(format!(
            "cache: LRU of {} frozen pages ({:.1} MiB); {} readers, zipf s={}, {} s",
            cfg.cache_pages,
            mib((cfg.cache_pages * page) as u64),
            cfg.threads,
            cfg.zipf,
            cfg.seconds
        ));

        let cache = PageCache {
            file,
            page,
            pool: pool.clone(),
            lru: Mutex::new(Lru::new(cfg.cache_pages)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        };
        let zipf = Zipf::new(pages, cfg.zipf);
        let stop = AtomicBool::new(false);
        let t = Instant::now();
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = (0..cfg.threads)
                .map(|i| {
                    let (cache, zipf, stop) = (&cache, &zipf, &stop);
                    s.spawn(move || reader(cache, zipf, i as u64 + 1, stop))
                })
                .collect();
            std::thread::sleep(Duration::from_secs_f64(cfg.seconds.max(0.0)));
            stop.store(true, Relaxed);
            handles
                .into_iter()
                .map(|h| h.join().expect("reader panicked"))
                .collect::<io::Result<Vec<_>>>()
        })?;
        let elapsed = t.elapsed().as_secs_f64();
        let rss = proc_stats::rss_bytes()?;
        let hwm = proc_stats::hwm_bytes()?;

        let reads: u64 = results.iter().map(|r| r.reads).sum();
        let (hits, misses) = (cache.hits.load(Relaxed), cache.misses.load(Relaxed));
        let evictions = cache.lru.lock().unwrap().evictions;
        say(format!(
            "{reads} page reads in {elapsed:.2} s: {:.0} pages/s; hits {hits}, misses {misses}: hit rate {:.1}%; \
             {evictions} evictions; O_DIRECT reads {:.0}/s ({:.1} MB/s)",
            reads as f64 / elapsed,
            100.0 * hits as f64 / reads.max(1) as f64,
            misses as f64 / elapsed,
            misses as f64 * page as f64 / 1e6 / elapsed,
        ));
        let st = pool.stats();
        say(format!(
            "RSS {:.1} MiB (peak {:.1} MiB) with {:.1} MiB of pages cached; pool: {} buffers out, {} overflow maps",
            mib(rss),
            mib(hwm),
            mib((cache.lru.lock().unwrap().map.len() * page) as u64),
            st.in_use,
            st.overflow_maps
        ));

        // Verification against ordinary buffered reads of the same file.
        let data = std::fs::read(&cfg.path)?;
        let page_bytes = |p: usize| &data[p * page..((p + 1) * page).min(data.len())];
        let mut counts = vec![0u64; pages];
        let mut got = 0u64;
        for r in &results {
            got = got.wrapping_add(r.sum);
            for (c, &n) in counts.iter_mut().zip(&r.counts) {
                *c += u64::from(n);
            }
        }
        let expected = counts.iter().enumerate().fold(0u64, |acc, (p, &n)| {
            acc.wrapping_add(n.wrapping_mul(page_sum(p as u64, page_bytes(p))))
        });
        let checksum_ok = got == expected;
        let cached_pages_ok = {
            let lru = cache.lru.lock().unwrap();
            lru.map
                .iter()
                .all(|(&p, (buf, _))| &buf[..] == page_bytes(p as usize))
        };
        let last = cache.get(pages as u64 - 1)?;
        let short_page_ok = last.len() == TAIL && &last[..] == page_bytes(pages - 1);
        drop(last);
        let verdict = |ok| if ok { "MATCH" } else { "MISMATCH" };
        say(format!(
            "verify: checksum of {reads} page reads vs buffered std::fs::read: {}; {} cached pages byte-equal: {}; \
             short last page len() {}: {}",
            verdict(checksum_ok),
            cache.lru.lock().unwrap().map.len(),
            verdict(cached_pages_ok),
            TAIL,
            verdict(short_page_ok),
        ));
        drop(cache);
        let leaked_buffers = pool.stats().in_use;
        say(format!(
            "after dropping the cache: {leaked_buffers} pool buffers out (every evicted and cached page is home)"
        ));
        Ok(Report {
            reads,
            hits,
            misses,
            checksum_ok,
            cached_pages_ok,
            short_page_ok,
            leaked_buffers,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::path::Path;

        #[test]
        fn small_cache_reads_verify() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
            let cfg = Config {
                path: dir.join("page-cache-test.bin"),
                file_mib: 1,
                page_kib: 8,
                cache_pages: 16,
                threads: 3,
                seconds: 0.3,
                zipf: 0.99,
                verbose: false,
            };
            let r = run(&cfg).unwrap();
            assert!(r.ok(), "{r:?}");
            assert_eq!(r.hits + r.misses, r.reads);
            assert!(r.reads > 0 && r.misses > 0, "{r:?}");
            let _ = std::fs::remove_file(&cfg.path);
        }

        #[test]
        fn lru_evicts_least_recently_used() {
            let pool = PagePool::builder().capacity(8).build().unwrap();
            let frozen = |b: u8| {
                let mut buf = pool.acquire().unwrap();
                buf.truncate(1);
                buf[0] = b;
                buf.freeze()
            };
            let mut lru = Lru::new(2);
            lru.insert(1, frozen(1));
            lru.insert(2, frozen(2));
            assert!(lru.get(1).is_some()); // 2 is now the least recently used
            let held = lru.get(2).unwrap(); // and now 1 is; a reader holds a clone of 2
            lru.insert(3, frozen(3)); // evicts 1: its buffer is home at once (no clone out)
            assert!(lru.get(1).is_none());
            assert_eq!(lru.map.len(), 2);
            // A second insert of a cached page keeps the cached one (and uses it: 2 is the oldest now); the
            // duplicate's buffer goes home when dropped.
            let again = lru.insert(3, frozen(30));
            assert_eq!(again[0], 3);
            drop(again);
            lru.insert(4, frozen(4)); // evicts 2, which `held` still holds
            assert!(lru.get(2).is_none());
            assert_eq!(held[0], 2);
            assert_eq!(pool.stats().in_use, 3); // 3, 4 and the evicted 2 still held
            drop(held);
            assert_eq!(pool.stats().in_use, 2);
            drop(lru);
            assert_eq!(pool.stats().in_use, 0);
        }
    }
}
