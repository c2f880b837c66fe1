"""The page API (docs/page-api.md) as a Playwright user would use it, reading nothing else
of the page: wait for ``edgesight:ready``, read ``state()``, collect
``edgesight:detections`` events, see which server accepted the stream and what the overlay
drew, then kill the node and see the browser take over."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import BrowserPage, start_node, start_webapp

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 60_000
API = "window.edgesight && window.edgesight.api"


def test_state_and_detections_through_the_documented_api_only(
    open_page: Callable[..., BrowserPage],
) -> None:
    node = start_node("api-node").start()
    try:
        with start_webapp((node.ws_url,)) as web:
            view = open_page(f"{web.http_url}/", camera="chelsea")
            page = view.page
            page.wait_for_function(f"() => Boolean({API})", timeout=BOOT_TIMEOUT_MS)
            assert page.evaluate(f"() => {API}.version") == 1
            # the first cat a server found, as an event a test can await
            detections = page.evaluate(
                """() => new Promise((resolve) => {
                    addEventListener("edgesight:detections", (event) => {
                        const found = event.detail.objects.some((o) => o.label === "cat");
                        if (found) resolve(event.detail);
                    });
                })"""
            )
            assert detections["version"] == 1
            assert (detections["where"], detections["server"]) == ("server", "api-node")
            cat = next(o for o in detections["objects"] if o["label"] == "cat")
            x1, y1, x2, y2 = cat["box"]
            assert 0 <= x1 < x2
            assert 0 <= y1 < y2
            assert 0 < cat["score"] <= 1
            assert detections["capture_ms"] < detections["drawn_ms"]  # grab -> drawn
            assert detections["round_trip_ms"] > 0
            server = page.evaluate(f"() => {API}.lastServer")  # the edgesight:server event
            assert (server["name"], server["transport"]) == ("api-node", "WebSocket")
            assert server["identity"] == "anonymous"  # no sign-in on this web app
            assert server["at_ms"] < detections["drawn_ms"]
            page.wait_for_function(
                f"() => {API}.overlay().labels.some((l) => l.label === 'cat')",
                timeout=BOOT_TIMEOUT_MS,
            )
            drawn = page.evaluate(f"() => {API}.overlay()")
            label = next(item for item in drawn["labels"] if item["label"] == "cat")
            assert label["text"].startswith("cat ")
            assert label["font_css_px"] > 0
            page.wait_for_function(f"() => {API}.state().detecting", timeout=BOOT_TIMEOUT_MS)
            state = page.evaluate(f"() => {API}.state()")
            assert state["where"] == "server"
            assert state["server"]["name"] == "api-node"
            # the node offers WebTransport: the link may have moved to QUIC by now
            assert state["server"]["transport"] in ("WebSocket", "QUIC")
            assert state["server"]["identity"] == "anonymous"
            assert state["badge"] == "Detecting on server api-node"
            assert state["model"] == "nanodet-g-416"

            node.stop()  # the node dies: the browser takes over
            page.wait_for_function(
                f"() => {API}.state().where === 'browser'", timeout=BOOT_TIMEOUT_MS
            )
            page.wait_for_function(
                f"() => {API}.lastDetections && {API}.lastDetections.where === 'browser'",
                timeout=BOOT_TIMEOUT_MS,
            )
            state = page.evaluate(f"() => {API}.state()")
            assert (state["server"], state["badge"]) == (None, "Detecting in this browser")
            assert (state["browser_engine"], state["browser_backend"]) == ("ready", "wasm")
            assert state["browser_frame_ms"] > 0
            assert state["browser_problem"] == ""
            # the browser's own lines for the page's retries of the dead node, and nothing else
            dead = f"WebSocket connection to '{node.ws_url}' failed"
            assert [e for e in view.console.errors if not e.startswith(dead)] == []
    finally:
        node.stop()
