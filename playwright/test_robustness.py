"""A bad node entry never disturbs the page (issue 8): a URL the browser would refuse in
``new WebSocket()`` once made the page throw at every tick and a kiosk reload itself every
11-12 s. The registry refuses such URLs now, so the test writes them into its store
directly, next to a good node, and watches the kiosk keep detecting from that node."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from conftest import MODEL_PATH, BrowserPage, start_node
from page_state import API_READY, BOXES_DRAWN, FRAMES_DRAWN
from playwright.sync_api import expect

from edgesight.serving import ServerThread
from webapp.app import create_app as create_webapp
from webapp.registry_store import MemoryStore, NodeEntry
from webapp.settings import WebappSettings

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 90_000
SECRET = "e2e-registry-secret-0123456789"
BAD_URLS = ("ws://0:99999/ws", "ws://[::1/ws", "ws://127.0.0.1:8001/ws#fragment")
FRAMES_AFTER_THE_BAD_ENTRIES = 10


def entry(node_id: str, url: str) -> NodeEntry:
    # Built directly: NodeEntry.parse (what the registry runs) would refuse the bad URLs.
    return NodeEntry(
        node_id=node_id,
        url=url,
        name=node_id,
        site="",
        provider="CPUExecutionProvider",
        device="cpu",
        device_memory_bytes=0,
        model="nanodet-g-416",
        model_sha256="0" * 64,
        streams=0,
        max_streams=32,
        queue_depth=0,
        inference_ms=0.0,
    )


def test_bad_registry_entries_leave_the_kiosk_detecting_from_the_good_node(
    open_page: Callable[..., BrowserPage],
) -> None:
    store = MemoryStore()
    settings = WebappSettings(port=0, node_urls=(), registry_secret=SECRET)
    with start_node("good-node") as node, ServerThread(create_webapp(settings, store)) as web:

        async def inject() -> None:
            # before any page asks, so the server thread never lists while this writes
            for i, url in enumerate(BAD_URLS):
                await store.put(entry(f"bad-{i}", url), 3600.0, 100)
            await store.put(entry("good-node", node.ws_url), 3600.0, 100)

        # Playwright's sync API keeps an event loop on this thread: run the writes on another
        writer = threading.Thread(target=asyncio.run, args=(inject(),))
        writer.start()
        writer.join()
        view = open_page(f"{web.http_url}/kiosk", camera="astronaut")
        page = view.page
        page.evaluate("window.firstLoad = true")  # gone if the kiosk reloads itself

        page.wait_for_function(BOXES_DRAWN, arg=["node", "person", 0], timeout=BOOT_TIMEOUT_MS)
        # every refresh of the list (each 2 s) hands the bad entries in again; go on a while
        seen = int(page.evaluate(FRAMES_DRAWN, "node"))
        page.wait_for_function(
            BOXES_DRAWN,
            arg=["node", "person", seen + FRAMES_AFTER_THE_BAD_ENTRIES],
            timeout=BOOT_TIMEOUT_MS,
        )

        expect(page.locator("#badge")).to_contain_text("good-node")  # what the kiosk shows
        assert page.evaluate("window.firstLoad") is True
        assert view.console.errors == []  # no pageerror, no "kiosk: ...; reloading"
        warnings = "\n".join(view.console.messages)
        for url in BAD_URLS:
            assert f"node '{url}' skipped" in warnings, warnings


def test_a_socket_the_browser_refuses_is_a_failed_connect_not_an_exception(
    open_page: Callable[..., BrowserPage],
) -> None:
    settings = WebappSettings(port=0, node_urls=(), model_dir=MODEL_PATH.parent)
    with ServerThread(create_webapp(settings)) as web:
        view = open_page(f"{web.http_url}/", camera=None)
        outcome = view.page.evaluate(
            """async () => {
                const { NodeLink } = await import("/static/node-link.js");
                const closed = await new Promise((resolve) => {
                    const link = new NodeLink("ws://0:99999/ws", {
                        onmessage: () => {}, onclose: resolve });
                    if (link.isOpen) resolve("open?");
                });
                // a probe is a NodeLink with a guard (pyodide_client/page_sockets.py)
                const probed = await new Promise((resolve) => new NodeLink("ws://[::1/ws", {
                    onmessage: () => {}, onclose: resolve, guardMs: 10000 }));
                return { closed, probed };
            }"""
        )
        assert outcome == {"closed": 1006, "probed": 1006}
        assert [e for e in view.console.errors if "CSP" in e or "pageerror" in e] == []
        assert any("cannot open a WebSocket to ws://0:99999/ws" in m for m in view.console.messages)


def test_the_content_security_policy_is_enforced_and_reported(
    open_page: Callable[..., BrowserPage],
) -> None:
    # what makes "no CSP violation" in the other tests mean something
    settings = WebappSettings(port=0, node_urls=(), model_dir=MODEL_PATH.parent)
    with ServerThread(create_webapp(settings)) as web:
        view = open_page(f"{web.http_url}/", camera=None)
        view.page.wait_for_function(API_READY)
        assert view.console.errors == []

        page = view.page
        with (
            page.expect_console_message(lambda m: "CSP violation: script-src" in m.text),
            page.expect_console_message(lambda m: "CSP violation: img-src" in m.text),
        ):
            page.evaluate(
                """() => {
                    const script = document.createElement("script");
                    script.textContent = "window.injected = true";
                    document.body.appendChild(script);
                    const image = document.createElement("img");
                    image.src = "http://example.invalid/tracker.png";
                    document.body.appendChild(image);
                }"""
            )

        assert view.page.evaluate("window.injected === undefined")
        violations = [e for e in view.console.errors if e.startswith("CSP violation")]
        assert any("script-src" in e for e in violations), view.console.errors
        assert any("img-src" in e and "example.invalid" in e for e in violations)
