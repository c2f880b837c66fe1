"""Grab to drawn in headless Chromium: fake camera -> Pyodide -> node -> boxes drawn.

Starts a real node (``python -m edgesight node``, a subprocess) and the web app (in this
process, ``ServerThread``), both on 127.0.0.1, and opens the page in Debian's Chromium with
a fake webcam playing the astronaut photo. The page records, per frame it draws,
``window.edgesight.testing.timings`` (performance.now() clock; the test seam, not the page
API: docs/page-api.md): capture (the page grabs the
frame), preprocess (``encode_frame`` in Pyodide), sent, result received, drawn, plus the
node's queue/inference/post times. After a warm-up the array is cleared and read back
once it holds ``--frames`` entries.

Grab to drawn (once called glass-to-glass) starts when the page grabs the frame from the
video element, not at the camera's exposure: a fake camera has no exposure time, and the
page has no clock for it.

    .venv/bin/python bench/browser_latency.py --frames 200

``--transport websocket quic`` compares the page's two transports to the same node on
loopback (issue 16's "WebTransport round trip <= 1.05 x wss"), Chromium's own QUIC stack
sending the frames: frames pinned to JPEG on both (a QUIC link carries compressed frames
only), K = 1, ``--rounds`` rounds alternating the two, so that machine noise hits both.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM_ARGS, camera_args, start_webapp  # noqa: E402
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from harness import RESULTS, edgesight_node, free_port, machine, summary, table  # noqa: E402
from harness import write_result as write_json  # noqa: E402
from playwright.sync_api import ConsoleMessage, Page, sync_playwright  # noqa: E402

log = logging.getLogger("bench.browser_latency")

CHROMIUM = "/usr/bin/chromium"
HEADERS = ["per frame (ms)", "p50", "p95", "p99"]
FIELDS = ("capture_ms", "preprocess_ms", "sent_ms", "result_ms", "drawn_ms", "inference_ms")
NODE_TIMINGS = "window.edgesight.testing.timings.filter((t) => t.mode === 'node')"
TRANSPORT_SHOWN = {"websocket": "WebSocket", "quic": "QUIC"}  # state().server.transport


def wait_for_timings(page: Page, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """Poll the page until it has drawn ``count`` node results (bounded by a deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        have = page.evaluate(f"() => {NODE_TIMINGS}.length")
        if have >= count:
            timings: list[dict[str, Any]] = page.evaluate(f"() => {NODE_TIMINGS}")
            return timings[:count]
        page.wait_for_timeout(500)
    status = page.evaluate("() => window.edgesight.api.state()")
    raise TimeoutError(
        f"the page drew fewer than {count} node results in {timeout_s:.0f} s; status: {status}"
    )


def log_console(message: ConsoleMessage) -> None:
    if message.type in ("error", "warning"):
        log.warning("console: %s", message.text)


def measure_page(
    url: str, camera: Path, args: argparse.Namespace, transport: str | None = None
) -> tuple[list[dict[str, Any]], float, str]:
    """Open the page with the fake camera; return its timings, the seconds they took to
    collect, and Chromium's version. ``transport``: wait until the link uses it."""
    chromium_args = [*CHROMIUM_ARGS, *camera_args(camera)]
    if transport == "quic":
        chromium_args.remove("--disable-quic")  # WebTransport needs QUIC
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=chromium_args)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: log.warning("page error: %s", exc))
            page.on("console", log_console)
            page.goto(url)
            page.wait_for_function("() => window.edgesight?.testing.timings", timeout=120_000)
            if transport is not None:
                page.wait_for_function(
                    "(t) => window.edgesight.api.state().server?.transport === t",
                    arg=TRANSPORT_SHOWN[transport],
                    timeout=args.timeout_s * 1000,
                )
            wait_for_timings(page, args.warmup, args.timeout_s)
            page.evaluate("() => { window.edgesight.testing.timings.length = 0; }")
            t0 = time.monotonic()
            timings = wait_for_timings(page, args.frames, args.timeout_s)
            return timings, time.monotonic() - t0, browser.version
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200, help="frames measured (at most 300)")
    parser.add_argument("--warmup", type=int, default=30, help="frames drawn before measuring")
    parser.add_argument(
        "--in-flight",
        type=int,
        nargs="+",
        default=[2, 1],
        help="node max_in_flight (K) values, measured one after the other",
    )
    parser.add_argument(
        "--transport",
        choices=tuple(TRANSPORT_SHOWN),
        nargs="+",
        help="compare the page's transports (JPEG frames, K = 1) instead of K values",
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --transport: rounds")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "browser_latency.json")
    args = parser.parse_args()
    if not 1 <= args.frames <= 300:
        parser.error("--frames: the page keeps the last 300 timings; ask for 1..300")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("uvicorn").setLevel(logging.WARNING)  # the web app's access log

    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="camera-") as folder:
        camera = write_y4m(Path(folder) / "astronaut.y4m", [fit_frame(photo("astronaut"))] * 10)
        if args.transport:
            chromium = compare_transports(camera, args, runs)
        else:
            chromium = compare_in_flight(camera, args, runs)

    result = {
        "command": "python bench/browser_latency.py " + " ".join(sys.argv[1:]),
        "machine": f"{machine()}, Chromium {chromium} headless, fake camera 640x480",
        "goals": {
            "grab_to_drawn": "<= node inference + 20 ms on loopback",
            "preprocess": "<= 4 ms per 640x480 frame",
        },
        "runs": runs,
    }
    write_json(args.out, result)
    for name, run in runs.items():
        rows = [
            [part, v.get("p50_ms"), v.get("p95_ms"), v.get("p99_ms")]
            for part, v in run["timings"].items()
        ]
        log.info("\n%s: %.1f fps drawn\n%s", name, run["fps_drawn"], table(HEADERS, rows))


def compare_in_flight(camera: Path, args: argparse.Namespace, runs: dict[str, Any]) -> str:
    """A node and a page per K in ``--in-flight``, one after the other; each run's timings
    under ``K=<k>``. Returns Chromium's version."""
    chromium = ""
    for k in args.in_flight:
        log.info("node with max_in_flight K=%d", k)
        node = edgesight_node(free_port(), max_in_flight=k)
        # the page pins K too (its default, 0, adapts K to the link: issue 16)
        urls = (f"ws://127.0.0.1:{node.port}/ws",)
        with node, start_webapp(urls, max_in_flight=k) as web:
            timings, elapsed_s, chromium = measure_page(f"{web.http_url}/", camera, args)
        runs[f"K={k}"] = analyse(timings, elapsed_s)
    return chromium


def compare_transports(camera: Path, args: argparse.Namespace, runs: dict[str, Any]) -> str:
    """One node (K = 1), a page per transport and round, alternating; each run's timings
    under ``<transport> <round>``. Returns Chromium's version."""
    chromium = ""
    node = edgesight_node(free_port(), max_in_flight=1)
    urls = (f"ws://127.0.0.1:{node.port}/ws",)
    with node:
        for round_no in range(1, args.rounds + 1):
            for transport in args.transport:
                log.info("round %d: %s", round_no, transport)
                settings = {"page_transport": transport, "frame_encoding": "jpeg"}
                with start_webapp(urls, max_in_flight=1, **settings) as web:
                    timings, elapsed_s, chromium = measure_page(
                        f"{web.http_url}/", camera, args, transport
                    )
                runs[f"{transport} {round_no}"] = analyse(timings, elapsed_s)
    return chromium


def analyse(timings: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
    def series(fn: Callable[[dict[str, Any]], float]) -> list[float]:
        return [fn(t) for t in timings if all(t.get(f) is not None for f in FIELDS)]

    parts = {
        "grab_to_drawn": series(lambda t: t["drawn_ms"] - t["capture_ms"]),
        "preprocess_in_pyodide": series(lambda t: t["preprocess_ms"]),
        "capture_to_sent": series(lambda t: t["sent_ms"] - t["capture_ms"]),
        "sent_to_result": series(lambda t: t["result_ms"] - t["sent_ms"]),
        "result_to_drawn": series(lambda t: t["drawn_ms"] - t["result_ms"]),
        "node_queue": series(lambda t: t["queue_ms"]),
        "node_inference": series(lambda t: t["inference_ms"]),
        "node_post": series(lambda t: t["post_ms"]),
        # the round trip less the node's own reported time: the link, both transport
        # stacks and the node's decode (what a transport changes; inference noise is out)
        "sent_to_result_minus_node": series(
            lambda t: (
                t["result_ms"] - t["sent_ms"] - t["queue_ms"] - t["inference_ms"] - t["post_ms"]
            )
        ),
        "grab_to_drawn_minus_inference": series(
            lambda t: t["drawn_ms"] - t["capture_ms"] - t["inference_ms"]
        ),
    }
    return {
        "frames": len(parts["grab_to_drawn"]),
        "fps_drawn": round(len(timings) / elapsed_s, 2),
        "timings": {name: summary(values) for name, values in parts.items()},
    }


if __name__ == "__main__":
    main()
