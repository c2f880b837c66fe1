"""The unattended kiosk: full screen, starts by itself, and after one successful load it
comes back and detects even when the web app (and every node) is unreachable."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import BrowserPage, NodeProcess, start_webapp
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 90_000

LOCAL_CAT_DRAWN = """(after) => {
    const e = window.edgesight;
    return e && e.timings.filter(t => t.mode === "local").length > after
        && (e.lastBoxes.local || []).some(b => b.label === "cat");
}"""


def test_kiosk_reboots_offline_and_still_detects(open_page: Callable[..., BrowserPage]) -> None:
    node_url = f"ws://127.0.0.1:{NodeProcess().port}/ws"  # no node: local detection only
    web = start_webapp((node_url,)).start()
    try:
        view = open_page(f"{web.http_url}/kiosk", camera="chelsea")
        page = view.page
        page.wait_for_function(LOCAL_CAT_DRAWN, arg=0, timeout=BOOT_TIMEOUT_MS)
        assert page.evaluate("document.body.classList.contains('kiosk')")
        expect(page.locator("#badge")).to_be_visible()
        expect(page.locator("#badge")).to_have_text("Detecting in this browser")
        assert page.locator("header").is_hidden()
        # The service worker has kept everything the page needs.
        page.wait_for_function(
            """async () => {
                const reg = await navigator.serviceWorker.ready;
                if (!reg.active || navigator.serviceWorker.controller === null) return false;
                const names = await caches.keys();
                return names.some(n => n.startsWith("edgesight-"));
            }""",
            timeout=BOOT_TIMEOUT_MS,
        )
    finally:
        web.stop()

    page.reload()  # the web app is gone
    page.wait_for_function(LOCAL_CAT_DRAWN, arg=0, timeout=BOOT_TIMEOUT_MS)
    assert page.evaluate("document.body.classList.contains('kiosk')")
