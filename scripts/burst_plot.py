#!/usr/bin/env python3
"""Plots the overflow burst scenario (issue #15) from its CSV.

Usage: python3 scripts/burst_plot.py docs/img/overflow_burst.csv docs/img/overflow_burst.png

The CSV is what `cargo run --release --example overflow_burst -- --csv PATH [--append --label NAME]` writes:
one row per 100 ms sample, with the run's configuration (`config`), decay and run number. One panel per
configuration, RSS over the time since the burst ended (the demand dropping from 4x capacity back to half of
it), one colour per decay and one thin line per run; the shaded band is the burst, the dotted horizontal line is
5% above the median pre-burst RSS of that panel's runs, and each decay's dashed vertical line is its target
(decay + 1 s after the burst). Needs matplotlib (`pip install matplotlib`).
"""

import csv
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIB = 1024 * 1024
TOLERANCE = 0.05
ALLOWANCE_S = 1.0


def main(csv_path: str, png_path: str) -> None:
    runs = defaultdict(list)  # (config, decay_ms, run) -> [(t since burst end, rss MiB, phase)]
    burst = {}  # (config, decay_ms, run) -> (start, end) relative to the burst's end
    configs = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["config"], int(row["decay_ms"]), int(row["run"]))
            if row["config"] not in configs:
                configs.append(row["config"])
            end = float(row["burst_end"])
            runs[key].append((float(row["t_seconds"]) - end, int(row["rss_bytes"]) / MIB, row["phase"]))
            burst[key] = (float(row["burst_start"]) - end, 0.0)
    if not runs:
        sys.exit(f"{csv_path}: no samples")
    decays = sorted({d for (_, d, _) in runs}, reverse=True)
    colour = {d: f"C{i}" for i, d in enumerate(decays)}

    cols = min(3, len(configs))
    rows = (len(configs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), sharex=True, squeeze=False)
    top = max(rss for samples in runs.values() for (_, rss, _) in samples)
    for ax, config in zip(axes.flat, configs):
        keys = [k for k in runs if k[0] == config]
        pre = statistics.median(
            statistics.median(rss for (_, rss, phase) in runs[k] if phase == "steady") for k in keys
        )
        start = statistics.median(burst[k][0] for k in keys)
        ax.axvspan(start, 0.0, color="grey", alpha=0.15, label="burst (4x capacity)")
        ax.axhline(pre * (1 + TOLERANCE), color="black", linestyle=":", linewidth=1,
                   label=f"pre-burst + 5% ({pre * (1 + TOLERANCE):.1f} MiB)")
        labelled = set()
        for k in sorted(keys, key=lambda k: (-k[1], k[2])):
            d = k[1]
            ts = [t for (t, _, _) in runs[k]]
            rss = [r for (_, r, _) in runs[k]]
            label = None if d in labelled else f"decay {d / 1000:g} s"
            labelled.add(d)
            ax.plot(ts, rss, color=colour[d], linewidth=0.9, alpha=0.8, label=label)
        for d in sorted({k[1] for k in keys}):
            ax.axvline(d / 1000 + ALLOWANCE_S, color=colour[d], linestyle="--", linewidth=1)
        ax.set_title(f"{config} ({len({k[2] for k in keys})} runs per decay)")
        ax.set_ylim(0, top * 1.08)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("seconds since the burst ended")
        ax.set_ylabel("RSS, MiB")
    for ax in list(axes.flat)[len(configs):]:
        ax.axis("off")
    axes.flat[0].legend(loc="upper right", fontsize="small")
    fig.suptitle("Overflow burst (issue #15): RSS every 100 ms; dashed: target decay + 1 s after the burst")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    print(f"wrote {png_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
