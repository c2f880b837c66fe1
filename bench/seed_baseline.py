"""edgesight against the seed's design (float32 over HTTP, JSON back), same run, same load.

Two servers run as subprocesses on 127.0.0.1: an edgesight node (``python -m edgesight
node``, defaults: batching on) and the seed's worker (``bench/seed_node.py``, see there for
what it does and which model it runs). Then:

1. one stream, one frame at a time, in alternating blocks: the edgesight round trip
   (uint8 FRAME over a WebSocket, binary RESULT back, parsed by ``NodeStream``), the seed
   round trip (float32 POST on a keep-alive ``http.client`` connection, ``json.loads``),
   and bare ``session.run`` of each model in this process. Overhead per frame = round trip
   minus its own model's bare ``session.run``; bytes per frame count what goes on the wire
   above TCP (WebSocket frame headers and mask, HTTP request and status lines and headers).
2. the multi-stream load of ``load.py`` (30 fps cameras, ``streams.py``) at 1, 4 and 8
   streams against each server, alternating which goes first.

    .venv/bin/python bench/seed_baseline.py --frames 200 --duration-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
from websockets.sync.client import connect

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
from seed_node import SeedModel, prepare_model, seed_prep
from streams import (
    CameraFrame,
    Window,
    edgesight_stream,
    parse_server_timing,
    run_point,
    seed_stream,
    summarise,
    ws_frame_bytes,
)

from pyodide_client.stream import Detections, NodeStream

log = logging.getLogger("bench.seed_baseline")


class CountingConnection(http.client.HTTPConnection):
    """A keep-alive HTTP/1.1 connection that counts the bytes it sends."""

    bytes_sent = 0

    def send(self, data: Any) -> None:
        self.bytes_sent += len(data)
        super().send(data)


def response_bytes(response: http.client.HTTPResponse, body: bytes) -> int:
    line = f"HTTP/1.1 {response.status} {response.reason}\r\n"
    return len(line) + sum(len(k) + len(v) + 4 for k, v in response.getheaders()) + 2 + len(body)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def round_trips(
    node: ServerProcess,
    seed: ServerProcess,
    model: SeedModel,
    frames: list[CameraFrame],
    count: int,
    block: int,
) -> dict[str, Any]:
    tensors = model_inputs(frames)
    product = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    seed_session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    seed_input = seed_session.get_inputs()[0].name
    seed_tensors = [seed_prep(model.kind, *frame) for frame in frames]
    samples: dict[str, list[float]] = {
        name: []
        for name in (
            "edgesight_round_trip",
            "edgesight_client_prep",
            "edgesight_inference_reported",
            "seed_round_trip",
            "seed_client_prep",
            "seed_inference_reported",
            "seed_serialize_reported",
            "seed_client_json_loads",
            "bare_product_model",
            "bare_seed_model",
        )
    }
    wire: dict[str, list[int]] = {"edgesight_up": [], "edgesight_down": [], "seed_up": []}
    wire["seed_down"] = []
    conn = CountingConnection("127.0.0.1", seed.port, timeout=120)
    with connect(f"ws://127.0.0.1:{node.port}/ws", compression=None, max_size=None) as ws:
        stream = NodeStream(max_in_flight=1)
        stream.receive(ws.recv(timeout=60, decode=False), 0.0)  # HELLO
        for message in stream.data_to_send():  # AUTH (anonymous)
            ws.send(message)
        stream.receive(ws.recv(timeout=60, decode=False), 0.0)  # WELCOME

        def edgesight(i: int, record: bool) -> None:
            rgba, w, h = frames[i % len(frames)]
            t0 = time.perf_counter()
            message = stream.encode_frame(rgba, w, h, 0.0, 0.0)
            t1 = time.perf_counter()
            ws.send(message)
            reply = ws.recv(timeout=60, decode=False)
            (event,) = stream.receive(reply, 0.0)
            t2 = time.perf_counter()
            assert isinstance(event, Detections)
            if record:
                samples["edgesight_client_prep"].append((t1 - t0) * 1000)
                samples["edgesight_round_trip"].append((t2 - t1) * 1000)
                samples["edgesight_inference_reported"].append(event.inference_ms)
                wire["edgesight_up"].append(ws_frame_bytes(len(message), masked=True))
                wire["edgesight_down"].append(ws_frame_bytes(len(reply), masked=False))

        def seed_call(i: int, record: bool) -> None:
            t0 = time.perf_counter()
            body = seed_prep(model.kind, *frames[i % len(frames)]).tobytes()
            t1 = time.perf_counter()
            sent_before = conn.bytes_sent
            conn.request("POST", "/infer", body, {"Content-Type": "application/octet-stream"})
            response = conn.getresponse()
            data = response.read()
            t2 = time.perf_counter()
            outputs = json.loads(data)
            t3 = time.perf_counter()
            if response.status != 200 or not isinstance(outputs, list):
                raise RuntimeError(f"seed node answered {response.status}")
            if record:
                samples["seed_client_prep"].append((t1 - t0) * 1000)
                samples["seed_round_trip"].append((t3 - t1) * 1000)
                samples["seed_client_json_loads"].append((t3 - t2) * 1000)
                header = response.getheader("server-timing") or ""
                timing = parse_server_timing(header)
                samples["seed_inference_reported"].append(timing.get("inference_ms", 0.0))
                samples["seed_serialize_reported"].append(timing.get("serialize_ms", 0.0))
                wire["seed_up"].append(conn.bytes_sent - sent_before)
                wire["seed_down"].append(response_bytes(response, data))

        def bare(i: int, record: bool) -> None:
            images = tensors[i % len(tensors)][None]
            ms = timed(lambda: product.run(None, {"images": images}))
            if record:
                samples["bare_product_model"].append(ms)

        def bare_seed(i: int, record: bool) -> None:
            x = seed_tensors[i % len(seed_tensors)]
            ms = timed(lambda: seed_session.run(None, {seed_input: x}))
            if record:
                samples["bare_seed_model"].append(ms)

        steps = [edgesight, seed_call, bare, bare_seed]
        for step in steps:
            for i in range(5):  # warm up each path
                step(i, False)
        for round_index in range((count + block - 1) // block):
            order = steps if round_index % 2 == 0 else list(reversed(steps))
            for step in order:
                for i in range(block):
                    step(i, True)
    conn.close()

    stats = {name: summary(values) for name, values in samples.items()}

    def p50(name: str) -> float:
        return statistics.median(samples[name])

    edgesight_overhead = p50("edgesight_round_trip") - p50("bare_product_model")
    seed_overhead = p50("seed_round_trip") - p50("bare_seed_model")
    bytes_per_frame = {name: round(statistics.fmean(v)) for name, v in wire.items()}
    edgesight_bytes = bytes_per_frame["edgesight_up"] + bytes_per_frame["edgesight_down"]
    seed_bytes = bytes_per_frame["seed_up"] + bytes_per_frame["seed_down"]
    return {
        "frames_per_path": len(samples["edgesight_round_trip"]),
        "block": block,
        "timings": stats,
        "overhead_per_frame_ms": {
            "edgesight": round(edgesight_overhead, 2),
            "seed": round(seed_overhead, 2),
            "seed_over_edgesight": round(seed_overhead / edgesight_overhead, 2)
            if edgesight_overhead > 0
            else None,
        },
        "round_trip_over_bare_session_run": {
            "edgesight": round(p50("edgesight_round_trip") / p50("bare_product_model"), 3),
            "seed": round(p50("seed_round_trip") / p50("bare_seed_model"), 3),
        },
        "bytes_per_frame": {
            **bytes_per_frame,
            "edgesight_total": edgesight_bytes,
            "seed_total": seed_bytes,
            "seed_over_edgesight": round(seed_bytes / edgesight_bytes, 2),
        },
    }


def load_points(
    node: ServerProcess,
    seed: ServerProcess,
    model: SeedModel,
    frames: list[CameraFrame],
    stream_counts: list[int],
    duration_s: float,
    warmup_s: float,
) -> list[dict[str, Any]]:
    prep = functools.partial(seed_prep, model.kind)
    drivers = {
        "edgesight": (
            node,
            functools.partial(edgesight_stream, f"ws://127.0.0.1:{node.port}/ws", 2),
        ),
        "seed": (seed, functools.partial(seed_stream, f"http://127.0.0.1:{seed.port}/infer", prep)),
    }
    points = []
    for i, streams in enumerate(stream_counts):
        order = list(drivers) if i % 2 == 0 else list(reversed(drivers))
        for design in order:
            server, driver = drivers[design]
            log.info("%s: %d streams", design, streams)
            go = functools.partial(driver, frames)
            window = Window.after(0.5 + 0.05 * streams, warmup_s, duration_s)
            run = asyncio.run(run_point([go] * streams, server.pid, window))
            point = {"design": design, **summarise([run])}
            points.append(point)
            log.info("  %.1f fps, p95 %s ms", point["fps_total"], point["latency"].get("p95_ms"))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=100, help="round trips per path")
    parser.add_argument("--block", type=int, default=10, help="frames per alternating block")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds a point")
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument(
        "--seed-model",
        choices=("auto", "raw", "float-variant"),
        default="auto",
        help="auto: the raw NanoDet model when present beside the checkout, else the variant",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "seed_baseline.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    frames = camera_frames()
    with tempfile.TemporaryDirectory(prefix="seed-model-") as workdir:
        model = prepare_model(args.seed_model, Path(workdir))
        log.info("seed model: %s", model.description)
        seed_port = free_port()
        seed_argv = [sys.executable, "bench/seed_node.py", "--port", str(seed_port)]
        seed = ServerProcess([*seed_argv, "--model", str(model.path)], seed_port, name="seed node")
        node = edgesight_node(free_port(), name="edgesight node")
        with node, seed:
            single = round_trips(node, seed, model, frames, args.frames, args.block)
            points = load_points(
                node, seed, model, frames, args.streams, args.duration_s, args.warmup_s
            )

    result = {
        "command": "python bench/seed_baseline.py " + " ".join(sys.argv[1:]),
        "machine": f"{machine()}, onnxruntime {ort.__version__} CPU",
        "seed_model": {"kind": model.kind, "description": model.description},
        "one_stream": single,
        "load": points,
    }
    write_result(args.out, result)
    t = single["timings"]
    log.info(
        "\n%s",
        table(
            ["one stream", "p50 ms", "p95 ms"],
            [[name, v.get("p50_ms"), v.get("p95_ms")] for name, v in t.items()],
        ),
    )
    log.info("overhead per frame: %s", single["overhead_per_frame_ms"])
    log.info("bytes per frame: %s", single["bytes_per_frame"])
    headers = ["design", "streams", "fps", "p50", "p95", "p99", "up B", "down B", "node CPU%"]
    headers.append("node CPU ms/frame")
    rows = [
        [
            p["design"],
            p["streams"],
            p["fps_total"],
            p["latency"].get("p50_ms"),
            p["latency"].get("p95_ms"),
            p["latency"].get("p99_ms"),
            p["bytes_up_per_frame"],
            p["bytes_down_per_frame"],
            p["node_cpu_percent"],
            p["node_cpu_ms_per_result"],
        ]
        for p in points
    ]
    log.info("\n%s", table(headers, rows))


if __name__ == "__main__":
    main()
