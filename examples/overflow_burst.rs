//! The burst scenario of issue #15: does RSS come back after a burst through the overflow reserve?
//!
//! Run: `cargo run --release --example overflow_burst` (decays `default` (1 s), 3 s and 0, 3 runs each, about
//! 1.5 minutes), or e.g. `cargo run --release --example overflow_burst -- --decay 1000 --runs 1 --csv b.csv`;
//! `--help` lists every flag.
//!
//! # The scenario
//! A [`PagePool`] of `--capacity C` (default 1024) buffers of 8 KiB, [`OverflowPolicy::Map`], everything else
//! the builder's default but `overflow_decay` (`--decay`). One worker thread (`--threads`) runs three phases:
//! 1. *steady* (`--steady`, 3 s): a demand of C/2 buffers live;
//! 2. *burst* (`--burst`, 3 s): 4 x C live, so 3 x C are overflow buffers;
//! 3. *after* (`--after`, default decay + 3 s): back to C/2.
//!
//! Two shapes of demand (`--pattern`):
//! - `batch` (default): the seed workload's query, without its small objects: acquire the phase's demand,
//!   write every byte of each buffer, release them all, repeat. Live buffers go from 0 to the demand in every
//!   query; the demand drops when the phase changes, at the next query.
//! - `churn`: the demand is held all the time; each step releases the oldest buffer held and acquires (and
//!   writes) a new one, so one buffer goes out and one comes in. When the phase changes the held set grows or
//!   shrinks (oldest first) to the new demand at once.
//!
//! # The decay's trigger
//! The pool runs no thread: a reserved buffer idle past the decay is unmapped by the pool's next *slow path*
//! (an overflow acquire or release, a thread cache refill, a shared-freelist acquire), by `trim_idle()` or by
//! `trim()`. Under `batch` every query refills the thread cache (C/2 buffers is far more than its
//! `min(64, C / 16)` slots), so the steady phase itself reaches the decay check many times a second. Under
//! `churn` one thread's release-then-acquire is served by its thread cache alone, so once the burst's overflow
//! buffers have left the held set nothing reaches a slow path: the reserve stays mapped until something calls
//! `trim_idle()`. `--trim-idle-ms MS` makes the sampling thread call `pool.trim_idle()` every MS ms, as an
//! operator's maintenance timer would; it is off by default and the run header says which.
//!
//! # Measurements
//! Every `--sample-ms` (100 ms) the child samples its RSS (`/proc/self/statm`) and the pool's stats with the
//! time since the start and the phase. Per run: *pre-burst RSS* = the median of the steady phase's samples;
//! *peak* = the kernel's high-water mark (`VmHWM`); *back* = the time from the end of the burst (the moment the
//! demand drops) to the first sample from which RSS stays within 5% of the pre-burst RSS until the end of the
//! run, against the target of decay + 1 s. Each run is a fresh child process; runs are interleaved
//! (run 1 of every decay, then run 2, ...). The summary gives medians over the runs with their ranges. `--csv`
//! writes every sample (`config,decay_ms,run,pattern,t_seconds,phase,rss_bytes,live_buffers,reserve_buffers,
//! overflow_in_use,mapped_bytes,decay_unmaps,burst_start,burst_end`; `config` is `--label`, and `--append`
//! adds to an existing file), for `scripts/burst_plot.py`.

#[path = "proc_stats/mod.rs"]
mod proc_stats;

use pagepool::{AlignedBuf, OverflowPolicy, PagePool, DEFAULT_OVERFLOW_DECAY};
use proc_stats::{field, hwm_bytes, parse_line, rss_bytes};
use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::hint::black_box;
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use std::{fs, thread};

/// Bytes per buffer.
const BUF_SIZE: usize = 8192;
/// Default pool capacity in buffers (`--capacity`).
const DEFAULT_CAPACITY: usize = 1024;
/// Demand in the burst, as a multiple of the capacity.
const BURST_FACTOR: usize = 4;
/// The tolerance: RSS back within this fraction of the pre-burst value.
const TOLERANCE: f64 = 0.05;
/// The allowance past the decay for RSS to come back.
const ALLOWANCE: Duration = Duration::from_secs(1);
/// Phase 3 lasts the decay plus this long unless `--after` is given.
const AFTER_EXTRA: f64 = 3.0;

const MIB: f64 = 1024.0 * 1024.0;

const USAGE: &str = "\
overflow_burst: RSS over a burst of 4x the pool's capacity through the overflow reserve (issue #15)

USAGE: cargo run --release --example overflow_burst -- [OPTIONS]

OPTIONS:
  --decay LIST       overflow_decay settings to run, in ms, comma-separated; `default` is the builder's
                     default (1 s) (default: default,3000,0)
  --runs N           runs per decay, each in a fresh child process, interleaved (default 3)
  --capacity C       pooled buffers of 8 KiB (default 1024); demand C/2, then 4C, then C/2
  --threads T        worker threads sharing the demand (default 1)
  --pattern P        batch (acquire the demand, write, release all, repeat) or churn (hold the demand,
                     release the oldest and acquire one at a time) (default batch)
  --steady S         seconds of phase 1 (default 3)
  --burst S          seconds of phase 2 (default 3)
  --after S          seconds of phase 3 (default: decay + 3)
  --sample-ms MS     sampling period (default 100)
  --trim-idle-ms MS  call pool.trim_idle() every MS ms from the sampling thread (default 0: never)
  --prealloc         build with prealloc(true): all pooled memory mapped and faulted in at build
  --idle-trim-after-ms MS
                     build with idle_trim_after(MS ms): idle pooled memory given back (default: never)
  --csv PATH         write every sample as CSV
  --append           append to the CSV (no header) instead of replacing it
  --label NAME       the CSV's `config` column (default `default`)
  --help             this text
";

/// How the demand is applied (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Batch,
    Churn,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Batch => "batch",
            Pattern::Churn => "churn",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(Pattern::Batch),
            "churn" => Ok(Pattern::Churn),
            _ => Err(format!("--pattern: expected batch or churn, got `{s}`")),
        }
    }
}

/// One run's settings (the child's command line).
#[derive(Debug, Clone, Copy)]
struct Params {
    /// `None`: the builder's default.
    decay: Option<Duration>,
    capacity: usize,
    threads: usize,
    pattern: Pattern,
    steady: f64,
    burst: f64,
    /// `None`: decay + `AFTER_EXTRA`.
    after: Option<f64>,
    sample_ms: u64,
    trim_idle_ms: u64,
    /// `PoolBuilder::prealloc(true)`: every chunk mapped and faulted in at build.
    prealloc: bool,
    /// `PoolBuilder::idle_trim_after`, in ms (0: the default, never).
    idle_trim_ms: u64,
}

impl Params {
    fn decay(&self) -> Duration {
        self.decay.unwrap_or(DEFAULT_OVERFLOW_DECAY)
    }

    fn after(&self) -> f64 {
        self.after
            .unwrap_or(self.decay().as_secs_f64() + AFTER_EXTRA)
    }

    /// The decay as a CSV/label value: its milliseconds (the default's too).
    fn decay_ms(&self) -> u128 {
        self.decay().as_millis()
    }

    fn decay_label(&self) -> String {
        match self.decay {
            None => format!("default ({} ms)", self.decay_ms()),
            Some(_) => format!("{} ms", self.decay_ms()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The child: one run

/// Takes a buffer and writes every byte of it.
fn take_filled(pool: &PagePool, byte: u8) -> AlignedBuf {
    let mut buf = pool
        .acquire()
        .unwrap_or_else(|e| panic!("PagePool::acquire failed: {e}"));
    buf.fill(byte);
    black_box(&*buf);
    buf
}

/// One worker: applies `demand` (this thread's share, re-read at every query or step) until `stop`.
fn worker(
    pool: &PagePool,
    pattern: Pattern,
    demand: &AtomicUsize,
    live: &AtomicUsize,
    stop: &AtomicBool,
) {
    let mut held: VecDeque<AlignedBuf> = VecDeque::new();
    let mut step = 0u64;
    while !stop.load(Relaxed) {
        step += 1;
        let byte = (step % 255) as u8 + 1;
        let want = demand.load(Relaxed);
        match pattern {
            Pattern::Batch => {
                // A fresh list per query, as a query's own state would be: the burst's 4C-entry list does not
                // stay on this thread's heap afterwards.
                let mut batch = Vec::with_capacity(want);
                for _ in 0..want {
                    batch.push(take_filled(pool, byte));
                    live.fetch_add(1, Relaxed);
                }
                live.fetch_sub(batch.len(), Relaxed);
                drop(batch);
            }
            Pattern::Churn => {
                if held.len() > want {
                    while held.len() > want {
                        held.pop_front();
                        live.fetch_sub(1, Relaxed);
                    }
                    held.shrink_to_fit();
                }
                while held.len() < want {
                    held.push_back(take_filled(pool, byte));
                    live.fetch_add(1, Relaxed);
                }
                if held.pop_front().is_some() {
                    held.push_back(take_filled(pool, byte));
                }
            }
        }
    }
    live.fetch_sub(held.len(), Relaxed);
}

/// Runs one burst scenario in this (child) process and reports samples on stdout.
fn run_child(p: Params) -> Result<(), Box<dyn Error>> {
    let mut builder = PagePool::builder()
        .buf_size(BUF_SIZE)
        .capacity(p.capacity)
        .overflow(OverflowPolicy::Map);
    if let Some(d) = p.decay {
        builder = builder.overflow_decay(d);
    }
    if p.prealloc {
        builder = builder.prealloc(true);
    }
    if p.idle_trim_ms > 0 {
        builder = builder.idle_trim_after(Duration::from_millis(p.idle_trim_ms));
    }
    let pool = builder.build()?;
    let per_thread = |total: usize| total.div_ceil(p.threads);
    let demands: Vec<AtomicUsize> = (0..p.threads)
        .map(|_| AtomicUsize::new(per_thread(p.capacity / 2)))
        .collect();
    let live = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut out = io::stdout().lock();
    let phase_ends = [p.steady, p.steady + p.burst, p.steady + p.burst + p.after()];
    let period = Duration::from_millis(p.sample_ms);
    let trim_period = (p.trim_idle_ms > 0).then(|| Duration::from_millis(p.trim_idle_ms));
    let start = Instant::now();
    let mut trimmed = 0usize;
    thread::scope(|scope| -> Result<(), Box<dyn Error>> {
        for (i, demand) in demands.iter().enumerate() {
            let (pool, live, stop) = (&pool, &live, &stop);
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn_scoped(scope, move || worker(pool, p.pattern, demand, live, stop))?;
        }
        let mut phase = 0usize;
        let mut next_sample = Duration::ZERO;
        let mut next_trim = trim_period.unwrap_or(Duration::MAX);
        loop {
            let now = start.elapsed();
            let t = now.as_secs_f64();
            while phase < 3 && t >= phase_ends[phase] {
                phase += 1;
                let total = match phase {
                    1 => BURST_FACTOR * p.capacity,
                    _ => p.capacity / 2,
                };
                for d in &demands {
                    d.store(per_thread(total), Relaxed);
                }
                if phase < 3 {
                    writeln!(out, "phase n={phase} t={t:.4}")?;
                }
            }
            if phase == 3 {
                break;
            }
            if let Some(tp) = trim_period {
                if now >= next_trim {
                    trimmed += pool.trim_idle();
                    next_trim += tp;
                }
            }
            if now >= next_sample {
                let s = pool.stats();
                writeln!(
                    out,
                    "sample t={t:.4} phase={} rss={} live={} reserve={} overflow_out={} mapped={} decay_unmaps={}",
                    ["steady", "burst", "after"][phase],
                    rss_bytes()?,
                    live.load(Relaxed),
                    s.reserve_buffers,
                    s.overflow_in_use,
                    s.mapped_bytes,
                    s.decay_unmaps,
                )?;
                next_sample += period;
            }
            let wake = next_sample.min(next_trim);
            let now = start.elapsed();
            if wake > now {
                thread::sleep((wake - now).min(Duration::from_millis(20)));
            }
        }
        stop.store(true, Relaxed);
        Ok(())
    })?;
    let s = pool.stats();
    writeln!(
        out,
        "done hwm={} reserve={} decay_unmaps={} overflow_maps={} overflow_reuses={} chunks={} trimmed={trimmed}",
        hwm_bytes()?,
        s.reserve_buffers,
        s.decay_unmaps,
        s.overflow_maps,
        s.overflow_reuses,
        s.chunks,
    )?;
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The parent: runs, summaries, CSV

#[derive(Debug, Clone)]
struct Sample {
    t: f64,
    phase: String,
    rss: u64,
    live: u64,
    reserve: u64,
    overflow_out: u64,
    mapped: u64,
    decay_unmaps: u64,
}

/// One child's result.
#[derive(Debug)]
struct Run {
    params: Params,
    index: usize,
    samples: Vec<Sample>,
    burst_start: f64,
    burst_end: f64,
    done: HashMap<String, u64>,
}

impl Run {
    /// Median RSS of the steady phase.
    fn pre(&self) -> u64 {
        let v: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.phase == "steady")
            .map(|s| s.rss as f64)
            .collect();
        median(&v) as u64
    }

    fn peak(&self) -> u64 {
        let sampled = self.samples.iter().map(|s| s.rss).max().unwrap_or(0);
        self.done.get("hwm").copied().unwrap_or(0).max(sampled)
    }

    /// Seconds after the burst's end from which RSS stays within the tolerance of the pre-burst RSS; `None`
    /// if the last sample is still above it.
    fn back_after(&self) -> Option<f64> {
        let limit = self.pre() as f64 * (1.0 + TOLERANCE);
        let after: Vec<&Sample> = self.samples.iter().filter(|s| s.phase == "after").collect();
        let mut back = None;
        for s in after.iter().rev() {
            if s.rss as f64 > limit {
                break;
            }
            back = Some(s.t - self.burst_end);
        }
        back
    }

    /// Seconds after the burst's end from which the reserve stays empty (`None`: not by the last sample).
    fn reserve_gone_after(&self) -> Option<f64> {
        let mut gone = None;
        for s in self.samples.iter().filter(|s| s.phase == "after").rev() {
            if s.reserve > 0 {
                break;
            }
            gone = Some(s.t - self.burst_end);
        }
        gone
    }

    /// RSS of the last sample.
    fn last(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.rss)
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `median (min-max)` of `v`, formatted with `f`.
fn spread(v: &[f64], f: impl Fn(f64) -> String) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} ({}-{})", f(median(v)), f(lo), f(hi))
}

fn child_args(p: &Params) -> Vec<String> {
    let mut a = vec![
        "--child".to_string(),
        "--decay".into(),
        p.decay
            .map_or("default".into(), |d| d.as_millis().to_string()),
        "--capacity".into(),
        p.capacity.to_string(),
        "--threads".into(),
        p.threads.to_string(),
        "--pattern".into(),
        p.pattern.name().into(),
        "--steady".into(),
        p.steady.to_string(),
        "--burst".into(),
        p.burst.to_string(),
        "--sample-ms".into(),
        p.sample_ms.to_string(),
        "--trim-idle-ms".into(),
        p.trim_idle_ms.to_string(),
        "--idle-trim-after-ms".into(),
        p.idle_trim_ms.to_string(),
    ];
    if p.prealloc {
        a.push("--prealloc".into());
    }
    if let Some(after) = p.after {
        a.extend(["--after".into(), after.to_string()]);
    }
    a
}

fn run_one(p: Params, index: usize) -> Result<Run, Box<dyn Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(child_args(&p))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut run = Run {
        params: p,
        index,
        samples: Vec::new(),
        burst_start: p.steady,
        burst_end: p.steady + p.burst,
        done: HashMap::new(),
    };
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Some((kind, kv)) = parse_line(&line) else {
            continue;
        };
        match kind {
            "sample" => run.samples.push(Sample {
                t: field(&kv, "t")?,
                phase: field(&kv, "phase")?,
                rss: field(&kv, "rss")?,
                live: field(&kv, "live")?,
                reserve: field(&kv, "reserve")?,
                overflow_out: field(&kv, "overflow_out")?,
                mapped: field(&kv, "mapped")?,
                decay_unmaps: field(&kv, "decay_unmaps")?,
            }),
            "phase" => {
                let t: f64 = field(&kv, "t")?;
                match field::<u32>(&kv, "n")? {
                    1 => run.burst_start = t,
                    _ => run.burst_end = t,
                }
            }
            "done" => {
                for (k, v) in kv {
                    run.done.insert(k.to_string(), v.parse().unwrap_or(0));
                }
            }
            _ => eprintln!("  child: {line}"),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("a child failed ({status})").into());
    }
    Ok(run)
}

struct Options {
    params: Params,
    decays: Vec<Option<Duration>>,
    runs: usize,
    csv: Option<String>,
    /// Append to the CSV (no header) instead of replacing it.
    append: bool,
    /// The CSV's `config` column.
    label: String,
}

fn mib(b: u64) -> String {
    format!("{:.2}", b as f64 / MIB)
}

fn run_parent(o: &Options) -> Result<ExitCode, Box<dyn Error>> {
    let p0 = o.params;
    println!(
        "overflow burst: capacity {} x 8 KiB, demand {} -> {} -> {} buffers ({} s, {} s, decay + {} s unless \
         --after), pattern {}, {} worker thread(s), sample every {} ms",
        p0.capacity,
        p0.capacity / 2,
        BURST_FACTOR * p0.capacity,
        p0.capacity / 2,
        p0.steady,
        p0.burst,
        AFTER_EXTRA,
        p0.pattern.name(),
        p0.threads,
        p0.sample_ms,
    );
    match p0.trim_idle_ms {
        0 => println!(
            "maintenance: none (pool.trim_idle() is never called; the reserve decays only on the pool's slow paths)"
        ),
        ms => println!("maintenance: pool.trim_idle() every {ms} ms from the sampling thread"),
    }
    println!(
        "builder: buf_size(8192).capacity({}).overflow(Map){}{}.overflow_decay(<decay>)",
        p0.capacity,
        if p0.prealloc { ".prealloc(true)" } else { "" },
        match p0.idle_trim_ms {
            0 => String::new(),
            ms => format!(".idle_trim_after({ms} ms)"),
        },
    );
    let mut runs: Vec<Run> = Vec::new();
    for r in 0..o.runs {
        for &decay in &o.decays {
            let p = Params { decay, ..p0 };
            let run = run_one(p, r + 1)?;
            let back = run.back_after();
            let secs =
                |x: Option<f64>| x.map_or("never (in the run)".into(), |b| format!("{b:.2} s"));
            println!(
                "  run {} decay {:<16} pre {:>6} MiB  peak {:>6} MiB  last {:>6} MiB  back within 5% after {}  \
                 (target {:.1} s)  reserve empty after {}  decay_unmaps {}  reserve at end {}",
                r + 1,
                p.decay_label(),
                mib(run.pre()),
                mib(run.peak()),
                mib(run.last()),
                secs(back),
                (p.decay() + ALLOWANCE).as_secs_f64(),
                secs(run.reserve_gone_after()),
                run.done.get("decay_unmaps").copied().unwrap_or(0),
                run.done.get("reserve").copied().unwrap_or(0),
            );
            runs.push(run);
        }
    }
    if let Some(path) = &o.csv {
        let append = o.append && fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)?;
        let mut f = io::BufWriter::new(file);
        if !append {
            writeln!(
                f,
                "config,decay_ms,run,pattern,t_seconds,phase,rss_bytes,live_buffers,reserve_buffers,\
                 overflow_in_use,mapped_bytes,decay_unmaps,burst_start,burst_end"
            )?;
        }
        for run in &runs {
            for s in &run.samples {
                writeln!(
                    f,
                    "{},{},{},{},{:.4},{},{},{},{},{},{},{},{:.4},{:.4}",
                    o.label,
                    run.params.decay_ms(),
                    run.index,
                    run.params.pattern.name(),
                    s.t,
                    s.phase,
                    s.rss,
                    s.live,
                    s.reserve,
                    s.overflow_out,
                    s.mapped,
                    s.decay_unmaps,
                    run.burst_start,
                    run.burst_end,
                )?;
            }
        }
        f.flush()?;
        println!("wrote {path}");
    }
    println!();
    println!(
        "| decay | runs | pre-burst RSS, MiB | peak RSS, MiB | RSS at the end, MiB | end / pre | reserve empty \
         after, s | back within 5% after, s | target (decay + 1 s) |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|---|");
    let mut all_met = true;
    for &decay in &o.decays {
        let p = Params { decay, ..p0 };
        let rs: Vec<&Run> = runs.iter().filter(|r| r.params.decay == decay).collect();
        let col = |f: &dyn Fn(&Run) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let target = (p.decay() + ALLOWANCE).as_secs_f64();
        let backs: Vec<Option<f64>> = rs.iter().map(|r| r.back_after()).collect();
        let met = backs
            .iter()
            .filter(|b| b.is_some_and(|b| b <= target))
            .count();
        let never = backs.iter().filter(|b| b.is_none()).count();
        let back_vals: Vec<f64> = backs.iter().flatten().copied().collect();
        let med_met = never * 2 < rs.len()
            && median(
                &backs
                    .iter()
                    .map(|b| b.unwrap_or(f64::INFINITY))
                    .collect::<Vec<_>>(),
            ) <= target;
        all_met &= med_met;
        let mb = |x: f64| format!("{:.2}", x / MIB);
        let gone: Vec<f64> = rs.iter().filter_map(|r| r.reserve_gone_after()).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {}{} | {}{} | {} ({met} of {} runs; median {}) |",
            p.decay_label(),
            rs.len(),
            spread(&col(&|r| r.pre() as f64), mb),
            spread(&col(&|r| r.peak() as f64), mb),
            spread(&col(&|r| r.last() as f64), mb),
            spread(&col(&|r| r.last() as f64 / r.pre() as f64), |x| format!(
                "{x:.3}"
            )),
            spread(&gone, |x| format!("{x:.2}")),
            if gone.len() < rs.len() {
                format!(", never in {} run(s)", rs.len() - gone.len())
            } else {
                String::new()
            },
            spread(&back_vals, |x| format!("{x:.2}")),
            if never > 0 {
                format!(", never in {never} run(s)")
            } else {
                String::new()
            },
            format_args!("<= {target:.1} s"),
            rs.len(),
            if med_met { "met" } else { "**missed**" },
        );
    }
    println!(
        "\ntarget (RSS back within 5% of the pre-burst median within decay + 1 s, on the median run): {}",
        if all_met { "met" } else { "MISSED" }
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------------------------
// Command line

enum Mode {
    Help,
    Parent(Options),
    Child(Params),
}

fn parse_decay(v: &str) -> Result<Option<Duration>, String> {
    if v == "default" {
        return Ok(None);
    }
    v.parse::<u64>()
        .map(|ms| Some(Duration::from_millis(ms)))
        .map_err(|_| format!("--decay: `{v}` is neither `default` nor milliseconds"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Mode, String> {
    fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: invalid value `{v}`"))
    }
    let mut p = Params {
        decay: None,
        capacity: DEFAULT_CAPACITY,
        threads: 1,
        pattern: Pattern::Batch,
        steady: 3.0,
        burst: 3.0,
        after: None,
        sample_ms: 100,
        trim_idle_ms: 0,
        prealloc: false,
        idle_trim_ms: 0,
    };
    let mut decays = vec![None, Some(Duration::from_secs(3)), Some(Duration::ZERO)];
    let (mut runs, mut csv, mut child, mut append) = (3usize, None, false, false);
    let mut label = String::from("default");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Mode::Help),
            "--child" => child = true,
            "--decay" => {
                let v: String = value(&arg, args.next())?;
                decays = v
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| parse_decay(s.trim()))
                    .collect::<Result<_, _>>()?;
            }
            "--runs" => runs = value(&arg, args.next())?,
            "--capacity" => p.capacity = value(&arg, args.next())?,
            "--threads" => p.threads = value(&arg, args.next())?,
            "--pattern" => p.pattern = Pattern::parse(&value::<String>(&arg, args.next())?)?,
            "--steady" => p.steady = value(&arg, args.next())?,
            "--burst" => p.burst = value(&arg, args.next())?,
            "--after" => p.after = Some(value(&arg, args.next())?),
            "--sample-ms" => p.sample_ms = value(&arg, args.next())?,
            "--trim-idle-ms" => p.trim_idle_ms = value(&arg, args.next())?,
            "--idle-trim-after-ms" => p.idle_trim_ms = value(&arg, args.next())?,
            "--prealloc" => p.prealloc = true,
            "--csv" => csv = Some(value(&arg, args.next())?),
            "--append" => append = true,
            "--label" => label = value(&arg, args.next())?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if p.capacity < 2 {
        return Err("--capacity must be at least 2".into());
    }
    if p.threads == 0 || runs == 0 || p.sample_ms == 0 {
        return Err("--threads, --runs and --sample-ms must be at least 1".into());
    }
    for (flag, s) in [
        ("--steady", p.steady),
        ("--burst", p.burst),
        ("--after", p.after.unwrap_or(1.0)),
    ] {
        if !(s > 0.0 && s.is_finite()) {
            return Err(format!("{flag} must be a positive number of seconds"));
        }
    }
    if decays.is_empty() {
        return Err("--decay: empty list".into());
    }
    if child {
        p.decay = decays[0];
        return Ok(Mode::Child(p));
    }
    Ok(Mode::Parent(Options {
        params: p,
        decays,
        runs,
        csv,
        append,
        label,
    }))
}

fn main() -> ExitCode {
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Help => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Mode::Child(p) => run_child(p).map(|()| ExitCode::SUCCESS),
        Mode::Parent(o) => run_parent(&o),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}
