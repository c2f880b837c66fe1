"""The page itself over a lossy, distant link (issue 16): headless Chromium's own TCP and
QUIC stacks sending the frames, side by side.

bench/lossy_link.py measures the link with a Python client (the page's NodeStream and
policies; aioquic for QUIC). A browser sends through its own stacks: TCP in the kernel
(Linux CUBIC, Nagle off), QUIC in Chromium (its congestion control, pacing and loss
recovery, not aioquic's). This bench runs the page as users do, in the tests' network lab
(tests/netlab/lab.py): Chromium and the web app in namespace A (the page on A's
loopback, a secure context), bench/null_node.py in namespace B (an engine that answers at
once: the link is what is measured), the link shaped per point. Per round and transport
(``EDGESIGHT_PAGE_TRANSPORT``: ``websocket`` or ``quic`` pinned, or ``auto``, the
page's default, which starts on the WebSocket and moves a lossy link to QUIC), a fresh web app and
browser (fresh congestion state) open the page with a fake camera (the astronaut photo,
640x480, 30 fps), wait until boxes come over that transport, warm up for ``--warmup-s``,
then count the frames the node answered and the page drew for ``--seconds``.

Per frame the page's own ``edgesight:detections`` event gives its round trip (frame handed
to the socket -> answer back; docs/page-api.md). Frames K in flight: the page's default
(adapted to the link, pyodide_client/inflight.py); encoding: the page's default (auto).
The WebSocket is ws:// (the null node in B has no certificate Chromium trusts); the QUIC
link is TLS 1.3 with the node's own serverCertificateHashes certificate.

    sudo .venv/bin/python bench/browser_lossy_link.py --rtt-ms 50 --loss 1 --rounds 2 \
        --seconds 30 [--transport websocket quic]

Needs root (network namespaces), ip, tc, iptables and Debian's chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "playwright"))

from conftest import CHROMIUM_ARGS, camera_args, start_webapp  # noqa: E402
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from harness import RESULTS, machine, table, write_result  # noqa: E402
from lossy_link import Node, link_fields, round_trips  # noqa: E402
from playwright.sync_api import Browser, Page, Playwright, sync_playwright  # noqa: E402

from tests.netlab.lab import ADDRESS_B, Lab, LinkShape, missing_tools  # noqa: E402
from tests.netlab.netns import inside  # noqa: E402

log = logging.getLogger("bench.browser_lossy_link")

CHROMIUM = "/usr/bin/chromium"
# state().server.transport each policy is waited for; auto: whichever the page chose
TRANSPORT_SHOWN = {"websocket": "WebSocket", "quic": "QUIC", "auto": None}
WT_ARGS = [arg for arg in CHROMIUM_ARGS if arg != "--disable-quic"]  # WebTransport is QUIC
versions: set[str] = set()  # Chromium's, as the pages ran
MAX_RECORDED = 20_000  # round trips the page keeps for the bench (30 fps: 11 minutes)
# Every frame the node answered, drawn: its round trip and when (the page's clock).
RECORD = f"""
window.benchFrames = [];
addEventListener("edgesight:detections", (event) => {{
    const d = event.detail;
    if (d.where !== "server" || window.benchFrames.length >= {MAX_RECORDED}) return;
    window.benchFrames.push([d.drawn_ms, d.round_trip_ms]);
}});
"""


DETAILS = "() => [...document.querySelectorAll('#details-body li')].map((li) => li.textContent)"


def chromium_in(namespace: str, folder: Path) -> str:
    """An executable that runs Chromium inside ``namespace`` (Playwright's pipe goes along)."""
    wrapper = folder / f"chromium-in-{namespace}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return os.fspath(wrapper)


def open_page(
    driver: Playwright, executable: str, camera: Path, url: str, exits: contextlib.ExitStack
) -> Page:
    browser: Browser = driver.chromium.launch(
        executable_path=executable, args=[*WT_ARGS, *camera_args(camera)]
    )
    exits.callback(browser.close)
    versions.add(browser.version)
    page = browser.new_page()
    page.on("pageerror", lambda exc: log.warning("page error: %s", exc))
    page.add_init_script(RECORD)
    page.goto(url)
    return page


def frames_since(page: Page, start_ms: float) -> list[list[float]]:
    frames: list[list[float]] = page.evaluate(
        "(t) => window.benchFrames.filter((f) => f[0] >= t)", start_ms
    )
    return frames


def point(
    lab: Lab,
    node: Node,
    transport: str,
    shape: LinkShape,
    round_no: int,
    driver: Playwright,
    executable: str,
    camera: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    lab.shape(shape)
    with contextlib.ExitStack() as exits:
        with inside(lab.a):  # the web app on A's loopback: the page is a secure context
            web = exits.enter_context(
                start_webapp((f"ws://{ADDRESS_B}:{node.port}/ws",), page_transport=transport)
            )
        page = open_page(driver, executable, camera, f"{web.http_url}/", exits)
        page.wait_for_function(
            "(t) => (t === null || window.edgesight?.api.state().server?.transport === t)"
            " && window.benchFrames.length > 0",
            arg=TRANSPORT_SHOWN[transport],
            timeout=args.timeout_s * 1000,
            polling=250,
        )
        page.wait_for_timeout(args.warmup_s * 1000)
        dropped0, cpu0 = lab.dropped_packets(), node.cpu_s()
        start_ms = page.evaluate("() => performance.now()")
        page.wait_for_timeout(args.seconds * 1000)
        end_ms = page.evaluate("() => performance.now()")
        frames = [f for f in frames_since(page, start_ms) if f[0] < end_ms]
        cpu_s, dropped = node.cpu_s() - cpu0, lab.dropped_packets() - dropped0
        state = page.evaluate("() => window.edgesight.api.state()")
        details = page.evaluate(DETAILS)
    shown = (state.get("server") or {}).get("transport")
    wall_s = (end_ms - start_ms) / 1000
    ordered = sorted(rt for _, rt in frames)
    n = len(ordered)
    return {
        "transport": transport,
        "round": round_no,
        "shown_at_end": shown,
        **link_fields(lab, shape),
        **round_trips(ordered, wall_s),
        "node_cpu_ms_per_frame": round(1000 * cpu_s / max(1, n), 2),
        "packets_dropped": dropped,
        "problem": state.get("problem", ""),
        "details": details,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--transport", choices=tuple(TRANSPORT_SHOWN), nargs="+", default=["websocket", "quic"]
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--loss", type=float, nargs="+", default=[1.0])
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[50.0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds alternating the transports")
    parser.add_argument(
        "--node-max-in-flight",
        type=int,
        nargs="+",
        default=[0],
        help="one null node per value, its frames in flight per connection (0: its default)",
    )
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "browser_lossy_link.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("uvicorn").setLevel(logging.WARNING)  # the web app's access log
    reason = missing_tools()
    if reason is not None:
        raise SystemExit(reason)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with (
        Lab() as lab,
        tempfile.TemporaryDirectory(prefix="browser-lossy-") as tmp,
        sync_playwright() as driver,
    ):
        folder = Path(tmp)
        camera = write_y4m(folder / "astronaut.y4m", [fit_frame(photo("astronaut"))] * 10)
        executable = chromium_in(lab.a, folder)
        tcp_congestion = lab.ns(lab.a, "cat", "/proc/sys/net/ipv4/tcp_congestion_control").strip()
        nodes = {
            limit: Node(lab, None, *(["--max-in-flight", str(limit)] if limit else []))
            for limit in args.node_max_in_flight
        }
        try:
            for rtt_ms in args.rtt_ms:
                for loss in args.loss:
                    shape = LinkShape(loss=loss / 100, round_trip_ms=rtt_ms)
                    for round_no in range(1, args.rounds + 1):
                        for transport in args.transport:
                            for limit, node in nodes.items():
                                row = point(
                                    lab, node, transport, shape, round_no, driver, executable,
                                    camera, args,
                                )  # fmt: skip
                                row = {"node_max_in_flight": limit or "default", **row}
                                log.info("%s", row)
                                rows.append(row)
        finally:
            for node in nodes.values():
                node.stop()
    chromium = ", ".join(sorted(versions))
    result = {
        "machine": f"{machine()}, Chromium {chromium} headless, fake camera 640x480 at 30 fps",
        "command": "bench/browser_lossy_link.py " + " ".join(sys.argv[1:]),
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "seconds_per_point": args.seconds,
        # the page's TCP sends with its kernel's congestion control (a browser cannot pick)
        "tcp_congestion_control": tcp_congestion,
        "points": rows,
    }
    write_result(args.out, result)
    keys = ["transport", "node_max_in_flight", "round", "added_rtt_ms", "loss_percent", "fps"]
    keys += ["p50_ms", "p95_ms"]
    keys += ["p99_ms", "max_ms", "over_200ms", "node_cpu_ms_per_frame", "shown_at_end"]
    sys.stdout.write(table(keys, [[row[key] for key in keys] for row in rows]) + "\n")


if __name__ == "__main__":
    main()
