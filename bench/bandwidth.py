"""Compressed frames on slow links (issue 9): delivered fps and latency per stream through a
bandwidth-limited proxy, raw vs JPEG vs auto, and the one-stream round trip per encoding
against bare ``session.run``.

One node subprocess (real model) behind the test proxy (tests/cluster/latency_proxy.py)
with 10 ms each way (20 ms added round trip) and a token bucket shared by all connections
(one site uplink). For each rate (10, 25, 100 Mbit/s), each stream count (1, 4) and each
mode (raw, jpeg, auto), every stream is a 30 fps camera (the astronaut photo in a 640x480
frame) sending as the page does (tests/cluster/frame_sender.py, 2 frames in flight) for a
few seconds after a short warm-up; the result is frames answered per second per stream and
the round trip (send -> RESULT) p50/p95. Runs are short and interleaved, so read ratios.

The link runs twice: against the real model (``model``), and against a node whose engine
answers at once (``null``, bench/null_node.py), which shows what the link and the frame
path allow where inference is fast (a GPU) rather than this shared CPU's 30-80 ms.

Then, without the proxy: one stream, one frame in flight, raw vs JPEG vs WebP round trips
in alternating blocks, against bare ``session.run`` on the same tensor in this process
(one onnxruntime thread on both sides).

    .venv/bin/python bench/bandwidth.py [--seconds 4] [--roundtrip-frames 100]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    RESULTS,
    ServerProcess,
    edgesight_node,
    free_port,
    machine,
    summary,
    table,
    write_result,
)

from pyodide_client.encoding import EncodingSettings  # noqa: E402
from pyodide_client.preprocess import Letterbox  # noqa: E402
from tests.cluster.frame_sender import FrameSender, Sent  # noqa: E402
from tests.cluster.latency_proxy import LatencyProxy  # noqa: E402
from tests.parity import webcam_rgba  # noqa: E402

log = logging.getLogger("bench.bandwidth")
MODEL = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"
RATES_MBIT = (10.0, 25.0, 100.0)
STREAMS = (1, 4)
MODES = ("raw", "jpeg", "auto")
ONE_WAY_DELAY_MS = 10.0
PHOTO = "astronaut"


def run_streams(
    url: str, streams: int, mode: str, seconds: float, warmup_s: float
) -> list[list[Sent]]:
    """``streams`` cameras at once for warm-up + ``seconds``; each one's answered frames
    after the warm-up."""
    rgba, width, height = webcam_rgba(PHOTO)
    results: list[list[Sent]] = [[] for _ in range(streams)]
    errors: list[BaseException] = []
    start = threading.Barrier(streams)

    def camera(index: int) -> None:
        try:
            with FrameSender(
                url,
                rgba,
                width,
                height,
                encoding=EncodingSettings(mode=mode),
                max_in_flight=2,
            ) as sender:
                start.wait(timeout=30)
                sender.run_for(warmup_s)
                results[index] = sender.run_for(seconds)
        except Exception as exc:  # noqa: BLE001 -- re-raised below, after every camera stopped
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup_s + seconds + 120)
    if errors:
        raise errors[0]
    return results


def describe(results: list[list[Sent]], seconds: float) -> dict[str, Any]:
    answered = [[s for s in stream if s.encoding != "lost"] for stream in results]
    every = [s for stream in answered for s in stream]
    encodings = sorted({s.encoding for s in every})
    fps = [len(stream) / seconds for stream in answered]
    trips = [s.round_trip_ms for s in every]
    return {
        "fps_per_stream_mean": round(statistics.fmean(fps), 1),
        "fps_per_stream_min": round(min(fps), 1),
        "round_trip": summary(trips, 1),
        "bytes_per_frame_mean": round(statistics.fmean(s.size_bytes for s in every))
        if every
        else 0,
        "encodings": {e: sum(1 for s in every if s.encoding == e) for e in encodings},
        "lost": sum(1 for stream in results for s in stream if s.encoding == "lost"),
    }


def bandwidth_runs(
    node_port: int, seconds: float, warmup_s: float, engine: str
) -> list[dict[str, Any]]:
    rows = []
    with LatencyProxy(node_port, delay_ms=ONE_WAY_DELAY_MS) as proxy:
        for rate in RATES_MBIT:
            for streams in STREAMS:
                for mode in MODES:
                    proxy.rate_mbit = rate
                    results = run_streams(proxy.ws_url, streams, mode, seconds, warmup_s)
                    row = {"engine": engine, "rate_mbit": rate, "streams": streams, "mode": mode}
                    row.update(describe(results, seconds))
                    rows.append(row)
                    log.info("%s", row)
    return rows


def roundtrip_runs(node_port: int, frames: int, block: int = 25) -> dict[str, Any]:
    """One stream, one frame in flight, straight to the node: raw vs jpeg vs webp, and
    bare session.run on the raw tensor, in alternating blocks."""
    from gpu_backend.engine import OnnxEngine

    rgba, width, height = webcam_rgba(PHOTO)
    engine = OnnxEngine(MODEL, intra_op_threads=1)  # as the node (threads=1)
    letterbox = Letterbox.for_frame(width, height, 416)
    tensor = np.frombuffer(bytes(letterbox.fill(rgba)), np.uint8).reshape(1, 3, 416, 416)
    url = f"ws://127.0.0.1:{node_port}/ws"
    times: dict[str, list[float]] = {"bare": [], "raw": [], "jpeg": [], "webp": []}
    senders = {
        mode: FrameSender(url, rgba, width, height, encoding=EncodingSettings(mode=mode))
        for mode in ("raw", "jpeg", "webp")
    }
    decode: list[float] = []
    for sender in senders.values():
        sender.__enter__()
    try:
        for sender in senders.values():  # warm-up
            for _ in range(5):
                sender.send_one()
        while len(times["bare"]) < frames:
            for _ in range(block):
                t0 = time.perf_counter()
                engine.infer(tensor)
                times["bare"].append((time.perf_counter() - t0) * 1000)
            for mode, sender in senders.items():
                for _ in range(block):
                    sent = sender.send_one()
                    times[mode].append(sent.round_trip_ms)
                    if mode == "jpeg":
                        decode.append(sent.decode_ms)
    finally:
        for sender in senders.values():
            sender.__exit__(None, None, None)
    bare = statistics.median(times["bare"])
    return {
        "frames_each": len(times["bare"]),
        "block": block,
        "median_ms": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "p95_ms": {k: summary(v)["p95_ms"] for k, v in times.items()},
        "ratio_to_bare_median": {
            k: round(statistics.median(v) / bare, 3) for k, v in times.items() if k != "bare"
        },
        "node_jpeg_decode_ms_median": round(statistics.median(decode), 3) if decode else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured, per run")
    parser.add_argument("--warmup", type=float, default=2.5, help="per run, not measured")
    parser.add_argument("--roundtrip-frames", type=int, default=150)
    parser.add_argument("--out", type=Path, default=RESULTS / "bandwidth.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    port = free_port()
    with edgesight_node(port, threads=1):
        roundtrip = roundtrip_runs(port, args.roundtrip_frames)
        log.info("%s", roundtrip)
        rows = bandwidth_runs(port, args.seconds, args.warmup, "model")
    null_port = free_port()
    null_argv = [sys.executable, str(ROOT / "bench" / "null_node.py"), "--port", str(null_port)]
    with ServerProcess(null_argv, null_port, name="null node"):
        rows += bandwidth_runs(null_port, args.seconds, args.warmup, "null")
    result = {
        "machine": machine(),
        "command": "bench/bandwidth.py " + " ".join(sys.argv[1:]),
        "photo": f"{PHOTO} in a 640x480 frame",
        "added_round_trip_ms": 2 * ONE_WAY_DELAY_MS,
        "camera_fps": 30,
        "frames_in_flight": 2,
        "roundtrip": roundtrip,
        "runs": rows,
    }
    write_result(args.out, result)
    print(
        table(
            [
                "engine",
                "Mbit/s",
                "streams",
                "mode",
                "fps/stream",
                "min",
                "rt p50",
                "rt p95",
                "B/frame",
            ],
            [
                [
                    r["engine"],
                    r["rate_mbit"],
                    r["streams"],
                    r["mode"],
                    r["fps_per_stream_mean"],
                    r["fps_per_stream_min"],
                    r["round_trip"].get("p50_ms"),
                    r["round_trip"].get("p95_ms"),
                    r["bytes_per_frame_mean"],
                ]
                for r in rows
            ],
        )
    )
    plot(result, args.out.with_suffix(".png"))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = ("model", "null")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharey="row")
    colors = {"raw": "#d62728", "jpeg": "#1f77b4", "auto": "#2ca02c"}
    titles = {"model": "real model on this CPU", "null": "no-op engine (link-bound)"}
    for row, engine in enumerate(engines):
        for col, streams in enumerate(STREAMS):
            axis = axes[row][col]
            for offset, mode in enumerate(MODES):
                points = [
                    r
                    for r in result["runs"]
                    if r["engine"] == engine and r["streams"] == streams and r["mode"] == mode
                ]
                x = [i + (offset - 1) * 0.25 for i in range(len(points))]
                axis.bar(
                    x,
                    [r["fps_per_stream_mean"] for r in points],
                    width=0.25,
                    color=colors[mode],
                    label=mode,
                )
            axis.set_xticks(range(len(RATES_MBIT)), [f"{r:g} Mbit/s" for r in RATES_MBIT])
            axis.axhline(25, color="grey", lw=0.8, ls=":")
            plural = "s" if streams > 1 else ""
            axis.set(title=f"{titles[engine]}: {streams} stream{plural}, +20 ms RTT")
            axis.grid(alpha=0.3, axis="y")
        axes[row][0].set_ylabel("delivered fps per stream")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log.info("wrote %s", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
