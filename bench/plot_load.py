"""Plot latency and delivered fps against stream count from the load and seed results.

Reads ``bench/results/load.json`` (batching on / off) and ``bench/results/seed_baseline.json``
(the seed's design, and edgesight measured in that same run) and writes
``bench/results/load.png``.

    .venv/bin/python bench/plot_load.py
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from harness import RESULTS
from matplotlib import ticker

log = logging.getLogger("bench.plot_load")

LATENCY_TICKS_MS = (20, 50, 100, 200, 500, 1000, 2000, 5000)

STYLE: dict[str, dict[str, Any]] = {
    "batching on": {"color": "#1f77b4", "marker": "o"},
    "batching off": {"color": "#ff7f0e", "marker": "s"},
    "seed design": {"color": "#d62728", "marker": "^"},
    "batching on, seed run": {"color": "#1f77b4", "marker": "o", "fillstyle": "none", "lw": 0.8},
}


def series(points: list[dict[str, Any]], key: str, value: str) -> dict[str, list[float]]:
    chosen = [p for p in points if p.get("mode", p.get("design")) == key]
    chosen.sort(key=lambda p: p["streams"])
    return {
        "streams": [p["streams"] for p in chosen],
        "p50": [p["latency"]["p50_ms"] for p in chosen],
        "p95": [p["latency"]["p95_ms"] for p in chosen],
        "fps": [p[value] for p in chosen],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=Path, default=RESULTS / "load.json")
    parser.add_argument("--seed", type=Path, default=RESULTS / "seed_baseline.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "load.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load = json.loads(args.load.read_text())
    lines = {
        "batching on": series(load["points"], "batching_on", "fps_total"),
        "batching off": series(load["points"], "batching_off", "fps_total"),
    }
    if args.seed.is_file():
        seed = json.loads(args.seed.read_text())
        lines["seed design"] = series(seed["load"], "seed", "fps_total")
        lines["batching on, seed run"] = series(seed["load"], "edgesight", "fps_total")

    fig, (ax_latency, ax_fps) = plt.subplots(1, 2, figsize=(12, 5.6))
    for name, data in lines.items():
        style = dict(STYLE[name])
        width = style.pop("lw", 1.8)
        ax_latency.plot(data["streams"], data["p50"], label=f"{name}: p50", lw=width, **style)
        ax_latency.plot(
            data["streams"], data["p95"], label=f"{name}: p95", ls="--", lw=width * 0.7, **style
        )
        ax_fps.plot(data["streams"], data["fps"], label=name, lw=width, **style)
    best = load["engine_vs_8_streams"]["engine"]["best_fps"]
    ax_fps.axhline(best, color="grey", ls=":", lw=1.2)
    ax_fps.annotate(
        f"bare session.run, best batch: {best:.1f} fps",
        (1, best),
        xytext=(0, 4),
        textcoords="offset points",
        color="grey",
        fontsize=8,
    )
    streams = sorted({s for data in lines.values() for s in data["streams"]})
    for ax in (ax_latency, ax_fps):
        ax.set_xscale("log", base=2)
        ax.set_xticks(streams, [str(s) for s in streams])
        ax.set_xlabel("camera streams (30 fps each)")
        ax.grid(True, which="both", alpha=0.3)
    ax_latency.set_yscale("log")
    ax_latency.yaxis.set_major_locator(ticker.FixedLocator(LATENCY_TICKS_MS))
    ax_latency.yaxis.set_major_formatter(ticker.ScalarFormatter())
    ax_latency.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax_latency.set_ylabel("capture -> result latency (ms, log)")
    ax_latency.set_title("Latency")
    ax_latency.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    ax_fps.set_ylabel("results delivered per second (all streams)")
    ax_fps.set_ylim(0, best * 1.3)
    ax_fps.set_title("Delivered throughput")
    ax_fps.legend(fontsize=8, loc="upper right")
    fig.suptitle(
        f"One node, NanoDet-g 416, {load['machine']}\n"
        "batching on/off: load.py; seed design and the hollow markers: seed_baseline.py "
        "(another run); K = 2, loopback",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
