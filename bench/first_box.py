"""How long until the first box is drawn, and where that time goes (issue 18).

Headless Chromium, a fake camera playing a real photo (a person), the real web app and one
real node (its own process). Each run opens the page twice:

- **cold**: a new browser context (no HTTP cache, no service worker, no compiled code);
- **warm**: the same context again, in a new page (HTTP cache, service worker and V8's
  code cache as a returning visitor has them).

The page marks its boot milestones on the Performance timeline (``static/app.js``,
``static/python.js``): ``runtime`` (Pyodide started), ``client`` (edgesight's Python client
built), ``camera`` (getUserMedia answered), ``node-ready`` (the node's HELLO),
``first-frame`` (the first frame taken), ``first-result`` (the node's first answer),
``first-box`` (the first box drawn), ``local-ready``
(in-browser detection loaded). Milliseconds are from navigation start. Medians over runs.

With ``--baseline-static DIR`` (another version of ``static/``, e.g. from an older commit:
``git archive COMMIT static | tar -x -C DIR``) a second web app serves that one, and each run
visits both, alternating which goes first, so that before/after share the machine's load.

    .venv/bin/python bench/first_box.py --runs 5 [--baseline-static DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM, CHROMIUM_ARGS, NodeProcess, camera_args, start_webapp  # noqa: E402
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from playwright.sync_api import Browser, BrowserContext, sync_playwright  # noqa: E402

MILESTONES = (
    "runtime",
    "client",
    "camera",
    "node-ready",
    "first-frame",
    "first-result",
    "first-box",
    "local-ready",
)
TIMEOUT_MS = 120_000

READ_MARKS = """() => {
    const marks = {};
    for (const entry of performance.getEntriesByType("mark")) {
        if (entry.name.startsWith("edgesight:")) marks[entry.name.slice(10)] = entry.startTime;
    }
    const bytes = performance.getEntriesByType("resource")
        .reduce((sum, entry) => sum + (entry.transferSize || 0), 0);
    return { marks, transferred_bytes: bytes };
}"""


def visit(context: BrowserContext, url: str) -> dict[str, Any]:
    """Open the page, wait for its first box and for local detection, read its marks."""
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function(
            """() => performance.getEntriesByName("edgesight:first-box").length > 0
                && performance.getEntriesByName("edgesight:local-ready").length > 0""",
            timeout=TIMEOUT_MS,
        )
        result: dict[str, Any] = page.evaluate(READ_MARKS)
        return result
    finally:
        page.close()


def run(browser: Browser, url: str) -> dict[str, dict[str, Any]]:
    context = browser.new_context()
    try:
        cold = visit(context, url)
        warm = visit(context, url)
    finally:
        context.close()
    return {"cold": cold, "warm": warm}


def summary(runs: list[dict[str, dict[str, Any]]], kind: str) -> dict[str, Any]:
    medians = {}
    for name in MILESTONES:
        values = [r[kind]["marks"][name] for r in runs if name in r[kind]["marks"]]
        if values:
            medians[name] = round(statistics.median(values))
    first = [r[kind]["marks"]["first-box"] for r in runs]
    return {
        "median_ms": medians,
        "first_box_ms": [round(v) for v in first],
        "transferred_bytes_median": round(
            statistics.median(r[kind]["transferred_bytes"] for r in runs)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-static", type=Path, help="static/ of the version to compare")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    load_before = os.getloadavg()
    folder = ROOT / ".artifacts" / "first_box"
    folder.mkdir(parents=True, exist_ok=True)
    video = write_y4m(folder / "astronaut.y4m", [fit_frame(photo("astronaut"))] * 10)
    node = NodeProcess("bench-node").start()
    versions: dict[str, list[dict[str, dict[str, Any]]]] = {"candidate": []}
    try:
        with ExitStack() as stack, sync_playwright() as driver:
            urls = {"candidate": f"{stack.enter_context(start_webapp((node.ws_url,))).http_url}/"}
            if args.baseline_static is not None:
                baseline = start_webapp((node.ws_url,), static_dir=args.baseline_static.resolve())
                urls["baseline"] = f"{stack.enter_context(baseline).http_url}/"
                versions["baseline"] = []
            browser = driver.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *camera_args(video)]
            )
            for url in urls.values():  # the first launch's own costs are not the page's
                warmup = browser.new_context()
                visit(warmup, url)
                warmup.close()
            for index in range(args.runs):
                order = list(urls) if index % 2 == 0 else list(reversed(urls))
                for name in order:
                    versions[name].append(run(browser, urls[name]))
            browser.close()
    finally:
        node.stop()
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/first_box.py", *sys.argv[1:]]),
        "chromium": "Debian chromium, headless, fake camera (astronaut photo)",
        "runs": args.runs,
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    for name, runs in versions.items():
        results[name] = {"cold": summary(runs, "cold"), "warm": summary(runs, "warm")}
    if "baseline" in versions:
        results["first_box_ratio_candidate_to_baseline"] = {
            kind: round(
                results["candidate"][kind]["median_ms"]["first-box"]
                / results["baseline"][kind]["median_ms"]["first-box"],
                2,
            )
            for kind in ("cold", "warm")
        }
    text = json.dumps(results, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
