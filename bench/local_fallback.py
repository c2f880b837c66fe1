"""In-browser fallback: local inference through the app vs bare onnxruntime-web, and how
long a page goes without boxes when its node dies or comes back.

(1) For 1 and 2 Wasm threads (one browser each: the first session fixes the page's thread
count), alternating blocks in one page: the app's local path (Python letterbox -> worker
-> onnxruntime-web -> Python post-processing -> draw) vs a bare ``session.run`` on the same
tensor in a separate worker of the same page, with the app paused meanwhile.
(2) With a real node subprocess: kill it (SIGKILL) and time the gap to the next box drawn
(now by local inference); restart it and time from its readiness to the first box drawn
from it again.

    .venv/bin/python bench/local_fallback.py --blocks 4 --kills 5
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM_ARGS, NodeProcess, camera_args, start_webapp  # noqa: E402
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from page_state import FRAMES_DRAWN, LOCAL_READY  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

log = logging.getLogger("bench.local_fallback")
TIMEOUT_MS = 120_000

BARE_WORKER = """
let ort, session;
self.onmessage = async ({ data }) => {
  if (data.type === "init") {
    ort = await import(data.ortUrl + "ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = data.ortUrl;
    ort.env.wasm.numThreads = data.threads;
    session = await ort.InferenceSession.create(new Uint8Array(data.model),
      { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    self.postMessage({ type: "ready" });
  } else {
    const input = new ort.Tensor("uint8", data.tensor, [1, 3, 416, 416]);
    await session.run({ images: input });
    const times = [];
    for (let i = 0; i < data.runs; i++) {
      const t0 = performance.now();
      await session.run({ images: input });
      times.push(performance.now() - t0);
    }
    self.postMessage({ type: "times", times });
  }
};
"""

SETUP_BARE = """async ([url, threads]) => {
  // the page's own settings
  const config = JSON.parse(document.getElementById("edgesight-config").textContent);
  const model = await (await fetch(config.model.local.url)).arrayBuffer();  // what the app runs
  // a same-origin URL served by Playwright: the page's CSP allows no blob: workers
  const worker = new Worker(url, { type: "module" });
  await new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => data.type === "ready" && resolve();
    worker.onerror = (err) => reject(new Error(err.message));
    worker.postMessage({ type: "init", ortUrl: new URL(config.ort_url, location.href).href,
                         model, threads }, [model]);
  });
  window.bareWorker = worker;
}"""

RUN_BARE = """async (runs) => {
  const e = window.edgesight.testing;  // not the page API: docs/page-api.md
  e.paused = true;
  await new Promise((resolve) => setTimeout(resolve, 400));  // let the app's frame finish
  const proxy = e.client.local_steps.tensor();
  const view = proxy.getBuffer("u8");
  const tensor = view.data.slice();
  view.release(); proxy.destroy();
  const times = await new Promise((resolve) => {
    window.bareWorker.onmessage = ({ data }) => resolve(data.times);
    window.bareWorker.postMessage({ type: "run", tensor, runs }, [tensor.buffer]);
  });
  e.paused = false;
  return times;
}"""


def _serve_worker(route: Any, _request: Any) -> None:
    # a worker of a cross-origin-isolated page must itself say require-corp
    route.fulfill(
        body=BARE_WORKER.encode(),
        content_type="text/javascript",
        headers={
            "Cross-Origin-Embedder-Policy": "require-corp",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 2),
    }


def local_frames(page: Page, count: int) -> list[dict[str, Any]]:
    """Wait for ``count`` more locally drawn frames and return their timings."""
    # functions, not expression strings: the page's CSP refuses the eval a string needs
    # per-stage timings are not the page API: the test seam (docs/page-api.md)
    page.wait_for_function("() => window.edgesight?.testing.timings", timeout=TIMEOUT_MS)
    local = "window.edgesight.testing.timings.filter(t => t.mode === 'local')"
    start = page.evaluate(f"() => {local}.length")
    page.wait_for_function(f"(n) => {local}.length >= n", arg=start + count, timeout=TIMEOUT_MS)
    frames: list[dict[str, Any]] = page.evaluate(f"(n) => {local}.slice(-n)", count)
    return frames


def compare_threads(driver: Any, camera: Path, threads: int, blocks: int) -> dict[str, Any]:
    unreachable = f"ws://127.0.0.1:{NodeProcess().port}/ws"
    with start_webapp((unreachable,), local_threads=threads) as web:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[*CHROMIUM_ARGS, *camera_args(camera)],
        )
        page = browser.new_page()
        page.goto(f"{web.http_url}/")
        local_frames(page, 5)  # warm
        page.route("**/bench/bare-worker.js", _serve_worker)
        page.evaluate(SETUP_BARE, ["/bench/bare-worker.js", threads])
        app_total, app_worker, app_inference, bare = [], [], [], []
        for _ in range(blocks):
            for frame in local_frames(page, 15):
                app_total.append(frame["drawn_ms"] - frame["capture_ms"])
                app_worker.append(frame["result_ms"] - frame["sent_ms"])
                app_inference.append(frame["inference_ms"])
            bare.extend(page.evaluate(RUN_BARE, 15))
        isolated = page.evaluate("crossOriginIsolated")
        browser.close()
    app, base = stats(app_total), stats(bare)
    return {
        "threads": threads,
        "cross_origin_isolated": isolated,
        "app_capture_to_drawn": app,
        "app_worker_round_trip": stats(app_worker),
        "app_session_run_in_worker": stats(app_inference),
        "bare_session_run": base,
        "ratio_median": round(app["median_ms"] / base["median_ms"], 3),
        "fps_local": round(1000.0 / app["median_ms"], 1),
    }


# When each result was drawn, and where from, through the page API's edgesight:detections
# event (docs/page-api.md); listening from the page's first script on, the last few hundred.
DRAWN_LOG = """
window.benchDrawn = [];
addEventListener("edgesight:detections", ({ detail }) => {
  window.benchDrawn.push({ where: detail.where, drawn_ms: detail.drawn_ms });
  if (window.benchDrawn.length > 600) window.benchDrawn.splice(0, 300);
});
"""
FIRST_DRAWN_AFTER = """([where, mark]) => window.benchDrawn.find(
    (t) => t.where === where && t.drawn_ms > mark)"""


def failover(driver: Any, camera: Path, kills: int) -> dict[str, Any]:
    node = NodeProcess("bench-node").start()
    gaps, returns = [], []
    try:
        with start_webapp((node.ws_url,)) as web:
            browser = driver.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[*CHROMIUM_ARGS, *camera_args(camera)],
            )
            page = browser.new_page()
            page.add_init_script(DRAWN_LOG)
            page.goto(f"{web.http_url}/")
            page.wait_for_function(
                f"() => ({LOCAL_READY})() && ({FRAMES_DRAWN})('node') > 0", timeout=TIMEOUT_MS
            )
            for _ in range(kills):
                mark = page.evaluate("performance.now()")
                node.kill()
                page.wait_for_function(FIRST_DRAWN_AFTER, arg=["browser", mark], timeout=TIMEOUT_MS)
                gaps.append(page.evaluate(FIRST_DRAWN_AFTER, ["browser", mark])["drawn_ms"] - mark)
                node.start()
                mark = page.evaluate("performance.now()")
                page.wait_for_function(FIRST_DRAWN_AFTER, arg=["server", mark], timeout=TIMEOUT_MS)
                returns.append(
                    page.evaluate(FIRST_DRAWN_AFTER, ["server", mark])["drawn_ms"] - mark
                )
            browser.close()
    finally:
        node.stop()
    return {
        "kills": kills,
        "node_death_to_next_box": stats(gaps),
        "node_ready_to_first_node_box": stats(returns),
        "max_death_gap_ms": round(max(gaps), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/local_fallback.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    camera = write_y4m(
        Path("/tmp/edgesight-bench-astronaut.y4m"), [fit_frame(photo("astronaut"))] * 10
    )
    with sync_playwright() as driver:
        threads = [compare_threads(driver, camera, t, args.blocks) for t in (1, 2)]
        fail = failover(driver, camera, args.kills)
    result = {
        "command": "python bench/local_fallback.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} 2 cores, headless Debian Chromium",
        "local_vs_bare": threads,
        "failover": fail,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
