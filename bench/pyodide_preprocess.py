"""Preprocessing inside the real Pyodide in headless Chromium, per 640x480 frame.

Measures, in one page: (a) ``Letterbox.fill`` alone, timed inside Python; (b) the page's
whole per-frame path timed in JavaScript: canvas ``getImageData``, the call into Python
(copy of the RGBA pixels, letterbox, FRAME header) and taking the message buffer back.

    .venv/bin/python bench/pyodide_preprocess.py --frames 300
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM_ARGS, free_port, start_webapp  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

log = logging.getLogger("bench.pyodide_preprocess")

PYTHON_TIMING = """
import time
from pyodide_client.preprocess import Letterbox
width, height = 640, 480
rgba = bytes(range(256)) * (width * height * 4 // 256)
letterbox = Letterbox.for_frame(width, height, 416)
for _ in range(20):
    letterbox.fill(rgba)
fill_ms = []
for _ in range(FRAMES):
    t0 = time.perf_counter()
    letterbox.fill(rgba)
    fill_ms.append((time.perf_counter() - t0) * 1000)
from pyodide_client.protocol import Dropped, DropReason, Dtype, Hello, Welcome
from pyodide_client.stream import NodeStream
hello = Hello("bench", "m", "00" * 32, Dtype.UINT8, (3, 416, 416), ("person",), 1).serialize()
bench_stream = NodeStream()
bench_stream.receive(hello, 0.0)
bench_stream.receive(Welcome(1, 0, "anonymous").serialize(), 0.0)

def bench_encode(pixels, width, height, capture_ms, now_ms):
    message = bench_stream.encode_frame(pixels.to_bytes(), width, height, capture_ms, now_ms)
    # free the one in-flight slot, as the node's answer would
    frame_id = int.from_bytes(message[4:8], "little")
    bench_stream.receive(Dropped(frame_id, DropReason.SUPERSEDED).serialize(), now_ms)
    return message
"""

JS_TIMING = """async (frames) => {
  const { pyodide } = window.edgesight.testing;  // not the page API: docs/page-api.md
  const encode = pyodide.globals.get("bench_encode");  // what BrowserClient.encode_frame does
  const canvas = document.createElement("canvas");
  canvas.width = 640; canvas.height = 480;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const gradient = ctx.createLinearGradient(0, 0, 640, 480);
  gradient.addColorStop(0, "#f80"); gradient.addColorStop(1, "#08f");
  ctx.fillStyle = gradient; ctx.fillRect(0, 0, 640, 480);
  const grab = [], encodeMs = [], total = [];
  for (let i = 0; i < frames + 20; i++) {
    const t0 = performance.now();
    const pixels = ctx.getImageData(0, 0, 640, 480).data;
    const t1 = performance.now();
    const message = encode(pixels, 640, 480, t0, t1);
    const buffer = message.getBuffer("u8");
    const size = buffer.data.length;
    buffer.release(); message.destroy();
    const t2 = performance.now();
    if (i >= 20) { grab.push(t1 - t0); encodeMs.push(t2 - t1); total.push(t2 - t0); }
    if (size !== 519168 + 30) throw new Error(`unexpected message size ${size}`);
  }
  encode.destroy();
  return { grab, encode: encodeMs, total };
}"""


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/pyodide_preprocess.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{web.http_url}/")
        page.wait_for_function("() => window.edgesight?.testing.pyodide", timeout=60_000)
        run = "(code) => window.edgesight.testing.pyodide.runPython(code)"  # not the page API
        version = page.evaluate(run, "import sys; sys.version")
        page.evaluate(run, PYTHON_TIMING.replace("FRAMES", str(args.frames)))
        fill_ms = page.evaluate("window.edgesight.testing.pyodide.globals.get('fill_ms').toJs()")
        js = page.evaluate(JS_TIMING, args.frames)
        chromium = browser.version
        browser.close()
    result = {
        "command": "python bench/pyodide_preprocess.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} 2 cores, Chromium {chromium} headless, "
        f"Pyodide Python {version.split()[0]}",
        "frames": args.frames,
        "letterbox_fill_in_python": summary(fill_ms),
        "page_get_image_data": summary(js["grab"]),
        "page_encode_frame_call": summary(js["encode"]),
        "page_total_per_frame": summary(js["total"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
