"""Screenshots of the running product for the README: docs/images/*.jpg.

Starts a real node and the web app on 127.0.0.1 (port 0), opens Debian's Chromium with a
fake webcam playing the test photos (scikit-image's astronaut and chelsea, as the
Playwright tests do), waits until boxes are drawn and the numbers have settled, and saves:

    node-1920.jpg     the page on a 1920x1080 screen, detection on a server
    node-390.jpg      the page on a 390 px phone, detection on a server
    browser-1920.jpg  the page with no server reachable: detection in this browser
    browser-390.jpg   the same on a phone
    kiosk-1920.jpg    /kiosk on a 1920x1080 screen, with the "in view" summary

    .venv/bin/python scripts/screenshots.py [--out docs/images]
    .venv/bin/python scripts/screenshots.py --browser firefox webkit [--out DIR]

Regenerate after any change to what the page shows, and look at the pictures.

``--browser`` takes chromium (the default: the README's pictures), firefox and webkit, the
engines the end-to-end tests drive (playwright/browsers/sessions.py). Their pictures go to
``--out`` (default ``.artifacts/screenshots/<browser>/``, not committed; with several
browsers and ``--out``, a folder per browser under it). Neither Firefox's fake stream nor
WebKit's mock camera can play a photo, so there the photo is chosen with the page's file
picker once the page detects on its synthetic camera, as a person without a camera would.
WebKitGTK sizes a window, not a viewport: it has no device-pixel-ratio emulation (its
phone pictures are at scale 1) and MiniBrowser's window has a minimum width, so its "390"
pictures are as narrow as it allows: 447 CSS px with WebKitGTK 2.50 on Xvfb (the viewport
it got is logged with each picture).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "playwright"))  # fake_camera and conftest's helpers

from browsers.sessions import (  # noqa: E402
    BrowserSession,
    FirefoxSession,
    WebKitSession,
    xvfb_display,
)
from conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    camera_args,
    free_port,
    start_node,
    start_webapp,
)
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from page_state import BOXES_DRAWN  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

log = logging.getLogger("screenshots")

SETTLE_MS = 3500  # after the first box: the status line's 3 s window fills
BOOT_TIMEOUT_MS = 90_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1920, "height": 1080}, "device_scale_factor": 1}
BROWSERS = ("chromium", "firefox", "webkit")
OTHER_BOOT_TIMEOUT_S = 240.0  # WebKitGTK starts Pyodide in 40+ s on a loaded 2-core machine
XVFB_SCREEN = "2560x1440x24"  # room for a 1920x1080 viewport and the window around it

# The badge says ``kind`` and the overlay shows labels (docs/page-api.md).
LABELLED = """(kind) => {
    const api = window.edgesight && window.edgesight.api;
    return Boolean(api && document.getElementById("badge").dataset.kind === kind
        && api.overlay().labels.length > 0);
}"""
OPEN_DETAILS = """() => {
    document.querySelectorAll("details").forEach((d) => { d.open = true; });
}"""


def wait_for_boxes(page: Page, kind: str) -> None:
    """Until the badge says ``kind`` and boxes are on the picture, then let numbers settle."""
    page.wait_for_function(LABELLED, arg=kind, timeout=BOOT_TIMEOUT_MS)
    page.wait_for_timeout(SETTLE_MS)
    page.wait_for_function("() => window.edgesight.api.overlay().labels.length > 0", timeout=10_000)


@contextlib.contextmanager
def browser_with_camera(camera: Path) -> Iterator[Browser]:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *camera_args(camera)]
        )
        try:
            yield browser
        finally:
            browser.close()


def shoot(browser: Browser, url: str, kind: str, screen: dict[str, object], path: Path) -> None:
    context = browser.new_context(**screen)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        page.goto(url)
        wait_for_boxes(page, kind)
        # Details and Timings open: the pictures show what they hold too.
        page.evaluate(OPEN_DETAILS)
        page.wait_for_timeout(600)  # one status refresh fills them
        page.screenshot(path=str(path), type="jpeg", quality=82, full_page=False)
        log.info("wrote %s", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        context.close()


def shoot_chromium(out: Path, cameras: dict[str, Path]) -> None:
    with start_node("gpu0") as node, start_webapp((node.ws_url,), kiosk_in_view=True) as web:
        with browser_with_camera(cameras["astronaut"]) as browser:
            shoot(browser, f"{web.http_url}/", "node", DESKTOP, out / "node-1920.jpg")
            shoot(browser, f"{web.http_url}/kiosk", "node", DESKTOP, out / "kiosk-1920.jpg")
        with browser_with_camera(cameras["chelsea"]) as browser:
            shoot(browser, f"{web.http_url}/", "node", PHONE, out / "node-390.jpg")
    # No server answers: the page detects in the browser.
    with start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web:
        with browser_with_camera(cameras["chelsea"]) as browser:
            shoot(browser, f"{web.http_url}/", "local", DESKTOP, out / "browser-1920.jpg")
        with browser_with_camera(cameras["astronaut"]) as browser:
            shoot(browser, f"{web.http_url}/", "local", PHONE, out / "browser-390.jpg")


def shoot_in(
    session: BrowserSession, url: str, kind: str, screen: dict[str, Any], picture: Path, path: Path
) -> None:
    """One picture in Firefox or WebKit: ``picture`` chosen with the file picker once the
    page detects (``kind``) on its synthetic camera, then the same settling as in Chromium."""
    viewport = screen["viewport"]
    width_px, height_px = session.resize(
        viewport["width"], viewport["height"], screen["device_scale_factor"]
    )
    session.open(url)
    session.wait(BOXES_DRAWN, [kind, None, 0], OTHER_BOOT_TIMEOUT_S)  # kind: node or local
    session.upload("#file", picture)
    session.wait(LABELLED, kind, OTHER_BOOT_TIMEOUT_S)
    time.sleep(SETTLE_MS / 1e3)  # a script, not a test: the status line's window fills
    session.wait(LABELLED, kind, 10.0)
    session.evaluate(OPEN_DETAILS)
    time.sleep(0.6)  # one status refresh fills them
    session.screenshot(path)
    log.info("wrote %s (viewport %dx%d)", path, width_px, height_px)
    if errors := session.product_errors():
        log.warning("%s: the page reported %s", path.name, errors)


@contextlib.contextmanager
def session_for(browser: str) -> Iterator[BrowserSession]:
    if browser == "firefox":
        firefox = FirefoxSession().launch()
        try:
            yield firefox
        finally:
            firefox.close()
        return
    with xvfb_display(XVFB_SCREEN) as display:
        webkit = WebKitSession(display).launch()
        try:
            yield webkit
        finally:
            webkit.close()


def shoot_other(browser: str, out: Path, photos: dict[str, Path]) -> None:
    with session_for(browser) as session:

        def shots(url: str, kind: str, screen: dict[str, Any], name: str, file: str) -> None:
            shoot_in(session, url, kind, screen, photos[name], out / file)

        with start_node("gpu0") as node, start_webapp((node.ws_url,), kiosk_in_view=True) as web:
            shots(f"{web.http_url}/", "node", DESKTOP, "astronaut", "node-1920.jpg")
            shots(f"{web.http_url}/kiosk", "node", DESKTOP, "astronaut", "kiosk-1920.jpg")
            shots(f"{web.http_url}/", "node", PHONE, "chelsea", "node-390.jpg")
        with start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web:
            shots(f"{web.http_url}/", "local", DESKTOP, "chelsea", "browser-1920.jpg")
            shots(f"{web.http_url}/", "local", PHONE, "astronaut", "browser-390.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--browser", nargs="+", choices=BROWSERS, default=["chromium"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    browsers: list[str] = list(dict.fromkeys(args.browser))
    with tempfile.TemporaryDirectory() as tmp:
        frames = {name: fit_frame(photo(name)) for name in ("astronaut", "chelsea")}
        cameras = {
            name: write_y4m(Path(tmp) / f"{name}.y4m", [frame] * 10)
            for name, frame in frames.items()
        }
        photos = {name: Path(tmp) / f"{name}.png" for name in frames}
        for name, frame in frames.items():
            Image.fromarray(frame).save(photos[name])
        for browser in browsers:
            out = out_folder(browser, args.out, several=len(browsers) > 1)
            out.mkdir(parents=True, exist_ok=True)
            if browser == "chromium":
                shoot_chromium(out, cameras)
            else:
                shoot_other(browser, out, photos)


def out_folder(browser: str, given: Path | None, several: bool) -> Path:
    if given is not None:
        return given / browser if several else given
    if browser == "chromium":
        return ROOT / "docs" / "images"
    return ROOT / ".artifacts" / "screenshots" / browser


if __name__ == "__main__":
    main()
