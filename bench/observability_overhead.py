"""What observability costs (issue 12): a node with metrics and tracing on vs the same
node with both off, in the same run, on the one-stream round trip and 8-stream throughput.

Two node subprocesses run side by side (this script with ``--serve``): "on" is the product
as shipped, scraped once a second during the measurement (a busy Prometheus; 15 s is
usual) and exporting spans to an OTLP/HTTP receiver in this process, with the one-stream
client sampling frames at the default rate (1 in 100, a TRACE before each sampled frame);
"off" has every metrics hook replaced by a no-op and no tracer. The one-stream test alternates
blocks of frames between them (K = 1, send -> result); the 8-stream test alternates
windows of simulated 30 fps cameras (bench/streams.py). Machine noise hits both alike.

    .venv/bin/python bench/observability_overhead.py --frames 400 --windows 3 --duration-s 8
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import statistics
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    ServerProcess,
    camera_frames,
    free_port,
    machine,
    summary,
    write_result,
)
from streams import Window, edgesight_stream, run_point, summarise  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from pyodide_client.stream import Detections, NodeStream  # noqa: E402
from pyodide_client.tracing import FrameTracer  # noqa: E402
from tests.handshake import handshake  # noqa: E402
from tests.otlp_receiver import OtlpReceiver  # noqa: E402

log = logging.getLogger("bench.observability_overhead")
MODES = ("on", "off")
FRAME_ID = struct.Struct("<I")


class NullMetrics:
    """NodeMetrics with every hook a no-op: the node as it would be without metrics."""

    batch = None  # Batcher.on_batch: not even a call

    def __init__(self, **_: object) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    def render(self) -> bytes:
        return b""


def serve(port: int, mode: str, threads: int, otlp: str) -> None:
    """Run one node in this process: the shipped one ("on"), or with NullMetrics ("off")."""
    import gpu_backend.node
    from edgesight.serving import make_server
    from gpu_backend.app import create_app
    from gpu_backend.settings import NodeSettings

    if mode == "off":
        gpu_backend.node.NodeMetrics = NullMetrics  # type: ignore[misc,assignment]
    settings = NodeSettings(
        port=port,
        intra_op_threads=threads,
        node_name=f"metrics-{mode}",
        otlp_endpoint=otlp if mode == "on" else "",
    )
    make_server(create_app(settings), "127.0.0.1", port, settings.max_message_bytes).run()


@contextmanager
def scraping(port: int, interval_s: float) -> Iterator[list[int]]:
    """GET /metrics every ``interval_s`` while the block runs; yields the sizes seen."""
    sizes: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                sizes.append(len(r.read()))

    thread = threading.Thread(target=run, name="scraper", daemon=True)
    thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        thread.join()


def one_stream(
    ports: dict[str, int], frames: int, block: int, sample_rate: float
) -> dict[str, list[float]]:
    rgba, w, h = camera_frames()[0]
    tracer = FrameTracer(sample_rate)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    conns = {}
    streams = {}
    for mode, port in ports.items():
        conns[mode] = connect(f"ws://127.0.0.1:{port}/ws", compression=None, max_size=None)
        streams[mode] = NodeStream(max_in_flight=1)
        handshake(conns[mode], streams[mode], timeout_s=30)
    try:
        for mode in MODES:  # warm-up
            for i in range(20):
                conns[mode].send(streams[mode].encode_frame(rgba, w, h, float(i), float(i)))
                streams[mode].receive(conns[mode].recv(timeout=30), float(i))
        done = 0
        turn = 0
        while done < frames:
            mode = MODES[turn % 2] if (turn // 2) % 2 == 0 else MODES[1 - turn % 2]
            for _ in range(block):
                sent_s = time.perf_counter()
                frame = streams[mode].encode_frame(rgba, w, h, 0.0, 0.0)
                if mode == "on" and (trace := tracer.sample(FRAME_ID.unpack_from(frame, 4)[0])):
                    conns[mode].send(trace.serialize())
                conns[mode].send(frame)
                events = streams[mode].receive(conns[mode].recv(timeout=30), 0.0)
                assert isinstance(events[0], Detections), events
                times[mode].append((time.perf_counter() - sent_s) * 1000.0)
            turn += 1
            if turn % 2 == 0:
                done += block
    finally:
        for conn in conns.values():
            conn.close()
    return times


def eight_streams(
    nodes: dict[str, ServerProcess], windows: int, duration_s: float, streams: int
) -> dict[str, list[dict[str, Any]]]:
    frames = camera_frames()
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for i in range(windows):
        for mode in MODES if i % 2 == 0 else tuple(reversed(MODES)):
            go = functools.partial(edgesight_stream, f"ws://127.0.0.1:{nodes[mode].port}/ws", 1)
            go = functools.partial(go, frames)
            window = Window.after(connect_s=1.0, warmup_s=2.0, duration_s=duration_s)
            with scraping(nodes[mode].port, 1.0) if mode == "on" else _nothing():
                run = asyncio.run(run_point([go] * streams, nodes[mode].pid, window))
            point = summarise([run])
            runs[mode].append(point)
            log.info(
                "%s: %.1f fps, p50 %s ms", mode, point["fps_total"], point["latency"]["p50_ms"]
            )
    return runs


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def hook_cost() -> dict[str, float]:
    """In-process: the metrics calls one answered frame makes (received, outcome, a batch
    of one), and one /metrics render, timed directly: load-independent where the
    end-to-end ratios are not."""
    from gpu_backend.metrics import NodeMetrics
    from gpu_backend.sla import LatencyWindow
    from pyodide_client.protocol import Result

    metrics = NodeMetrics(
        node="bench", model="m", model_sha256="ab" * 32, provider="CPU", device="cpu",
        latency=LatencyWindow(30.0, 30.0),
    )  # fmt: skip
    result = Result(1, 0.0, 1.5, 11.0, 0.4, 1, ())
    best_us = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20_000):
            metrics.frame_received()
            metrics.batch(1)
            metrics.outcome(result)
        best_us.append((time.perf_counter() - started) / 20_000 * 1e6)
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gpu_backend.tracing import NodeTracer

    node_tracer = NodeTracer(InMemorySpanExporter(), {"node": "bench"})
    sampler = FrameTracer(1.0)
    traced = []
    for i in range(2000):
        trace = sampler.sample(i)
        assert trace is not None
        started = time.perf_counter()
        node_tracer.expect(1, trace)
        node_tracer.finished_batch([(1, Result(i, 0.0, 1.5, 11.0, 0.4, 1, ()))])
        traced.append((time.perf_counter() - started) * 1e6)
    node_tracer.shutdown()
    renders = []
    for _ in range(50):
        started = time.perf_counter()
        metrics.render()
        renders.append((time.perf_counter() - started) * 1000)
    return {
        "hooks_per_frame_us": round(min(best_us), 2),
        "spans_per_sampled_frame_us": round(statistics.median(traced), 2),
        "render_ms": round(min(renders), 3),
    }


def ratio(on: float, off: float) -> float:
    return round(on / off, 4) if off else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--otlp", default="", help=argparse.SUPPRESS)
    parser.add_argument("--sample-rate", type=float, default=0.01, help="traced share")
    parser.add_argument("--mode", choices=MODES, default="on", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per node")
    parser.add_argument("--frames", type=int, default=400, help="one-stream frames per mode")
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--windows", type=int, default=3, help="8-stream windows per mode")
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench/results/observability_overhead.json"
    )
    args = parser.parse_args()
    if args.serve is not None:
        logging.basicConfig(level=logging.WARNING)
        serve(args.serve, args.mode, args.threads, args.otlp)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    receiver = OtlpReceiver().__enter__()
    nodes = {}
    for mode in MODES:
        port = free_port()
        argv = [sys.executable, __file__, "--serve", str(port), "--mode", mode]
        argv += ["--otlp", receiver.url]
        nodes[mode] = ServerProcess(
            [*argv, "--threads", str(args.threads)], port, name=f"node ({mode})"
        ).start()
    try:
        ports = {mode: node.port for mode, node in nodes.items()}
        with scraping(ports["on"], 1.0) as scrapes:
            rt = one_stream(ports, args.frames, args.block, args.sample_rate)
        many = eight_streams(nodes, args.windows, args.duration_s, args.streams)
    finally:
        for node in nodes.values():
            node.stop()  # the "on" node flushes its spans as it stops
        receiver.__exit__(None, None, None)

    def fps(mode: str) -> float:
        return statistics.fmean(p["fps_total"] for p in many[mode])

    def cpu(mode: str) -> float:
        return statistics.fmean(p["node_cpu_ms_per_result"] for p in many[mode])

    result = {
        "command": "python bench/observability_overhead.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "one_stream_round_trip": {mode: summary(rt[mode]) for mode in MODES},
        "one_stream_ratio_on_off": {
            "p50": ratio(statistics.median(rt["on"]), statistics.median(rt["off"])),
            "mean": ratio(statistics.fmean(rt["on"]), statistics.fmean(rt["off"])),
        },
        "metrics_page_bytes": max(scrapes) if scrapes else None,
        "spans_received": len(receiver.spans),
        "in_process": hook_cost(),
        "streams": {
            mode: [
                {k: p[k] for k in ("fps_total", "node_cpu_ms_per_result", "dropped")}
                | {"p50_ms": p["latency"]["p50_ms"], "p95_ms": p["latency"]["p95_ms"]}
                for p in many[mode]
            ]
            for mode in MODES
        },
        "streams_ratio_on_off": {
            "fps_total": ratio(fps("on"), fps("off")),
            "node_cpu_ms_per_result": ratio(cpu("on"), cpu("off")),
        },
    }
    write_result(args.out, result)
    log.info("one stream p50 on/off %s", result["one_stream_ratio_on_off"])
    log.info("%d streams on/off %s", args.streams, result["streams_ratio_on_off"])


if __name__ == "__main__":
    main()
