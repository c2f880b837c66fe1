"""The core scenarios in Firefox ESR and WebKitGTK (issue 18): the page boots, detects on a
node, falls back to in-browser detection when the node is killed, and a kiosk comes back
offline from its service worker. Chromium runs the same (and more) in the other files.

Neither browser can play a photo as its camera (Firefox's fake stream and WebKit's mock
device are synthetic pictures), so labels are checked on a photo chosen with the page's
file picker, as a person without a camera would do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browsers.sessions import BrowserSession, FirefoxSession, WebKitSession, xvfb_display
from conftest import NodeProcess, start_webapp
from fake_camera import photo
from page_state import (
    BOXES_DRAWN,
    FRAMES_DRAWN,
    LABEL_SHOWN,
    LOCAL_READY,
    OFFLINE_CACHE_READY,
    OVERLAY_HAS_INK,
    VISIBLE_TEXT,
)
from PIL import Image

pytestmark = [
    pytest.mark.e2e,
    # selenium 4.5x warns about its own WebKitGTK constructor
    pytest.mark.filterwarnings("ignore:setting remote_server_addr:DeprecationWarning"),
]

# WebKitGTK takes 40+ s to start Pyodide on a loaded 2-core machine: a deadline, not a wait.
BOOT_TIMEOUT_S = 240.0
ON_NODE = "Detecting on server {name}"
IN_BROWSER = "Detecting in this browser"


@pytest.fixture(scope="module", params=["firefox", "webkit"])
def browser(request: pytest.FixtureRequest) -> Iterator[BrowserSession]:
    """One browser per engine for this module; each test opens its own page in it."""
    if request.param == "firefox":
        firefox = FirefoxSession().launch()
        yield firefox
        firefox.close()
        return
    with xvfb_display() as display:
        webkit = WebKitSession(display).launch()
        yield webkit
        webkit.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("astronaut", "chelsea"):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(photo(name)).save(paths[name])
    return paths


def _wait_text(browser: BrowserSession, selector: str, text: str) -> None:
    browser.wait(f"(text) => ({VISIBLE_TEXT})({selector!r}) === text", text, BOOT_TIMEOUT_S)


def _wait(browser: BrowserSession, fn: str, arg: Any = None) -> None:
    browser.wait(fn, arg, BOOT_TIMEOUT_S)


def test_boots_detects_on_a_node_and_in_the_browser_when_it_is_killed(
    browser: BrowserSession, photos: dict[str, Path]
) -> None:
    # One page for three scenarios: each boot costs tens of seconds in these browsers.
    node = NodeProcess(f"{browser.name}-node").start()
    try:
        with start_webapp((node.ws_url,)) as web:
            browser.open(f"{web.http_url}/")
            # Boot: frames from the browser's own (synthetic) camera come back from the node.
            _wait(browser, BOXES_DRAWN, ["node", None, 0])
            _wait_text(browser, "#badge", ON_NODE.format(name=node.name))

            # Boxes from the node: a photo chosen with the file picker; its label beside the
            # picture and its box drawn over it, at the same time.
            browser.upload("#file", photos["chelsea"])
            _wait(browser, f"(label) => ({LABEL_SHOWN})(label) && ({OVERLAY_HAS_INK})()", "cat")
            assert browser.evaluate(VISIBLE_TEXT, "#badge") == ON_NODE.format(name=node.name)

            # The node killed: the same picture is detected in the browser.
            _wait(browser, LOCAL_READY)
            drawn_locally = browser.evaluate(FRAMES_DRAWN, "local")
            node.kill()
            _wait(browser, BOXES_DRAWN, ["local", "cat", drawn_locally])
            _wait_text(browser, "#badge", IN_BROWSER)
            _wait(browser, LABEL_SHOWN, "cat")  # listed until its boxes expire between frames
            assert browser.product_errors() == []
    finally:
        node.stop()


def test_kiosk_comes_back_offline(browser: BrowserSession) -> None:
    no_node = f"ws://127.0.0.1:{NodeProcess().port}/ws"  # nothing listens: in-browser only
    web = start_webapp((no_node,)).start()
    try:
        browser.open(f"{web.http_url}/kiosk")
        _wait(browser, BOXES_DRAWN, ["local", None, 0])
        _wait_text(browser, "#badge", IN_BROWSER)
        _wait(browser, OFFLINE_CACHE_READY)
    finally:
        web.stop()
    browser.reload()  # the web app is gone: the service worker serves the page
    _wait(browser, BOXES_DRAWN, ["local", None, 0])
    _wait_text(browser, "#badge", IN_BROWSER)
    assert browser.product_errors() == []
