"""A person's view of the webcam page: real Chromium, fake camera from real photos, a real
node running the real model. Assertions are about what is visible on the page."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from conftest import BrowserPage, Stack, free_port, start_webapp
from page_state import API_READY
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 60_000


def _overlay_has_ink(view: BrowserPage) -> bool:
    return bool(
        view.page.evaluate(
            """() => {
                const canvas = document.getElementById("overlay");
                const context = canvas.getContext("2d");
                const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
                for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
                return false;
            }"""
        )
    )


@pytest.mark.parametrize(("camera", "label"), [("astronaut", "person"), ("chelsea", "cat")])
def test_the_page_draws_labelled_boxes_over_the_video(
    stack: Stack, open_page: Callable[..., BrowserPage], camera: str, label: str
) -> None:
    view = open_page(stack.url, camera=camera)
    page = view.page
    expect(page.locator(f'#detections li[data-label="{label}"]').first).to_be_visible(
        timeout=BOOT_TIMEOUT_MS
    )
    assert _overlay_has_ink(view), "boxes must be drawn on the overlay canvas"
    expect(page.locator("#badge")).to_have_text("Detecting on server e2e-node", timeout=10_000)
    expect(page.locator("#badge")).to_have_attribute("data-kind", "node")
    expect(page.locator("#details-body")).to_contain_text("Model: nanodet-g-416")
    expect(page.locator("#status")).to_contain_text("frames a second")
    expect(page.locator("#status")).to_contain_text("ms after the frame was grabbed")
    assert page.locator("#loading").is_hidden()
    assert page.locator("#message").is_hidden()
    assert page.evaluate("crossOriginIsolated") is True
    # The browser's time per frame is known even on a node: the worker times a warm-up run
    # (routing.py compares it with degraded nodes, issue 12).
    page.wait_for_function(
        "() => (window.edgesight.api.state().browser_frame_ms || 0) > 0", timeout=BOOT_TIMEOUT_MS
    )
    assert view.console.errors == []


# Run identically in Pyodide (in the page) and in CPython (here); both print hex digests.
PARITY_SNIPPET = """
import hashlib
from pyodide_client.preprocess import Letterbox
from pyodide_client.protocol import Dtype, Frame, Hello, Result, Detection, Error, ErrorCode
from pyodide_client.protocol import Welcome
from pyodide_client.stream import NodeStream

width, height = 641, 359
rgba = bytes((i * 7 + (i // 4099)) % 256 for i in range(width * height * 4))
tensor = bytes(Letterbox.for_frame(width, height, 416).fill(rgba))
frame = Frame(123456, 98765.4321, Dtype.UINT8, (3, 416, 416), tensor).serialize()
stream = NodeStream()
hello = Hello("n", "m", "ab" * 32, Dtype.UINT8, (3, 416, 416), ("person",), 2)
stream.receive(hello.serialize(), 0.0)
stream.receive(Welcome(1, 0, "anonymous").serialize(), 0.0)
streamed = stream.encode_frame(rgba, width, height, 98765.4321, 1.0)
others = b"".join([
    Result(7, 1.5, 0.25, 10.5, 0.75, 3, (Detection(0, 0.9, 1.0, 2.0, 3.0, 4.0),)).serialize(),
    Error(ErrorCode.WRONG_SHAPE, "expected [3, 416, 416], got [3, 2, 2]", 9).serialize(),
])
messages = (tensor, frame, streamed, others)
digests = "|".join(hashlib.sha256(data).hexdigest() for data in messages)
"""


def test_protocol_in_pyodide_produces_the_same_bytes_as_cpython(
    stack: Stack, open_page: Callable[..., BrowserPage]
) -> None:
    view = open_page(stack.url)
    view.page.wait_for_function(API_READY, timeout=BOOT_TIMEOUT_MS)
    in_browser = view.page.evaluate(  # white-box: the page's Python (docs/page-api.md, testing)
        "(code) => { const py = window.edgesight.testing.pyodide; py.runPython(code);"
        " return [py.globals.get('digests'), py.runPython('import sys; sys.version')]; }",
        PARITY_SNIPPET,
    )
    scope: dict[str, object] = {}
    exec(PARITY_SNIPPET, scope)
    assert in_browser[0] == scope["digests"]
    assert in_browser[1].startswith("3.14"), "the page must run Pyodide's own Python"
    assert hashlib.sha256(b"").hexdigest() not in in_browser[0]


def test_unreachable_node_is_explained_and_retried(open_page: Callable[..., BrowserPage]) -> None:
    # a port nothing listens on (9, "discard", is on browsers' blocked list: refused)
    with start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web:
        view = open_page(f"{web.http_url}/")
        details = view.page.locator("#details-body")  # countdowns live in the details
        expect(details).to_contain_text("no node answers", timeout=BOOT_TIMEOUT_MS)
        expect(details).to_contain_text("next try in")
        expect(view.page.locator("#status")).not_to_contain_text("next try in")


def test_denied_camera_is_explained(stack: Stack, open_page: Callable[..., BrowserPage]) -> None:
    view = open_page(stack.url, allow_camera=False)
    expect(view.page.locator("#message")).to_contain_text(
        "Camera access was denied", timeout=BOOT_TIMEOUT_MS
    )
