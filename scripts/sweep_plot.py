#!/usr/bin/env python3
"""Plots the seed workload's batch sweep (issue #14) from its CSV.

Usage: python3 scripts/sweep_plot.py docs/img/seed_sweep.csv docs/img/seed_sweep.png

The CSV is what `cargo run --release --example seed_workload -- --sweep --csv PATH` writes: one row per leg run,
with `of_floor` = the leg's queries/s over the same round's floor. One panel per allocator (pool, mimalloc,
jemalloc, memalign), one line per thread count: the median of `of_floor` over the rounds at each batch size,
with the range (min-max) as error bars; the dashed line is the pool's target of issue #14 (0.90 of the floor).
Needs matplotlib (`pip install matplotlib`).
"""

import csv
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LEGS = ["pool", "mimalloc", "jemalloc", "memalign"]
TARGET_OF_FLOOR = 0.90


def main(csv_path: str, png_path: str) -> None:
    ratios = defaultdict(list)  # (leg, threads, batch) -> [of_floor per round]
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["leg"] in LEGS and row["of_floor"]:
                key = (row["leg"], int(row["threads"]), int(row["batch"]))
                ratios[key].append(float(row["of_floor"]))
    if not ratios:
        sys.exit(f"{csv_path}: no sweep rows with a floor to compare against")
    threads = sorted({t for (_, t, _) in ratios})
    batches = sorted({b for (_, _, b) in ratios})
    rounds = max(len(v) for v in ratios.values())

    fig, axes = plt.subplots(1, len(LEGS), figsize=(4.2 * len(LEGS), 4.2), sharey=True)
    top = max(max(v) for v in ratios.values())
    for ax, leg in zip(axes, LEGS):
        for i, t in enumerate(threads):
            xs, med, lo, hi = [], [], [], []
            for b in batches:
                v = ratios.get((leg, t, b))
                if not v:
                    continue
                m = statistics.median(v)
                xs.append(b)
                med.append(m)
                lo.append(m - min(v))
                hi.append(max(v) - m)
            if xs:
                ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, color=f"C{i}",
                            label=f"{t} thread{'s' if t > 1 else ''}")
        ax.axhline(TARGET_OF_FLOOR, color="black", linestyle="--", linewidth=1,
                   label=f"pool target ({TARGET_OF_FLOOR:.2f})")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_title(leg)
        ax.set_xlabel("buffers per query (N)")
        ax.set_ylim(0, max(1.05, top * 1.05))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("queries/s over the same round's floor")
    axes[0].legend(loc="lower left", fontsize="small")
    fig.suptitle(f"Seed workload batch sweep: fraction of the no-allocator floor "
                 f"(median of {rounds} rounds, bars: min-max)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    print(f"wrote {png_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
