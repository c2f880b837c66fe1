"""The webcam page over WebTransport (issue 16), as a person sees it: real Chromium (QUIC
on), a fake camera, a web app whose registry lists a real node that offers WebTransport.
The page opens the node over QUIC and Details says so; where UDP does not get through,
it uses the node's WebSocket instead and Details says that. These pages use QUIC whenever
it is offered (EDGESIGHT_PAGE_TRANSPORT=quic); the default, measured choice is tested
through the loss lab (test_netlab_webtransport.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import (  # type: ignore[import-not-found]
    CHROMIUM_ARGS,
    CSP_REPORTER,
    MODEL_PATH,
    Console,
    camera_args,
    free_port,
    start_webapp,
)
from page_state import FRAMES_DRAWN, STATE  # type: ignore[import-not-found]
from playwright.sync_api import Page, Playwright, expect

from edgesight.serving import ServerThread
from gpu_backend import app as node_app
from gpu_backend.app import create_app as create_node_app
from gpu_backend.node import Node
from gpu_backend.settings import NodeSettings
from gpu_backend.wt_server import WtServer

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 60_000
SECRET = "e2e-registry-secret-0123456789"
WT_ARGS = [arg for arg in CHROMIUM_ARGS if arg != "--disable-quic"]


@pytest.fixture
def open_quic_page(
    playwright_driver: Playwright, chromium_path: str, cameras: dict[str, Path]
) -> Iterator[tuple[list[Page], list[Console]]]:
    opened: list[Page] = []
    consoles: list[Console] = []
    browsers = []

    def _open(url: str) -> Page:
        args = [*WT_ARGS, *camera_args(cameras["chelsea"])]
        browser = playwright_driver.chromium.launch(executable_path=chromium_path, args=args)
        browsers.append(browser)
        page = browser.new_page()
        console = Console()
        page.on("console", console.record)
        page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
        page.add_init_script(CSP_REPORTER)
        page.goto(url)
        opened.append(page)
        consoles.append(console)
        return page

    yield _open  # type: ignore[misc]
    for browser in browsers:
        browser.close()


def _registered_node(web: ServerThread) -> tuple[ServerThread, object]:
    port = free_port()
    settings = replace(
        NodeSettings(model_path=MODEL_PATH, node_name="quic-node"),
        port=port,
        registry_url=web.http_url,
        registry_secret=SECRET,
    )
    app = create_node_app(settings)
    return ServerThread(app, port=port), app


def test_the_page_detects_over_quic_and_says_so(open_quic_page) -> None:  # type: ignore[no-untyped-def]
    with start_webapp((), registry_secret=SECRET, page_transport="quic") as web:
        node, _ = _registered_node(web)
        with node:
            page = open_quic_page(f"{web.http_url}/")
            page.wait_for_function(FRAMES_DRAWN, arg="node", timeout=TIMEOUT_MS)
            expect(page.locator("#badge")).to_have_text("Detecting on server quic-node")
            expect(page.locator("#details-body")).to_contain_text("Transport: QUIC")
            server = page.evaluate(STATE)["server"]
            assert (server["name"], server["transport"]) == ("quic-node", "QUIC")
            first = page.evaluate("() => window.edgesight.api.lastServer")
            assert (first["name"], first["transport"]) == ("quic-node", "QUIC")
            expect(page.locator('#detections li[data-label="cat"]').first).to_be_visible()


def test_udp_that_does_not_get_through_leaves_the_page_on_websocket(
    open_quic_page,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """The node announces a UDP port where packets vanish (a firewall that drops them):
    the page gives QUIC its second and streams over the WebSocket."""
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))  # bound and never read: no ICMP, no answer
    real_start = node_app.start_webtransport

    async def start_behind_a_firewall(node: Node) -> WtServer | None:
        server = await real_start(node)
        assert server is not None
        server.port = blackhole.getsockname()[1]  # what its heartbeat and WELCOME announce
        return server

    monkeypatch.setattr(node_app, "start_webtransport", start_behind_a_firewall)
    try:
        with start_webapp((), registry_secret=SECRET, page_transport="quic") as web:
            node, _ = _registered_node(web)
            with node:
                page = open_quic_page(f"{web.http_url}/")
                page.wait_for_function(FRAMES_DRAWN, arg="node", timeout=TIMEOUT_MS)
                expect(page.locator("#details-body")).to_contain_text("Transport: WebSocket")
                expect(page.locator('#detections li[data-label="cat"]').first).to_be_visible()
                assert page.evaluate(STATE)["server"]["transport"] == "WebSocket"
                # QUIC was tried and given up, not skipped (white-box: docs/page-api.md)
                failures = "() => window.edgesight.testing.client.quic.transport.quic_failures"
                assert page.evaluate(failures) >= 1
    finally:
        blackhole.close()


def test_a_websocket_link_moves_to_quic_when_its_node_offers_it(open_quic_page) -> None:  # type: ignore[no-untyped-def]
    """A node the page knows only by its ws:// URL: the page starts on the WebSocket, learns
    the offer from the WELCOME and moves the link to QUIC beside it (make before break)."""
    from conftest import start_node  # type: ignore[import-not-found]

    with (
        start_node("static-node") as node,
        start_webapp((node.ws_url,), page_transport="quic") as web,
    ):
        page = open_quic_page(f"{web.http_url}/")
        page.wait_for_function(FRAMES_DRAWN, arg="node", timeout=TIMEOUT_MS)
        # it started on the WebSocket: the edgesight:server event says so, the move does not
        first = page.evaluate("() => window.edgesight.api.lastServer")
        assert (first["name"], first["transport"]) == ("static-node", "WebSocket")
        expect(page.locator("#details-body")).to_contain_text("Transport: QUIC", timeout=TIMEOUT_MS)
        before = page.evaluate(FRAMES_DRAWN, "node")
        page.wait_for_function(f"() => ({FRAMES_DRAWN})('node') > {before} + 5", timeout=TIMEOUT_MS)
        assert page.evaluate(STATE)["server"]["transport"] == "QUIC"
        expect(page.locator("#badge")).to_have_text("Detecting on server static-node")


def test_a_killed_node_on_quic_is_replaced_by_the_other_node(open_quic_page) -> None:  # type: ignore[no-untyped-def]
    """Failover works over QUIC as over the WebSocket: the page's node, on a QUIC link, is
    killed outright (no goodbye: QUIC has no reset to send, the link just goes silent);
    boxes come from the other node, which the page then moves to QUIC too."""
    from conftest import NodeProcess  # type: ignore[import-not-found]

    nodes = [NodeProcess("node-a").start(), NodeProcess("node-b").start()]
    try:
        urls = tuple(node.ws_url for node in nodes)
        with start_webapp(urls, page_transport="quic") as web:
            page = open_quic_page(f"{web.http_url}/")
            details = page.locator("#details-body")
            expect(details).to_contain_text("Transport: QUIC", timeout=TIMEOUT_MS)
            page.wait_for_function(
                "() => window.edgesight.api.lastDetections !== null", timeout=TIMEOUT_MS
            )
            first = page.evaluate("() => window.edgesight.api.state().server.name")
            survivor = "node-b" if first == "node-a" else "node-a"
            mark = page.evaluate("() => performance.now()")
            next(node for node in nodes if node.name == first).kill()
            page.wait_for_function(
                """([name, mark]) => {
                    const last = window.edgesight.api.lastDetections;
                    return last !== null && last.server === name && last.capture_ms > mark;
                }""",
                arg=[survivor, mark],
                timeout=TIMEOUT_MS,
            )
            expect(page.locator("#badge")).to_have_text(f"Detecting on server {survivor}")
            expect(details).to_contain_text("Transport: QUIC", timeout=TIMEOUT_MS)
    finally:
        for node in nodes:
            node.stop()
