#!/usr/bin/env python3
"""Markdown tables of the last criterion run, as in docs/benchmarks.md: the median time per element of every
benchmark, each group with its ratios against the baselines measured in the same run, then the key ratios.

Reads target/criterion/<group>/<id>/new/{estimates,benchmark}.json (criterion 0.5). One element is one buffer
(acquire + release); batch medians are divided by the 1024 buffers of an iteration.

Usage: scripts/bench_table.py [target/criterion]
"""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
med = {}  # full_id -> median ns per element
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    elems = (bench.get("throughput") or {}).get("Elements", 1)
    med[bench["full_id"]] = json.loads(est.read_text())["median"]["point_estimate"] / elems


def t(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns" if ns >= 10 else f"{ns:.2f} ns"


def rate(ns):
    r = 1e9 / ns
    return f"{r / 1e9:.2f} G/s" if r >= 1e9 else f"{r / 1e6:.1f} M/s" if r >= 1e6 else f"{r / 1e3:.0f} K/s"


def x(a, b):
    """Time ratio a/b as text, or '-' if either is missing."""
    if a in med and b in med:
        v = med[a] / med[b]
        return f"{v:.3f}" if v < 0.1 else f"{v:.2f}"
    return "-"


def ids(group):
    return [f for f in med if f.startswith(group + "/")]


def simple(group, bases, order):
    present = ids(group)
    if not present:
        return
    print(f"\n#### `{group}`\n")
    print("| benchmark | median per buffer | rate | " + " | ".join(f"time / {b}" for b in bases) + " |")
    print("|---|---:|---:|" + "---:|" * len(bases))
    names = [n for n in order if f"{group}/{n}" in med] + sorted(
        f[len(group) + 1:] for f in present if f[len(group) + 1:] not in order)
    for n in names:
        f = f"{group}/{n}"
        print(f"| `{n}` | {t(med[f])} | {rate(med[f])} | "
              + " | ".join(x(f, f"{group}/{b}") for b in bases) + " |")


ORDER = ["floor", "pagepool", "pagepool_nocache", "arrayqueue", "mutex_vec", "posix_memalign", "std_aligned",
         "jemalloc", "memmap2"]
simple("hot_path", ["floor", "posix_memalign", "arrayqueue"], ORDER)
simple("batch", ["floor", "posix_memalign", "arrayqueue"], ORDER)
simple("cross_thread", ["pagepool/same_thread"],
       ["pagepool/same_thread", "pagepool/mpsc", "pagepool_nocache/mpsc", "posix_memalign/mpsc",
        "channel_only/mpsc", "pagepool/spin", "pagepool_nocache/spin", "posix_memalign/spin", "channel_only/spin"])

# threads: strategy x T, total rate and scaling against T = 1.
thr = ids("threads")
if thr:
    strategies = [s for s in ["floor", "pagepool", "pagepool_nocache", "arrayqueue", "mutex_vec", "posix_memalign"]
                  if any(f.startswith(f"threads/{s}/") for f in thr)]
    ts = sorted({int(f.rsplit("/", 1)[1]) for f in thr})
    print("\n#### `threads` (total rate over all threads; in brackets: throughput / throughput at T = 1)\n")
    print("| strategy | " + " | ".join(f"T = {n}" for n in ts) + " |")
    print("|---|" + "---:|" * len(ts))
    for s in strategies:
        cells = []
        for n in ts:
            f, f1 = f"threads/{s}/{n}", f"threads/{s}/1"
            cells.append(f"{rate(med[f])} ({med[f1] / med[f]:.2f})" if f in med and f1 in med else "-")
        print(f"| `{s}` | " + " | ".join(cells) + " |")

# overflow: each variant against raw memmap2 of the same variant.
if ids("overflow"):
    print("\n#### `overflow`\n")
    print("| variant | pagepool_overflow | memmap2 | pagepool_overflow / memmap2 |")
    print("|---|---:|---:|---:|")
    for v in ["touch", "untouched"]:
        a, b = f"overflow/pagepool_overflow/{v}", f"overflow/memmap2/{v}"
        if a in med and b in med:
            print(f"| {v} | {t(med[a])} | {t(med[b])} | {x(a, b)} |")

# pool_size: variant x capacity.
if ids("pool_size"):
    print("\n#### `pool_size`\n")
    print("| variant | capacity 1K | capacity 1M | 1M / 1K |")
    print("|---|---:|---:|---:|")
    for v in ["touch", "no_touch", "touch_shuffled", "no_touch_shuffled", "touch_shuffled_nocache"]:
        a, b = f"pool_size/{v}/1K", f"pool_size/{v}/1M"
        if a in med or b in med:
            print(f"| `{v}` | {t(med[a]) if a in med else '-'} | {t(med[b]) if b in med else '-'} | {x(b, a)} |")

# Key ratios.
rows = []


def ratio(a, b, what):
    if a in med and b in med:
        rows.append((what, x(a, b)))


def scaling(s, n):
    a, b = f"threads/{s}/{n}", f"threads/{s}/1"
    if a in med and b in med:
        rows.append((f"threads: {s} throughput T={n} / T=1", f"{med[b] / med[a]:.2f}"))


for b in ["floor", "posix_memalign", "std_aligned", "jemalloc", "arrayqueue", "mutex_vec"]:
    ratio("hot_path/pagepool", f"hot_path/{b}", f"hot path: pagepool / {b} (time)")
ratio("hot_path/pagepool_nocache", "hot_path/floor", "hot path: pagepool_nocache / floor (time)")
ratio("hot_path/pagepool_nocache", "hot_path/posix_memalign", "hot path: pagepool_nocache / posix_memalign (time)")
ratio("hot_path/pagepool", "hot_path/pagepool_nocache", "hot path: pagepool / pagepool_nocache (time)")
for b in ["floor", "posix_memalign", "jemalloc", "arrayqueue", "mutex_vec"]:
    ratio("batch/pagepool", f"batch/{b}", f"batch: pagepool / {b} (time)")
ratio("batch/pagepool", "batch/pagepool_nocache", "batch: pagepool / pagepool_nocache (time)")
for s in ["floor", "pagepool", "pagepool_nocache", "arrayqueue", "mutex_vec", "posix_memalign"]:
    for n in [2, 8]:
        scaling(s, n)
for tr in ["mpsc", "spin"]:
    ratio(f"cross_thread/pagepool/{tr}", "cross_thread/pagepool/same_thread",
          f"cross-thread ({tr}) / same-thread, pagepool (time per buffer)")
    ratio(f"cross_thread/pagepool/{tr}", f"cross_thread/channel_only/{tr}",
          f"cross-thread ({tr}): pagepool / transport alone (time per item)")
    ratio(f"cross_thread/pagepool/{tr}", f"cross_thread/posix_memalign/{tr}",
          f"cross-thread ({tr}): pagepool / posix_memalign (time per buffer)")
    # The pool's own share of a hand-off: the cross-thread time minus the transport carrying a u64, against
    # acquire + release on one thread.
    a, b, c = f"cross_thread/pagepool/{tr}", f"cross_thread/channel_only/{tr}", "cross_thread/pagepool/same_thread"
    if a in med and b in med and c in med:
        rows.append((f"cross-thread ({tr}): (pagepool - transport alone) / same-thread (time per buffer)",
                     f"{(med[a] - med[b]) / med[c]:.2f}"))
for v in ["touch", "touch_shuffled", "touch_shuffled_nocache"]:
    ratio(f"pool_size/{v}/1M", f"pool_size/{v}/1K", f"pool size: capacity 1M / 1K, {v} (time)")
for v in ["touch", "untouched"]:
    ratio(f"overflow/pagepool_overflow/{v}", f"overflow/memmap2/{v}", f"overflow: pagepool / raw memmap2, {v} (time)")

print("\n#### Key ratios (same run)\n")
print("| ratio | value |")
print("|---|---:|")
for what, v in rows:
    print(f"| {what} | {v} |")
