"""INT8 vs float32, default model: session.run on this CPU (onnxruntime) and in onnxruntime-web
(headless Chromium, Wasm, 1 and 2 threads), side by side in one run.

The machine is shared: only ratios taken in the same run mean anything, so every measurement
interleaves the two models (blocks of float runs, then INT8 runs, repeated). For the browser,
one Chromium per thread count (a page's first session fixes its thread count), both sessions
in one worker of a cross-origin-isolated page of the real web app.

    .venv/bin/python bench/int8.py [--blocks 6 --runs 10] [--record] [--app-frames 60]

``--app-frames N`` also measures the product's in-browser fallback end to end (camera ->
Python letterbox -> worker -> onnxruntime-web -> Python post-processing -> drawn), no node,
for 1 and 2 threads: the web app serving the float model alone, then the web app offering
the INT8 variant, one browser each, in alternation.

``--record`` writes the measured Wasm speed-ups into models/nanodet-g-416/int8/model.json
(``quantization.speed``), where webapp/model_files.py reads them to decide whether pages get
the INT8 file for local detection. Results: bench/results/int8.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM_ARGS, camera_args, start_webapp  # noqa: E402
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from harness import RESULTS, camera_frames, machine, model_inputs, table, write_result  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from edgesight.model_card_file import write_model_card  # noqa: E402

log = logging.getLogger("bench.int8")
MODEL_DIR = ROOT / "models" / "nanodet-g-416"
# the web app's settings for the page, as the page itself reads them
CONFIG = 'JSON.parse(document.getElementById("edgesight-config").textContent)'
INT8_DIR = MODEL_DIR / "int8"
TIMEOUT_MS = 300_000

WORKER = """
let ort; const sessions = {};
self.onmessage = async ({ data }) => {
  try {
    if (data.type === "init") {
      ort = await import(data.ortUrl + "ort.wasm.min.mjs");
      ort.env.wasm.wasmPaths = data.ortUrl;
      ort.env.wasm.numThreads = data.threads;
      for (const [name, bytes] of Object.entries(data.models)) {
        sessions[name] = await ort.InferenceSession.create(new Uint8Array(bytes),
          { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      }
      self.postMessage({ type: "ready", threads: ort.env.wasm.numThreads });
    } else {
      const input = new ort.Tensor("uint8", data.tensor, [1, 3, 416, 416]);
      const session = sessions[data.name];
      await session.run({ images: input });
      const times = [];
      for (let i = 0; i < data.runs; i++) {
        const t0 = performance.now();
        await session.run({ images: input });
        times.push(performance.now() - t0);
      }
      self.postMessage({ type: "times", times });
    }
  } catch (err) { self.postMessage({ type: "error", message: String(err) }); }
};
"""

# The page carries its configuration (the onnxruntime-web URL) in a JSON script element.
READ_CONFIG = """async () => {
  const html = await (await fetch("/")).text();
  const doc = new DOMParser().parseFromString(html, "text/html");
  window.edgesightOrtUrl = JSON.parse(doc.getElementById("edgesight-config").textContent).ort_url;
}"""

SETUP = """async ([code, threads, urls]) => {
  const ortUrl = new URL(window.edgesightOrtUrl, location.href).href;
  const models = {};
  for (const [name, url] of Object.entries(urls)) {
    models[name] = await (await fetch(url)).arrayBuffer();
  }
  // a same-origin URL (served by Playwright): the page's CSP allows no blob: workers
  const worker = new Worker(code, { type: "module" });
  const ready = await new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => data.type === "ready" ? resolve(data.threads)
      : reject(new Error(data.message));
    worker.onerror = (err) => reject(new Error(err.message));
    worker.postMessage({ type: "init", ortUrl, models, threads }, Object.values(models));
  });
  window.benchWorker = worker;
  return { threads: ready, isolated: crossOriginIsolated };
}"""

RUN = """async ([name, b64, runs]) => {
  const tensor = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return await new Promise((resolve, reject) => {
    window.benchWorker.onmessage = ({ data }) => data.type === "times" ? resolve(data.times)
      : reject(new Error(data.message));
    window.benchWorker.postMessage({ type: "run", name, tensor, runs }, [tensor.buffer]);
  });
}"""


def _median(samples: list[float]) -> float:
    return round(statistics.median(samples), 2)


def node_cpu(tensor: np.ndarray, blocks: int, runs: int, threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    sessions = {}
    for name, path in (("float", _float_path()), ("int8", _int8_path())):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        sessions[name] = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    times: dict[str, list[float]] = {"float": [], "int8": []}
    feed = {"images": tensor[None]}
    for session in sessions.values():
        session.run(None, feed)
    for _ in range(blocks):
        for name, session in sessions.items():
            for _ in range(runs):
                started = time.perf_counter()
                session.run(None, feed)
                times[name].append((time.perf_counter() - started) * 1000.0)
    f, i = _median(times["float"]), _median(times["int8"])
    return {"threads": threads, "float_ms": f, "int8_ms": i, "speedup": round(f / i, 2)}


def wasm(driver: Any, tensor: np.ndarray, threads: int, blocks: int, runs: int) -> dict[str, Any]:
    # served to the page by Playwright: the web app offers the INT8 file only once this
    # benchmark has recorded its speed-up
    urls = {"float": "/bench/float.onnx", "int8": "/bench/int8.onnx"}
    files = {"float": _float_path().read_bytes(), "int8": _int8_path().read_bytes()}
    b64 = base64.b64encode(tensor.tobytes()).decode()
    with start_webapp(("ws://127.0.0.1:8999/ws",)) as web:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        for name, body in files.items():
            page.route(f"**{urls[name]}", _fulfil_with(body))
        page.goto(f"{web.http_url}/healthz")
        page.evaluate(READ_CONFIG)
        page.route("**/bench/worker.js", _fulfil_with(WORKER.encode(), "text/javascript"))
        setup = page.evaluate(SETUP, ["/bench/worker.js", threads, urls])
        times: dict[str, list[float]] = {"float": [], "int8": []}
        for _ in range(blocks):
            for name in ("float", "int8"):
                times[name].extend(page.evaluate(RUN, [name, b64, runs]))
        browser.close()
    f, i = _median(times["float"]), _median(times["int8"])
    return {
        "threads": setup["threads"],
        "cross_origin_isolated": setup["isolated"],
        "float_ms": f,
        "int8_ms": i,
        "speedup": round(f / i, 2),
        "int8_fps_bare": round(1000.0 / i, 1),
    }


def app_fallback(
    driver: Any, camera: Path, model_dir: Path, threads: int, frames: int
) -> dict[str, Any]:
    """The page's own local path, no node: fps and capture -> drawn over ``frames`` frames."""
    unreachable = "ws://127.0.0.1:8999/ws"
    with start_webapp((unreachable,), local_threads=threads, model_dir=model_dir) as web:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium", args=[*CHROMIUM_ARGS, *camera_args(camera)]
        )
        page = browser.new_page()
        page.goto(f"{web.http_url}/")
        # per-stage timings: the test seam, not the page API (docs/page-api.md)
        count = (
            "() => (window.edgesight?.testing.timings || []).filter(t => t.mode === 'local').length"
        )
        page.wait_for_function(f"() => ({count})() >= 5", timeout=TIMEOUT_MS)
        start = page.evaluate(count)
        page.wait_for_function(f"() => ({count})() >= {start + frames}", timeout=TIMEOUT_MS)
        rows = page.evaluate(
            "(n) => window.edgesight.testing.timings.filter(t => t.mode === 'local').slice(-n)",
            frames,
        )
        local = page.evaluate(f"() => {CONFIG}.model.local")
        browser.close()
    span_ms = rows[-1]["drawn_ms"] - rows[0]["drawn_ms"]
    return {
        "threads": threads,
        "file": local["url"].rsplit("/", 1)[-1],
        "frames": len(rows),
        "fps": round((len(rows) - 1) * 1000.0 / span_ms, 1),
        "capture_to_drawn_median_ms": _median([r["drawn_ms"] - r["capture_ms"] for r in rows]),
        "session_run_median_ms": _median([r["inference_ms"] for r in rows]),
    }


def _float_only_dir(tmp: Path) -> Path:
    """The default model's folder without its int8/ variant: the page runs the float file."""
    folder = tmp / "float-only"
    folder.mkdir()
    for name in ("model.json", _float_path().name):
        (folder / name).symlink_to(MODEL_DIR / name)
    return folder


def _fulfil_with(body: bytes, content_type: str = "application/octet-stream") -> Any:
    # a worker of a cross-origin-isolated page must itself say require-corp
    headers = {
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    return lambda route, _request: route.fulfill(
        body=body, content_type=content_type, headers=headers
    )


def _float_path() -> Path:
    return MODEL_DIR / json.loads((MODEL_DIR / "model.json").read_text())["file"]


def _int8_path() -> Path:
    return INT8_DIR / json.loads((INT8_DIR / "model.json").read_text())["file"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--record", action="store_true", help="write Wasm speed-ups to model.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "int8.json")
    parser.add_argument("--app-frames", type=int, default=0, help="0: skip the app fallback")
    parser.add_argument("--app-rounds", type=int, default=1, help="float/INT8 alternations")
    parser.add_argument("--skip-bare", action="store_true", help="only the app fallback")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tensor = model_inputs(camera_frames())[0]
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    cpu, browser_rows = previous.get("node_cpu", []), previous.get("wasm", [])
    app_rows = previous.get("app_fallback", [])
    with sync_playwright() as driver:
        if not args.skip_bare:
            cpu = [node_cpu(tensor, args.blocks, args.runs, t) for t in (1, 0)]
            browser_rows = [wasm(driver, tensor, t, args.blocks, args.runs) for t in (1, 2)]
        if args.app_frames:
            camera = write_y4m(
                Path("/tmp/edgesight-bench-int8-astronaut.y4m"),
                [fit_frame(photo("astronaut"))] * 10,
            )
            with tempfile.TemporaryDirectory() as tmp:
                float_dir = _float_only_dir(Path(tmp))
                app_rows = [
                    app_fallback(driver, camera, folder, t, args.app_frames)
                    for _ in range(args.app_rounds)
                    for t in (1, 2)
                    for folder in (float_dir, MODEL_DIR)
                ]
    card = json.loads((INT8_DIR / "model.json").read_text())
    result = {
        "command": "python bench/int8.py " + " ".join(sys.argv[1:]),
        "machine": machine() + ", headless Debian Chromium, shared by 8 engineers",
        "node_cpu": cpu,
        "wasm": browser_rows,
        "app_fallback": app_rows,
        "agreement": card["quantization"]["agreement"],
    }
    write_result(args.out, result)
    if app_rows:
        log.info(
            "%s",
            table(
                ("threads", "file", "fps", "capture->drawn ms", "session.run ms"),
                [
                    (
                        r["threads"],
                        r["file"],
                        r["fps"],
                        r["capture_to_drawn_median_ms"],
                        r["session_run_median_ms"],
                    )
                    for r in app_rows
                ],
            ),
        )
    rows = [
        ("node CPU", r["threads"] or "all", r["float_ms"], r["int8_ms"], r["speedup"]) for r in cpu
    ]
    rows += [
        ("wasm", r["threads"], r["float_ms"], r["int8_ms"], r["speedup"]) for r in browser_rows
    ]
    log.info("%s", table(("where", "threads", "float ms", "int8 ms", "speed-up"), rows))
    if args.record:
        speed = card["quantization"]["speed"]
        for row in browser_rows:
            speed[f"wasm_{row['threads']}_threads_float_ms"] = row["float_ms"]
            speed[f"wasm_{row['threads']}_threads_int8_ms"] = row["int8_ms"]
            speed[f"wasm_{row['threads']}_threads_speedup"] = row["speedup"]
        speed["measured_by"] = "bench/int8.py (bench/results/int8.json)"
        write_model_card(INT8_DIR, card)
        log.info("recorded the Wasm speed-ups in %s", INT8_DIR / "model.json")


if __name__ == "__main__":
    main()
