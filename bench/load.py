"""Many cameras, one node: delivered fps, drops, latency and node CPU against stream count,
dynamic batching on vs off, side by side in one run.

Two real nodes run as subprocesses (``python -m edgesight node``): batching on
(``EDGESIGHT_MAX_BATCH_SIZE`` 8, ``EDGESIGHT_MAX_BATCH_WAIT_MS`` 2) and off (batch size 1).
For each stream count, N simulated 30 fps cameras (``streams.py``: one ``NodeStream`` and
one websockets connection with ``compression=None`` each, sending the letterboxed
astronaut and chelsea photos alternately) load one node, then the other (the order
alternates from point to point).

Then the throughput ratio: short slices of bare ``session.run`` in this process at batch
1, 2, 4 and 8 alternate with short windows of 8 streams on the batching node, so that
the delivered throughput is set against the engine's best batched throughput under the
same machine noise. Then K = 1 vs K = 2 frames in flight (1 and 8
streams) in alternating blocks, and last a soak: 8 streams for a minute, latency per sixth of it.

    .venv/bin/python bench/load.py --streams 1 2 4 8 16 --duration-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (
    MODEL,
    RESULTS,
    ServerProcess,
    camera_frames,
    edgesight_node,
    free_port,
    machine,
    model_inputs,
    summary,
    table,
    write_result,
)
from streams import CameraFrame, PointRun, Window, edgesight_stream, run_point, summarise

log = logging.getLogger("bench.load")

ENGINE_BATCHES = (1, 2, 4, 8)


def engine_block(
    session: ort.InferenceSession, tensors: list[npt.NDArray[np.uint8]], reps: int
) -> dict[int, list[float]]:
    """ms per ``session.run`` at each batch size (one warm-up run each)."""
    name = session.get_inputs()[0].name
    times: dict[int, list[float]] = {}
    for batch in ENGINE_BATCHES:
        images = np.stack([tensors[i % len(tensors)] for i in range(batch)])
        session.run(None, {name: images})
        times[batch] = []
        for _ in range(reps):
            t0 = time.perf_counter()
            session.run(None, {name: images})
            times[batch].append((time.perf_counter() - t0) * 1000)
    return times


def engine_summary(blocks: list[dict[int, list[float]]]) -> dict[str, Any]:
    by_batch = {}
    for batch in ENGINE_BATCHES:
        median_ms = statistics.median(t for block in blocks for t in block[batch])
        by_batch[str(batch)] = {
            "median_ms": round(median_ms, 2),
            "ms_per_image": round(median_ms / batch, 2),
            "fps": round(1000 * batch / median_ms, 2),
        }
    best = max(by_batch, key=lambda b: by_batch[b]["fps"])
    return {"by_batch": by_batch, "best_batch": int(best), "best_fps": by_batch[best]["fps"]}


def measure(
    node: ServerProcess,
    streams: int,
    k: int,
    frames: list[CameraFrame],
    duration_s: float,
    warmup_s: float,
) -> PointRun:
    url = f"ws://127.0.0.1:{node.port}/ws"
    go = functools.partial(edgesight_stream, url, k, frames)
    window = Window.after(connect_s=0.5 + 0.05 * streams, warmup_s=warmup_s, duration_s=duration_s)
    return asyncio.run(run_point([go] * streams, node.pid, window))


SOAK_SLICES = 6
K_COLUMNS: tuple[Callable[[dict[str, Any]], object], ...] = (
    lambda v: v["fps_total"],
    lambda v: v["latency"].get("p50_ms"),
    lambda v: v["latency"].get("p95_ms"),
    lambda v: v["skipped"],
    lambda v: v["dropped"],
    lambda v: v["batch_size_mean"],
)
MODES_OFF = {"max_batch_size": 1, "max_batch_wait_ms": 0.0}
POINT_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], object]], ...] = (
    ("streams", lambda p: p["streams"]),
    ("mode", lambda p: p["mode"]),
    ("fps", lambda p: p["fps_total"]),
    ("fps/stream", lambda p: p["fps_per_stream_mean"]),
    ("skipped", lambda p: p["skipped"]),
    ("dropped", lambda p: p["dropped"]),
    ("p50", lambda p: p["latency"].get("p50_ms")),
    ("p95", lambda p: p["latency"].get("p95_ms")),
    ("p99", lambda p: p["latency"].get("p99_ms")),
    ("p95 1st/3", lambda p: p["p95_first_third_ms"]),
    ("p95 3rd/3", lambda p: p["p95_last_third_ms"]),
    ("batch", lambda p: p["batch_size_mean"]),
    ("node CPU%", lambda p: p["node_cpu_percent"]),
    ("client CPU%", lambda p: p["client_cpu_percent"]),
)


def run_points(
    nodes: dict[str, ServerProcess], frames: list[CameraFrame], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Each stream count against each node, the order alternating from point to point."""
    points: list[dict[str, Any]] = []
    for i, streams in enumerate(args.streams):
        for mode in list(nodes) if i % 2 == 0 else list(reversed(nodes)):
            log.info("%s: %d streams", mode, streams)
            run = measure(nodes[mode], streams, args.k, frames, args.duration_s, args.warmup_s)
            point = {"mode": mode, **summarise([run])}
            points.append(point)
            log.info("  %.1f fps, p95 %s ms", point["fps_total"], point["latency"].get("p95_ms"))
    return points


def run_ratio_test(
    node: ServerProcess,
    session: ort.InferenceSession,
    tensors: list[npt.NDArray[np.uint8]],
    frames: list[CameraFrame],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """8 streams on the batching node vs bare session.run at batch 1-8, in alternating
    slices: machine noise that comes and goes over seconds hits both sides alike."""
    if args.ratio_rounds < 1:
        return {}
    runs: list[PointRun] = []
    blocks: list[dict[int, list[float]]] = []
    for round_index in range(args.ratio_rounds):
        log.info("engine vs 8 streams, round %d", round_index)
        blocks.append(engine_block(session, tensors, args.engine_reps))
        runs.append(measure(node, 8, args.k, frames, args.ratio_window_s, 1.0))
    point = summarise(runs)
    engine = engine_summary(blocks)
    inference_ms = point["server_ms"]["inference_ms"]["mean_ms"]
    # What session.run inside the node could deliver at the batch sizes it actually ran,
    # timed by the node itself during the same windows.
    in_node_fps = point["batch_size_mean"] * 1000 / inference_ms
    return {
        "rounds": args.ratio_rounds,
        "window_s": args.ratio_window_s,
        "delivered_fps": point["fps_total"],
        "engine": engine,
        "delivered_over_engine_best": round(point["fps_total"] / engine["best_fps"], 3),
        "in_node_session_run_fps": round(in_node_fps, 2),
        "delivered_over_in_node_session_run": round(point["fps_total"] / in_node_fps, 3),
        "point": point,
    }


def run_k_test(
    node: ServerProcess, frames: list[CameraFrame], args: argparse.Namespace
) -> dict[str, Any]:
    """K = 1 vs K = 2 frames in flight, in alternating blocks, per stream count."""
    results: dict[str, Any] = {}
    for streams in args.k_streams if args.k_blocks > 0 else []:
        runs: dict[int, list[PointRun]] = {1: [], 2: []}
        for block_index in range(args.k_blocks):
            for k in (1, 2) if block_index % 2 == 0 else (2, 1):
                log.info("K=%d block %d, %d streams", k, block_index, streams)
                runs[k].append(measure(node, streams, k, frames, args.k_block_s, 1.0))
        results[f"{streams} streams"] = {f"K={k}": summarise(r) for k, r in runs.items()}
    return results


def run_soak(
    node: ServerProcess, frames: list[CameraFrame], args: argparse.Namespace
) -> dict[str, Any]:
    """8 streams on the batching node for one long window, latency per sixth of it: a
    queue that grows shows as p95 rising slice after slice."""
    log.info("soak: 8 streams for %.0f s", args.soak_s)
    run = measure(node, 8, args.k, frames, args.soak_s, args.warmup_s)
    samples = [sample for tally in run.tallies for sample in tally.latency]
    slice_s = args.soak_s / SOAK_SLICES
    slices = [
        summary([ms for at, ms in samples if i * slice_s <= at < (i + 1) * slice_s])
        for i in range(SOAK_SLICES)
    ]
    point = summarise([run])
    return {
        "duration_s": args.soak_s,
        "fps_total": point["fps_total"],
        "dropped": point["dropped"],
        "latency": point["latency"],
        "p50_by_slice_ms": [s.get("p50_ms") for s in slices],
        "p95_by_slice_ms": [s.get("p95_ms") for s in slices],
    }


def goals_from(points: list[dict[str, Any]], ratio: dict[str, Any]) -> dict[str, Any]:
    goals: dict[str, Any] = {
        "goal": "delivered at 8 streams >= 0.9 x engine best batched throughput; "
        "p95 bounded, no growth over time",
    }
    if ratio:
        goals["delivered_8_streams_fps"] = ratio["delivered_fps"]
        goals["engine_best_fps"] = ratio["engine"]["best_fps"]
        goals["delivered_over_engine_best"] = ratio["delivered_over_engine_best"]
        goals["delivered_over_in_node_session_run"] = ratio["delivered_over_in_node_session_run"]
    goals["p95_last_over_first_third"] = {
        f"{p['mode']} {p['streams']}": round(p["p95_last_third_ms"] / p["p95_first_third_ms"], 2)
        for p in points
        if p["p95_first_third_ms"] and p["p95_last_third_ms"]
    }
    return goals


def report(result: dict[str, Any]) -> None:
    headers = [name for name, _ in POINT_COLUMNS]
    rows = [[get(p) for _, get in POINT_COLUMNS] for p in result["points"]]
    log.info("\n%s", table(headers, rows))
    if result["engine_vs_8_streams"]:
        engine_rows = [
            [b, v["median_ms"], v["ms_per_image"], v["fps"]]
            for b, v in result["engine_vs_8_streams"]["engine"]["by_batch"].items()
        ]
        log.info("\n%s", table(["batch", "ms/run", "ms/image", "fps"], engine_rows))
    k_rows = [
        [streams, k, *(get(v) for get in K_COLUMNS)]
        for streams, by_k in result["k_test"].items()
        for k, v in by_k.items()
    ]
    headers = ["streams", "K", "fps", "p50", "p95", "skipped", "dropped", "batch"]
    log.info("\n%s", table(headers, k_rows))
    if result["soak_8_streams"]:
        soak = result["soak_8_streams"]
        log.info("soak, p95 per sixth (ms): %s", soak["p95_by_slice_ms"])
    log.info("goals: %s", json.dumps(result["goals"], indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds a point")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="unmeasured lead-in a point")
    parser.add_argument("--k", type=int, default=2, help="frames in flight per stream (K)")
    parser.add_argument("--batch-size", type=int, default=8, help="max batch, batching on")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="max wait, batching on")
    parser.add_argument("--k-blocks", type=int, default=3, help="K=1/K=2 block pairs, 0 = none")
    parser.add_argument("--k-streams", type=int, nargs="+", default=[1, 8], help="for the K test")
    parser.add_argument("--k-block-s", type=float, default=5.0, help="seconds per K block")
    parser.add_argument("--ratio-rounds", type=int, default=6, help="engine / 8-stream slices")
    parser.add_argument(
        "--ratio-window-s", type=float, default=4.0, help="seconds per 8-stream slice"
    )
    parser.add_argument("--engine-reps", type=int, default=3, help="session.run reps a batch size")
    parser.add_argument("--soak-s", type=float, default=60.0, help="8-stream soak, 0 = none")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads, 0 = default")
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    frames = camera_frames()
    tensors = model_inputs(frames)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    modes = {
        "batching_on": {"max_batch_size": args.batch_size, "max_batch_wait_ms": args.batch_wait_ms},
        "batching_off": MODES_OFF,
    }
    in_flight = max(2, args.k)
    nodes = {
        mode: edgesight_node(
            free_port(), max_in_flight=in_flight, threads=args.threads, name=mode, **config
        )
        for mode, config in modes.items()
    }
    try:
        for node in nodes.values():
            node.start()
        points = run_points(nodes, frames, args)
        ratio = run_ratio_test(nodes["batching_on"], session, tensors, frames, args)
        k_test = run_k_test(nodes["batching_on"], frames, args)
        soak = run_soak(nodes["batching_on"], frames, args) if args.soak_s > 0 else {}
    finally:
        for node in nodes.values():
            node.stop()

    result = {
        "command": "python bench/load.py " + " ".join(sys.argv[1:]),
        "machine": f"{machine()}, onnxruntime {ort.__version__} CPU",
        "settings": {
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "camera_fps": 30,
            "k": args.k,
            "intra_op_threads": args.threads,
            "modes": modes,
        },
        "points": points,
        "engine_vs_8_streams": ratio,
        "k_test": k_test,
        "soak_8_streams": soak,
        "goals": goals_from(points, ratio),
    }
    write_result(args.out, result)
    report(result)


if __name__ == "__main__":
    main()
