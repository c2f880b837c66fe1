"""Browser side of compressed frames (issue 9): per-frame cost in headless Chromium of the
page's raw path against its JPEG and WebP paths, on a real photo in a 640x480 frame.

In one page, on the same canvas: (raw) ``getImageData`` plus the call into Pyodide that
letterboxes and builds the FRAME (as bench/pyodide_preprocess.py); (jpeg, webp) what
static/encoder.js does for an IMAGE: ``drawImage`` to 416x312 on an OffscreenCanvas,
``convertToBlob`` at the default quality, the bytes back, and the call into Pyodide that
wraps them in an IMAGE message. Writes bench/results/browser_encode.json.

    .venv/bin/python bench/browser_encode.py --frames 200
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM_ARGS, start_webapp  # noqa: E402
from harness import free_port, write_result  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from pyodide_client.encoding import EncodingSettings  # noqa: E402
from tests.parity import webcam_rgba  # noqa: E402

log = logging.getLogger("bench.browser_encode")

PYTHON_SETUP = """
from pyodide_client.protocol import Dropped, DropReason, Dtype, Hello, Welcome
from pyodide_client.stream import NodeStream
from pyodide_client.encoding import EncodingSettings
hello = Hello("bench", "m", "00" * 32, Dtype.UINT8, (3, 416, 416), ("person",), 1).serialize()
bench_stream = NodeStream(can_encode=())  # raw only
bench_stream.receive(hello, 0.0)
bench_stream.receive(Welcome(0b001, 0, "bench").serialize(), 0.0)

def _free(message, now_ms):
    frame_id = int.from_bytes(message[4:8], "little")
    bench_stream.receive(Dropped(frame_id, DropReason.SUPERSEDED).serialize(), now_ms)

def bench_raw(pixels, width, height, now_ms):
    message = bench_stream.encode_frame(pixels.to_bytes(), width, height, now_ms, now_ms)
    _free(message, now_ms)
    return message

image_streams = {}
for mode in ("jpeg", "webp"):
    s = image_streams[mode] = NodeStream(encoding=EncodingSettings(mode=mode))
    s.receive(hello, 0.0)
    s.receive(Welcome(0b111, 0, "bench").serialize(), 0.0)

def bench_plan(mode, width, height, now_ms):
    plan = image_streams[mode].plan_frame(width, height, now_ms)
    return f"{plan.encoding},{plan.quality},{plan.width_px},{plan.height_px}"

def bench_image(mode, data, width, height, now_ms):
    s = image_streams[mode]
    message = s.encode_image(data.to_bytes(), width, height, now_ms, now_ms)
    frame_id = int.from_bytes(message[4:8], "little")
    s.receive(Dropped(frame_id, DropReason.SUPERSEDED).serialize(), now_ms)
    return message
"""

JS_TIMING = """async ({ frames, photo }) => {
  const { pyodide } = window.edgesight.testing;  // not the page API: docs/page-api.md
  const { FrameEncoder } = await import("/static/encoder.js");
  const image = new Image();
  image.src = photo;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = 640; canvas.height = 480;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, 0, 0);
  const out = {};
  const raw = pyodide.globals.get("bench_raw");
  out.raw = { ms: [], bytes: 0 };
  for (let i = 0; i < frames + 20; i++) {
    const t0 = performance.now();
    const pixels = ctx.getImageData(0, 0, 640, 480).data;
    const message = raw(pixels, 640, 480, t0);
    const buffer = message.getBuffer("u8");
    out.raw.bytes = buffer.data.length;
    buffer.release(); message.destroy();
    if (i >= 20) out.raw.ms.push(performance.now() - t0);
  }
  raw.destroy();
  const plan = pyodide.globals.get("bench_plan");
  const wrap = pyodide.globals.get("bench_image");
  const encoder = new FrameEncoder();
  for (const mode of ["jpeg", "webp"]) {
    out[mode] = { ms: [], encode_ms: [], bytes: [] };
    for (let i = 0; i < frames + 20; i++) {
      const t0 = performance.now();
      const [format, quality, w, h] = plan(mode, 640, 480, t0).split(",");
      const bytes = await encoder.encode(canvas, +w, +h, format, +quality);
      const t1 = performance.now();
      const message = wrap(mode, bytes, 640, 480, t1);
      const buffer = message.getBuffer("u8");
      const size = buffer.data.length;
      buffer.release(); message.destroy();
      if (i < 20) continue;
      out[mode].ms.push(performance.now() - t0);
      out[mode].encode_ms.push(t1 - t0);
      out[mode].bytes.push(size);
    }
  }
  plan.destroy(); wrap.destroy();
  return out;
}"""


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
    }


def photo_data_url(name: str) -> str:
    from PIL import Image as PILImage

    rgba, w, h = webcam_rgba(name)
    rgb = np.frombuffer(rgba, np.uint8).reshape(h, w, 4)[..., :3]
    out = io.BytesIO()
    PILImage.fromarray(rgb).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--photo", default="astronaut")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/browser_encode.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # a node URL nobody answers: the page boots Python and stays idle
    with (
        start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web,
        sync_playwright() as driver,
    ):
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{web.http_url}/")
        page.wait_for_function("() => window.edgesight?.testing.pyodide", timeout=60_000)
        page.evaluate("window.edgesight.testing.paused = true")
        page.evaluate("(code) => window.edgesight.testing.pyodide.runPython(code)", PYTHON_SETUP)
        js = page.evaluate(JS_TIMING, {"frames": args.frames, "photo": photo_data_url(args.photo)})
        chromium = browser.version
        browser.close()
    defaults = EncodingSettings()
    result = {
        "command": "python bench/browser_encode.py " + " ".join(sys.argv[1:]),
        "machine": f"2 shared cores, Chromium {chromium} headless (software rendering)",
        "frame": f"{args.photo} in a 640x480 frame -> 416x312 picture",
        "frames": args.frames,
        "raw": {**summary(js["raw"]["ms"]), "bytes": js["raw"]["bytes"]},
        "jpeg": {
            **summary(js["jpeg"]["ms"]),
            "encode": summary(js["jpeg"]["encode_ms"]),
            "quality": defaults.jpeg_quality,
            "bytes_mean": round(statistics.fmean(js["jpeg"]["bytes"])),
        },
        "webp": {
            **summary(js["webp"]["ms"]),
            "encode": summary(js["webp"]["encode_ms"]),
            "quality": defaults.webp_quality,
            "bytes_mean": round(statistics.fmean(js["webp"]["bytes"])),
        },
    }
    write_result(args.out, result)
    log.info(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
