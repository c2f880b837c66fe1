"""One stream: node round trip on loopback vs bare ``session.run`` on the same input.

Starts a real node (``edgesight node``) in a subprocess, sends the letterboxed astronaut
photo through the protocol one frame at a time (K = 1 in flight) and times send -> result.
In the same run, alternating blocks, it times ``session.run`` on the same tensor with the
same thread count in this process, so machine noise hits both sides alike.

    .venv/bin/python bench/node_roundtrip.py --frames 300
    .venv/bin/python bench/node_roundtrip.py --model DIR/best.onnx --out ...  # any model
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import edgesight_node, free_port, machine, summary, write_result  # noqa: E402

from pyodide_client.stream import Detections, NodeStream  # noqa: E402
from tests.media import rgba_photo  # noqa: E402

MODEL = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"
log = logging.getLogger("bench.node_roundtrip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--block", type=int, default=25, help="frames per alternating block")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads, 0 = default")
    parser.add_argument("--model", type=Path, default=MODEL, help="a model with its model.json")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/node_roundtrip.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rgba, w, h = rgba_photo("astronaut")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    port = free_port()
    node = edgesight_node(port, threads=args.threads, model=args.model).start()
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", compression=None, max_size=None) as ws:
            stream = NodeStream(max_in_flight=1)
            stream.receive(ws.recv(timeout=30), 0.0)  # HELLO
            for message in stream.data_to_send():  # AUTH (anonymous)
                ws.send(message)
            stream.receive(ws.recv(timeout=30), 0.0)  # WELCOME
            letterbox = stream.letterbox_for(w, h)
            tensor = np.frombuffer(bytes(letterbox.fill(rgba)), np.uint8).reshape(
                1, *letterbox.shape
            )
            node_ms: list[float] = []
            bare_ms: list[float] = []
            inference_ms: list[float] = []
            for _ in range(10):  # warm both sides
                session.run(None, {input_name: tensor})
                ws.send(stream.encode_frame(rgba, w, h, 0.0, 0.0))
                stream.receive(ws.recv(timeout=30), 0.0)
            while len(node_ms) < args.frames:
                for _ in range(args.block):
                    message = stream.encode_frame(rgba, w, h, 0.0, 0.0)
                    t0 = time.perf_counter()
                    ws.send(message)
                    reply = ws.recv(timeout=30)
                    node_ms.append((time.perf_counter() - t0) * 1000)
                    (event,) = stream.receive(reply, 0.0)
                    assert isinstance(event, Detections)
                    inference_ms.append(event.inference_ms)
                for _ in range(args.block):
                    t0 = time.perf_counter()
                    session.run(None, {input_name: tensor})
                    bare_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        node.stop()

    node_stats, bare_stats = summary(node_ms), summary(bare_ms)
    result = {
        "command": "python bench/node_roundtrip.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "model": str(
            args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
        ),
        "frames": len(node_ms),
        "node_round_trip": node_stats,
        "bare_session_run": bare_stats,
        "node_inference_reported": summary(inference_ms),
        "ratio_median": round(node_stats["p50_ms"] / bare_stats["p50_ms"], 3),
        "ratio_p95": round(node_stats["p95_ms"] / bare_stats["p95_ms"], 3),
        "overhead_median_ms": round(node_stats["p50_ms"] - bare_stats["p50_ms"], 3),
    }
    write_result(args.out, result)
    log.info(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
