"""Every state of the page says what is true, in words a person reads (issue 18), on a
phone (390 px) and on a 1920x1080 screen: starting (never a red "Not detecting"), on a
node, in this browser, refused (by origin, by model), offline, no camera, denied, a file
that cannot be played (said once, plainly), needs https. Screenshots go to the test's tmp
dir for a person to look at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    CHROMIUM_ARGS,
    BrowserPage,
    NodeProcess,
    Stack,
    camera_args,
    free_port,
    start_webapp,
)
from page_state import STATE
from playwright.sync_api import Page, Playwright, expect

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from tests.conftest import MODEL_PATH

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 90_000
SCREENS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1920, "height": 1080}}

# Every text the badge shows, recorded from the first paint (the template's own included).
BADGE_LOG = """
window.__badges = [];
new MutationObserver(() => {
  const badge = document.getElementById("badge");
  if (badge) window.__badges.push(badge.textContent);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def shoot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path))
    assert path.stat().st_size > 0


@pytest.mark.parametrize("screen", SCREENS)
def test_a_normal_start_says_starting_then_detecting_on_the_server(
    stack: Stack, tmp_path: Path, open_page: Callable[..., BrowserPage], screen: str
) -> None:
    opened = open_page("about:blank", camera="astronaut", viewport=SCREENS[screen])
    page = opened.page
    page.add_init_script(BADGE_LOG)
    page.goto(stack.url)
    expect(page.locator("#badge")).to_have_text("Starting…")
    shoot(page, tmp_path / f"starting-{screen}.png")
    expect(page.locator("#badge")).to_have_text(
        "Detecting on server e2e-node", timeout=BOOT_TIMEOUT_MS
    )
    expect(page.locator("#badge")).to_be_visible()
    shown = page.evaluate("window.__badges")
    assert not [text for text in shown if text.startswith("Not detecting")], shown
    expect(page.locator("#message")).to_be_hidden()
    details = page.locator("#details-body").inner_text()
    assert "{hostname}" not in details
    page.locator("#stats summary").click()
    expect(page.locator("#timings-note")).to_contain_text("frames a second", timeout=10_000)
    expect(page.locator("#timings-note")).not_to_contain_text("about 8")
    shoot(page, tmp_path / f"node-{screen}.png")


@pytest.mark.parametrize("screen", SCREENS)
def test_a_denied_camera_says_so_and_not_detecting(
    stack: Stack, tmp_path: Path, open_page: Callable[..., BrowserPage], screen: str
) -> None:
    page = open_page(stack.url, allow_camera=False, viewport=SCREENS[screen]).page
    badge = page.locator("#badge")
    expect(badge).to_have_text("Not detecting: camera access denied", timeout=BOOT_TIMEOUT_MS)
    expect(badge).to_have_attribute("data-kind", "none")
    expect(page.locator("#message")).to_contain_text("Camera access was denied.")
    page.wait_for_function(f"() => Boolean(({STATE})()?.server)")  # a node accepted the page
    expect(badge).to_have_text("Not detecting: camera access denied")  # a node is no picture
    shown = page.evaluate(STATE)
    assert (shown["detecting"], shown["where"], shown["server"]["name"]) == (
        False,
        None,
        "e2e-node",
    )
    shoot(page, tmp_path / f"denied-{screen}.png")


@pytest.mark.parametrize("screen", SCREENS)
def test_a_file_that_cannot_be_played_is_said_once_plainly(
    stack: Stack, tmp_path: Path, open_page: Callable[..., BrowserPage], screen: str
) -> None:
    page = open_page(stack.url, camera="astronaut", viewport=SCREENS[screen]).page
    expect(page.locator("#badge")).to_have_text(
        "Detecting on server e2e-node", timeout=BOOT_TIMEOUT_MS
    )
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a picture")
    page.locator("#file").set_input_files(str(broken))
    expect(page.locator("#badge")).to_have_text("Not detecting: that file cannot be played")
    expect(page.locator("#message")).to_have_text(
        "That file cannot be played here. Choose a video or image file."
    )
    shoot(page, tmp_path / f"bad-file-{screen}.png")


def test_no_camera_says_so(
    stack: Stack, tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    page = open_page(stack.url, camera=None, viewport=SCREENS["phone"]).page
    badge = page.locator("#badge")
    expect(badge).to_have_text("Not detecting: no camera", timeout=BOOT_TIMEOUT_MS)
    expect(page.locator("#message")).to_contain_text("No camera was found.")
    shoot(page, tmp_path / "no-camera-phone.png")


@pytest.mark.parametrize("screen", SCREENS)
def test_without_a_server_it_says_in_this_browser_with_the_model_it_runs(
    tmp_path: Path, open_page: Callable[..., BrowserPage], screen: str
) -> None:
    with start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web:
        page = open_page(f"{web.http_url}/", camera="chelsea", viewport=SCREENS[screen]).page
        badge = page.locator("#badge")
        expect(badge).to_have_text("Detecting in this browser", timeout=BOOT_TIMEOUT_MS)
        expect(page.locator("#message")).to_be_hidden()
        page.locator("#details summary").click()
        expect(page.locator("#details-body")).to_contain_text("Model: nanodet-g-416-int8")
        shoot(page, tmp_path / f"browser-{screen}.png")


@pytest.mark.parametrize("screen", SCREENS)
def test_a_node_with_another_model_is_named_as_refusing(
    tmp_path: Path, open_page: Callable[..., BrowserPage], screen: str
) -> None:
    int8 = MODEL_PATH.parent / "int8" / f"{MODEL_PATH.stem}-int8.onnx"
    settings = NodeSettings(port=0, model_path=int8, node_name="gpu-int8")
    node_app = create_node_app(settings)
    node = ServerThread(node_app, max_message_bytes=settings.max_message_bytes)
    with node, start_webapp((node.ws_url,)) as web:
        page = open_page(f"{web.http_url}/", camera="chelsea", viewport=SCREENS[screen]).page
        message = page.locator("#message")
        expect(message).to_contain_text(
            "Server gpu-int8 runs another model (nanodet-g-416-int8) than this page "
            "(nanodet-g-416)",
            timeout=BOOT_TIMEOUT_MS,
        )
        expect(page.locator("#badge")).to_have_text(
            "Detecting in this browser", timeout=BOOT_TIMEOUT_MS
        )
        shoot(page, tmp_path / f"refused-model-{screen}.png")


def test_a_registered_node_that_refuses_the_origin_is_named(
    tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    secret = "e2e-registry-secret-0123456789"
    with start_webapp((), registry_secret=secret) as web:
        node = NodeProcess(
            "gpu0",
            args=("--registry-url", web.http_url),
            env={
                "EDGESIGHT_REGISTRY_SECRET": secret,
                "EDGESIGHT_ALLOWED_ORIGINS": "https://elsewhere.example:8443",
            },
        ).start()
        try:
            page = open_page(f"{web.http_url}/", camera="chelsea", viewport=SCREENS["phone"]).page
            expect(page.locator("#message")).to_contain_text(
                "Server gpu0 did not let this page connect", timeout=BOOT_TIMEOUT_MS
            )
            origin = web.http_url.rstrip("/")
            expect(page.locator("#message")).to_contain_text(
                f"does not accept pages from {origin} (see EDGESIGHT_ALLOWED_ORIGINS"
            )
            shoot(page, tmp_path / "refused-origin-phone.png")
        finally:
            node.stop()


def test_the_offline_kiosk_shows_no_http_codes(
    tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    web = start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)).start()
    try:
        page = open_page(
            f"{web.http_url}/kiosk", camera="chelsea", viewport=SCREENS["desktop"]
        ).page
        expect(page.locator("#badge")).to_have_text(
            "Detecting in this browser", timeout=BOOT_TIMEOUT_MS
        )
        page.wait_for_function(
            """async () => {
                const reg = await navigator.serviceWorker.ready;
                return reg.active && navigator.serviceWorker.controller !== null;
            }""",
            timeout=BOOT_TIMEOUT_MS,
        )
    finally:
        web.stop()
    page.reload()  # the web app is gone: the token request fails
    expect(page.locator("#badge")).to_have_text(
        "Detecting in this browser", timeout=BOOT_TIMEOUT_MS
    )
    page.wait_for_function(f"() => ({STATE})()?.token_problem", timeout=BOOT_TIMEOUT_MS)
    reason = page.evaluate(STATE)["token_problem"]  # the page knows, and does not show it
    assert reason == "the web app could not be reached for a token"
    message = page.locator("#message")
    assert "token" not in (message.text_content() or "")
    assert "answered" not in (message.text_content() or "")
    expect(message).to_be_hidden()
    shoot(page, tmp_path / "offline-kiosk.png")


def test_an_http_page_on_a_lan_name_says_it_needs_https(
    playwright_driver: Playwright, chromium_path: str, cameras: dict[str, Path], tmp_path: Path
) -> None:
    host = "edgesight.test"
    args = [
        *CHROMIUM_ARGS,
        *camera_args(cameras["chelsea"]),
        f"--host-resolver-rules=MAP {host} 127.0.0.1",
    ]
    browser = playwright_driver.chromium.launch(executable_path=chromium_path, args=args)
    try:
        with start_webapp((f"ws://{host}:{free_port()}/ws",)) as web:
            page = browser.new_page(viewport=SCREENS["phone"])
            page.goto(f"http://{host}:{web.port}/")
            expect(page.locator("#badge")).to_have_text(
                "Not detecting: the camera needs https", timeout=BOOT_TIMEOUT_MS
            )
            message = page.locator("#message")
            expect(message).to_contain_text("This page needs https.")
            assert (message.text_content() or "").count("https") >= 1
            assert "cannot use a camera" not in (message.text_content() or "")  # said once
            shoot(page, tmp_path / "needs-https-phone.png")
    finally:
        browser.close()
