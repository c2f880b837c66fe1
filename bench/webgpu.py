"""WebGPU vs Wasm in headless Chromium (issue 20): the product's own in-browser engine
(static/local-engine.js and its worker) timing the float model and the INT8 QDQ variant on
each backend, then the whole local path (camera -> Python letterbox -> worker -> Python
post-processing -> drawn) with the page pinned to each backend.

The WebGPU adapter here is SwiftShader (a CPU implementation: no GPU on this machine), so
WebGPU numbers are CPU emulation, tens to hundreds of times slower than Wasm; they say
nothing about a real GPU. No GPU machine that can run a browser was available: the real-GPU
check (>= 30 fps in-browser) is not done.

    .venv/bin/python bench/webgpu.py [--runs 5] [--webgpu-runs 1] [--path-s 20]

Each engine is its own worker (its own thread count); each timing is the median of its
timed runs after one untimed run (the first run plans, and on WebGPU compiles shaders), on a
real camera frame letterboxed by the product's Python. Results: bench/results/webgpu.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM_ARGS, NodeProcess, camera_args, start_webapp  # noqa: E402
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from harness import RESULTS, camera_frames, machine, model_inputs, table, write_result  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

log = logging.getLogger("bench.webgpu")
WEBGPU_ARGS = [
    *(arg for arg in CHROMIUM_ARGS if arg != "--disable-gpu"),
    "--enable-unsafe-webgpu",
    "--use-webgpu-adapter=swiftshader",
    "--enable-unsafe-swiftshader",
]
TIMEOUT_MS = 900_000

# The product's engine, loaded by the page under its CSP: one worker per (backend, model).
# Per-stage timings (inference_ms) are not the page API: the test seam (docs/page-api.md).
LOCAL_TIMINGS = "window.edgesight.testing.timings.filter((t) => t.mode === 'local')"

ENGINE_RUN = """async ([key, backend, threads, modelUrl, b64, timedRuns]) => {
  const { LocalEngine } = await import("/static/local-engine.js");
  const config = JSON.parse(document.getElementById("edgesight-config").textContent);
  const engine = window.benchEngine || (window.benchEngine = new LocalEngine({
    onoutput: () => {}, onerror: () => {} }));
  const model = await (await fetch(modelUrl)).arrayBuffer();
  const sample = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const started = performance.now();
  const loaded = await engine.load(key, { backend, ortUrl: config.ort_url, model, threads,
    io: config.model.local.io, timedRuns, sample });
  const totalMs = performance.now() - started;
  engine.drop(key);
  return { warmupMs: loaded.warmupMs, threads: loaded.threads, loadAndRunsMs: totalMs };
}"""


def engine_times(page: Page, tensor_b64: str, runs: int, webgpu_runs: int) -> list[dict[str, Any]]:
    config = page.evaluate(
        '() => JSON.parse(document.getElementById("edgesight-config").textContent).model'
    )
    models = {"float": config["local_webgpu"]["url"], "int8": config["local"]["url"]}
    if config["local"]["variant_of"] is None:
        log.warning("the web app offers no INT8 variant: both rows run the float model")
    rows = []
    plan = [
        ("wasm", "float", runs),
        ("wasm", "int8", runs),
        ("webgpu", "float", webgpu_runs),
        ("webgpu", "int8", webgpu_runs),
        ("wasm", "float", runs),  # again: how much the machine's load moved meanwhile
    ]
    for backend, model, timed_runs in plan:
        key = f"{backend}-{model}"
        log.info("timing %s (%d runs)", key, timed_runs)
        measured = page.evaluate(
            ENGINE_RUN, [key, backend, 2, models[model], tensor_b64, timed_runs]
        )
        rows.append({"backend": backend, "model": model, "timed_runs": timed_runs, **measured})
        log.info("%s: %.0f ms a frame", key, measured["warmupMs"])
    return rows


def local_path(page: Page, seconds: float, min_frames: int) -> dict[str, Any]:
    """The page's own in-browser detection: frames drawn over ``seconds`` (at least
    ``min_frames``), once its engine is ready."""
    page.wait_for_function(
        f"() => Boolean(window.edgesight && {LOCAL_TIMINGS}.length)", timeout=TIMEOUT_MS
    )
    first = page.evaluate(f"() => {LOCAL_TIMINGS}.length")
    started = time.monotonic()
    page.wait_for_function(
        f"(n) => {LOCAL_TIMINGS}.length >= n", arg=first + min_frames, timeout=TIMEOUT_MS
    )
    while time.monotonic() - started < seconds:
        page.wait_for_timeout(500)  # a measurement window, not a synchronisation
    elapsed_s = time.monotonic() - started
    timings = page.evaluate(f"() => {LOCAL_TIMINGS}")
    frames = timings[first:]
    status = page.evaluate("() => window.edgesight.api.state()")
    drawn = sorted(t["drawn_ms"] - t["capture_ms"] for t in frames)
    inference = sorted(t["inference_ms"] for t in frames if t.get("inference_ms") is not None)
    return {
        "backend": status["browser_backend"],
        "threads": status["browser_threads"],
        "frames": len(frames),
        "fps": round(len(frames) / elapsed_s, 3),
        "grab_to_drawn_p50_ms": round(drawn[len(drawn) // 2], 1) if drawn else None,
        "inference_p50_ms": round(inference[len(inference) // 2], 1) if inference else None,
    }


LOSS_GAP = """async () => {
  const api = window.edgesight.api;
  const testing = window.edgesight.testing;  // losing the device is white-box: the seam
  const local = () => testing.timings.filter((t) => t.mode === "local");
  const before = local().length;
  const lostAt = performance.now();
  let switchedMs = null;
  testing.local.loseDevice();
  while (local().length <= before || switchedMs === null) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (switchedMs === null && api.state().browser_backend === "wasm") {
      switchedMs = performance.now() - lostAt;
    }
  }
  const drawn = local().filter((t) => t.drawn_ms > lostAt);
  return { switchedMs, nextBoxMs: drawn.length ? drawn[0].drawn_ms - lostAt : null,
           nextBoxGrabToDrawnMs: drawn.length ? drawn[0].drawn_ms - drawn[0].capture_ms : null };
}"""


def device_loss_gap(page: Page) -> dict[str, float | None]:
    """A pinned-WebGPU page with its Wasm standby loaded: the device is destroyed; ms from
    then until the page runs on Wasm, and until the next box is drawn (by Wasm), with that
    frame's own grab-to-drawn. One sample per page: a device is lost once."""
    page.wait_for_function(
        "() => window.edgesight?.api.state().browser_standby", timeout=TIMEOUT_MS
    )
    gap: dict[str, float | None] = page.evaluate(LOSS_GAP)
    return {key: round(value, 1) if value is not None else None for key, value in gap.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed Wasm runs per engine")
    parser.add_argument("--webgpu-runs", type=int, default=1, help="timed WebGPU runs")
    parser.add_argument("--path-s", type=float, default=20.0, help="seconds of Wasm path")
    parser.add_argument("--skip-path", action="store_true", help="engines only")
    parser.add_argument("--out", default="webgpu.json", help="file name in bench/results")
    parser.add_argument("--skip-engines", action="store_true", help="the local paths only")
    parser.add_argument(
        "--backends", default="wasm,webgpu", help="local paths to run (comma-separated)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    tensor = model_inputs(camera_frames()[:1])[0]
    tensor_b64 = base64.b64encode(tensor.tobytes()).decode()
    folder = Path(tempfile.mkdtemp(prefix="edgesight-webgpu-"))
    camera = write_y4m(folder / "chelsea.y4m", [fit_frame(photo("chelsea"))] * 10)
    unreachable = f"ws://127.0.0.1:{NodeProcess().port}/ws"
    with open("/proc/loadavg") as handle:
        load_before = handle.read().split()[:3]
    result: dict[str, Any] = {
        "machine": machine(),
        "adapter": "SwiftShader (CPU emulation of a GPU); no GPU here",
        "load_before": load_before,
        "command": "bench/webgpu.py " + " ".join(sys.argv[1:]),
    }
    with sync_playwright() as driver:
        with start_webapp((unreachable,), browser_backend="wasm") as web:
            browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=WEBGPU_ARGS)
            page = browser.new_page()
            page.goto(f"{web.http_url}/")  # no camera: the page's own engine stays idle
            page.wait_for_function("() => window.edgesight?.testing", timeout=TIMEOUT_MS)
            page.evaluate("() => { window.edgesight.testing.paused = true; }")
            if not args.skip_engines:
                result["engines"] = engine_times(page, tensor_b64, args.runs, args.webgpu_runs)
            browser.close()
        if not args.skip_path:
            paths = []
            runs = {"wasm": (args.path_s, 10), "webgpu": (0.0, 2)}
            for backend in args.backends.split(","):
                seconds, frames = runs[backend]
                with start_webapp(
                    (unreachable,), browser_backend=backend, local_load_deadline_s=600.0
                ) as web:
                    browser = driver.chromium.launch(
                        executable_path="/usr/bin/chromium",
                        args=[*WEBGPU_ARGS, *camera_args(camera)],
                    )
                    page = browser.new_page()
                    page.goto(f"{web.http_url}/")
                    log.info("local path pinned to %s", backend)
                    row = {"pinned": backend, **local_path(page, seconds, frames)}
                    if backend == "webgpu":
                        row["device_loss"] = device_loss_gap(page)
                    paths.append(row)
                    browser.close()
            result["local_path"] = paths
    with open("/proc/loadavg") as handle:
        result["load_after"] = handle.read().split()[:3]
    shutil.rmtree(folder, ignore_errors=True)
    write_result(RESULTS / args.out, result)
    sys.stdout.write(
        table(
            ["backend", "model", "runs", "ms/frame"],
            [
                (r["backend"], r["model"], r["timed_runs"], round(r["warmupMs"], 1))
                for r in result.get("engines", [])
            ],
        )
        + "\n"
    )
    for row in result.get("local_path", []):
        sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
