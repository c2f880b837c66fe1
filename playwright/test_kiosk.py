"""The unattended kiosk: full screen, starts by itself, and after one successful load it
comes back and detects even when the web app (and every node) is unreachable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BrowserPage, NodeProcess, start_webapp
from page_state import BOXES_DRAWN, OFFLINE_CACHE_READY
from playwright.sync_api import expect

from edgesight.serving import ServerThread
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings
from webapp.users import Users

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 90_000

LOCAL_CAT = ["local", "cat", 0]  # BOXES_DRAWN: a cat found in this browser


def test_kiosk_reboots_offline_and_still_detects(open_page: Callable[..., BrowserPage]) -> None:
    node_url = f"ws://127.0.0.1:{NodeProcess().port}/ws"  # no node: local detection only
    web = start_webapp((node_url,)).start()
    try:
        view = open_page(f"{web.http_url}/kiosk", camera="chelsea")
        page = view.page
        page.wait_for_function(BOXES_DRAWN, arg=LOCAL_CAT, timeout=BOOT_TIMEOUT_MS)
        assert page.evaluate("document.body.classList.contains('kiosk')")
        expect(page.locator("#badge")).to_be_visible()
        expect(page.locator("#badge")).to_have_text("Detecting in this browser")
        assert page.locator("header").is_hidden()
        # The service worker has kept everything the page needs.
        page.wait_for_function(OFFLINE_CACHE_READY, timeout=BOOT_TIMEOUT_MS)
    finally:
        web.stop()

    page.reload()  # the web app is gone
    page.wait_for_function(BOXES_DRAWN, arg=LOCAL_CAT, timeout=BOOT_TIMEOUT_MS)
    assert page.evaluate("document.body.classList.contains('kiosk')")


def test_a_kiosk_signed_in_by_its_key_drops_it_from_the_url_and_still_boots_offline(
    tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    # issue 17, item 6: the key is exchanged once for a session cookie and the kiosk is
    # sent on to the clean URL; issue 18: navigations ask the web app first, and the kept
    # page is served only when the web app cannot be reached.
    users_file = tmp_path / "users.json"
    users = Users()
    key = users.add_kiosk("lobby")
    users.save(users_file)
    node_url = f"ws://127.0.0.1:{NodeProcess().port}/ws"
    settings = WebappSettings(
        port=0,
        node_urls=(node_url,),
        auth_modes=("kiosk-key",),
        users_file=users_file,
        token_key_path=tmp_path / "token-key.pem",
    )
    web = ServerThread(create_webapp(settings)).start()
    try:
        view = open_page(f"{web.http_url}/kiosk?key={key}", camera="chelsea")
        page = view.page
        page.wait_for_function(BOXES_DRAWN, arg=LOCAL_CAT, timeout=BOOT_TIMEOUT_MS)
        assert page.url == f"{web.http_url}/kiosk"  # no key in the address bar or history
        page.wait_for_function(OFFLINE_CACHE_READY, timeout=BOOT_TIMEOUT_MS)
        page.reload()  # signed in by its cookie now
        page.wait_for_function(BOXES_DRAWN, arg=LOCAL_CAT, timeout=BOOT_TIMEOUT_MS)
    finally:
        web.stop()
    # The web app restarts with an in-memory session store: the kiosk's session is gone
    # (401), and the unattended kiosk keeps its kept page and detects by itself.
    web = ServerThread(create_webapp(settings), port=web.port).start()
    try:
        page.reload()
        page.wait_for_function(BOXES_DRAWN, arg=LOCAL_CAT, timeout=BOOT_TIMEOUT_MS)
        assert page.evaluate("document.body.classList.contains('kiosk')")
    finally:
        web.stop()

    page.reload()  # the web app is gone: the kept page
    page.wait_for_function(BOXES_DRAWN, arg=LOCAL_CAT, timeout=BOOT_TIMEOUT_MS)
    assert page.evaluate("document.body.classList.contains('kiosk')")
