"""What the page core's one entry point costs per frame, in CPython (issue 19).

A page in node mode (a connected fake node, raw frames, K pinned high so no frame waits)
sends ``--frames`` frames two ways, alternating in blocks so that machine load hits both
alike: through the JSON edge as static/app.js does (``handle`` of ``frame``, ``pixels`` and
``sent``, with ``take`` of the frame's blob), and straight through the page core's calls
the old app.js made (``next_action``, ``plan_frame``, ``encode_frame``, ``frame_sent``,
``note_preprocess``). Each frame is answered at once so that the window never fills.
Pyodide runs the same Python several times slower; the ratio is what carries over.

    .venv/bin/python bench/page_edge.py --frames 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyodide_client.browser import BrowserClient  # noqa: E402
from pyodide_client.model_card import ModelCard  # noqa: E402
from pyodide_client.protocol import Dtype, Hello, Ping, Pong, Result, Welcome, parse  # noqa: E402

CARD_JSON = (ROOT / "models" / "nanodet-g-416" / "model.json").read_text(encoding="utf-8")
CARD = ModelCard.from_json(CARD_JSON)
WIDTH, HEIGHT = 640, 480
RGBA = bytes(range(256)) * (WIDTH * HEIGHT * 4 // 256)
URL = "ws://a:8001/ws"


class Page:
    """A connected page: the JSON edge's clock, sockets and answers."""

    def __init__(self) -> None:
        config = {"node_urls": [URL], "frame_encoding": "raw", "max_in_flight": 8}
        self.client = BrowserClient(json.dumps(config), CARD_JSON)
        self.now_ms = 0.0
        self.link = 0
        commands = self.handle(
            "start",
            webtransport=False,
            cross_origin_isolated=False,
            hardware_concurrency=2,
            time_origin_ms=0.0,
        )
        probe = next(c["socket"] for c in commands if c["do"] == "open")
        hello = Hello(
            node_name="node-a",
            model_name=CARD.name,
            model_sha256=CARD.sha256,
            dtype=Dtype.UINT8,
            frame_shape=CARD.frame_shape,
            class_names=CARD.class_names,
            max_in_flight=8,
        ).serialize()
        (ping,) = [
            c for c in self.handle("socket_message", hello, socket=probe) if c["do"] == "send"
        ]
        sent = parse(self.client.take(ping["blob"]))
        assert isinstance(sent, Ping)
        self.now_ms += 5.0
        commands = self.handle(
            "socket_message", Pong(sent.nonce, sent.sent_ms).serialize(), socket=probe
        )
        self.link = next(c["socket"] for c in commands if c["do"] == "open" and c["role"] == "link")
        for command in self.handle("socket_message", hello, socket=self.link):
            if "blob" in command:
                self.client.take(command["blob"])
        self.handle("socket_message", Welcome(0b001, 0, "anonymous").serialize(), socket=self.link)
        assert self.client.mode == "node"

    def handle(self, name: str, data: bytes | None = None, **fields: Any) -> list[dict[str, Any]]:
        event = json.dumps({"event": name, "now_ms": self.now_ms, **fields})
        commands: list[dict[str, Any]] = json.loads(self.client.handle(event, data))["commands"]
        return commands

    def answer(self, message: bytes) -> None:
        frame = parse(message)
        result = Result(frame.frame_id, frame.capture_ms, 1.0, 8.0, 1.0, 1, ()).serialize()  # type: ignore[union-attr]
        for command in self.handle("socket_message", result, socket=self.link):
            if command["do"] == "draw":
                self.handle("drawn", capture_ms=command["capture_ms"], draw_ms=0.1)

    def via_edge(self) -> float:
        start = time.perf_counter()
        (grab,) = self.handle("frame", width=WIDTH, height=HEIGHT)
        assert grab["do"] == "grab"
        (send,) = [
            c for c in self.handle("pixels", RGBA, width=WIDTH, height=HEIGHT) if c["do"] == "send"
        ]
        message = self.client.take(send["blob"])
        self.handle("sent", preprocess_ms=1.0)
        spent = time.perf_counter() - start
        self.answer(message)
        return spent

    def via_core(self) -> float:
        client = self.client
        start = time.perf_counter()
        assert client.next_action(self.now_ms) == "node"
        client.plan_frame(WIDTH, HEIGHT, self.now_ms)
        message = client.encode_frame(RGBA, WIDTH, HEIGHT, self.now_ms, self.now_ms)
        client.frame_sent(self.now_ms)
        client.note_preprocess(1.0, self.now_ms)
        spent = time.perf_counter() - start
        self.answer(message)
        return spent


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames each way")
    parser.add_argument("--block", type=int, default=50, help="frames per block, alternating")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/page_edge.json")
    args = parser.parse_args()
    page = Page()
    edge: list[float] = []
    core: list[float] = []
    load_start = os.getloadavg()
    while len(edge) < args.frames:
        for _ in range(args.block):
            page.now_ms += 33.0
            edge.append(page.via_edge())
        for _ in range(args.block):
            page.now_ms += 33.0
            core.append(page.via_core())
    edge_s, core_s = summary(edge), summary(core)
    result = {
        "command": "python bench/page_edge.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average_1_5_15": {"start": load_start, "end": os.getloadavg()},
        "per_frame_via_edge": edge_s,
        "per_frame_via_core_calls": core_s,
        "edge_overhead_p50_ms": round(edge_s["p50_ms"] - core_s["p50_ms"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
