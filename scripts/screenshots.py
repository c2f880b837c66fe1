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

Regenerate after any change to what the page shows, and look at the pictures.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "playwright"))  # fake_camera and conftest's helpers

from conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    camera_args,
    free_port,
    start_node,
    start_webapp,
)
from fake_camera import fit_frame, photo, write_y4m  # noqa: E402
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

log = logging.getLogger("screenshots")

SETTLE_MS = 3500  # after the first box: the status line's 3 s window fills
BOOT_TIMEOUT_MS = 90_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1920, "height": 1080}, "device_scale_factor": 1}


def wait_for_boxes(page: Page, kind: str) -> None:
    """Until the badge says ``kind`` and boxes are on the picture, then let numbers settle."""
    page.wait_for_function(
        """(kind) => {
            const api = window.edgesight && window.edgesight.api;  // docs/page-api.md
            return Boolean(api && document.getElementById("badge").dataset.kind === kind
                && api.overlay().labels.length > 0);
        }""",
        arg=kind,
        timeout=BOOT_TIMEOUT_MS,
    )
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
        page.evaluate(
            "() => document.querySelectorAll('details').forEach((d) => { d.open = true; })"
        )
        page.wait_for_timeout(600)  # one status refresh fills them
        page.screenshot(path=str(path), type="jpeg", quality=82, full_page=False)
        log.info("wrote %s", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cameras = {
            name: write_y4m(Path(tmp) / f"{name}.y4m", [fit_frame(photo(name))] * 10)
            for name in ("astronaut", "chelsea")
        }
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


if __name__ == "__main__":
    main()
