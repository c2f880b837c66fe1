"""What a person sees (issue 10), checked on the facts the screenshots show: one label per
object, labels readable on a phone, a badge saying where detection runs, no stale boxes
after a bad file, the camera banner gone once a file is chosen, and a restarted node used
again within the goal."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BrowserPage, NodeProcess, Stack, free_port, start_node, start_webapp
from fake_camera import photo
from page_state import DRAWN_AFTER, FIRST_SEEN, OVERLAY_LABELS, STATE, WATCH_FIRST
from PIL import Image
from playwright.sync_api import Page, expect

from tests.cluster.latency_proxy import LatencyProxy

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 90_000
PHONE = {"width": 390, "height": 844}
MIN_LABEL_CSS_PX = 11
SWITCH_BACK_GOAL_MS = 2000.0  # p95 goal: on a returned node within 2 s of it being ready
# One sample on a shared 2-core machine, not a p95: this much slack over the goal.
SWITCH_BACK_SLACK_MS = 1000.0


@pytest.fixture
def node() -> Iterator[NodeProcess]:
    process = NodeProcess("view-node").start()
    yield process
    process.stop()


def labels(page: Page) -> list[dict[str, Any]]:
    drawn: list[dict[str, Any]] = page.evaluate(OVERLAY_LABELS)
    return drawn


def wait_for_labels(page: Page, where: str) -> list[dict[str, Any]]:
    """Until the overlay shows labels and a result from ``where`` ("server", "browser")
    was drawn; the labels as drawn (page API: ``api.overlay()``)."""
    page.wait_for_function(
        """(where) => {
            const api = window.edgesight && window.edgesight.api;
            return Boolean(api && api.overlay().labels.length > 0 && api.drawn[where] > 0);
        }""",
        arg=where,
        timeout=BOOT_TIMEOUT_MS,
    )
    return labels(page)


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def test_one_label_per_object_readable_on_a_phone(
    stack: Stack, open_page: Callable[..., BrowserPage]
) -> None:
    # chelsea's anchor scores "cat" and lower "dog" on the same box: one label only
    page = open_page(stack.url, camera="chelsea", viewport=PHONE).page
    drawn = wait_for_labels(page, "server")
    for i, a in enumerate(drawn):
        for b in drawn[i + 1 :]:
            assert iou(a["box_css"], b["box_css"]) < 0.9, f"two labels on one box: {a}, {b}"
    assert [label["label"] for label in drawn] == ["cat"]
    for label in drawn:
        assert label["font_css_px"] >= MIN_LABEL_CSS_PX
        assert label["height_css"] >= MIN_LABEL_CSS_PX
        assert label["x_css"] >= 0
        assert label["x_css"] + label["width_css"] <= PHONE["width"]
    expect(page.locator("#badge")).to_have_text("Detecting on server e2e-node")
    expect(page.locator("#badge")).to_have_attribute("data-kind", "node")
    expect(page.locator("#badge")).to_be_visible()


def test_the_badge_says_in_this_browser_without_a_server(
    open_page: Callable[..., BrowserPage],
) -> None:
    with start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web:
        page = open_page(f"{web.http_url}/", camera="chelsea").page
        wait_for_labels(page, "browser")
        badge = page.locator("#badge")
        expect(badge).to_have_text("Detecting in this browser")
        expect(badge).to_have_attribute("data-kind", "local")
        colour = badge.evaluate("(el) => getComputedStyle(el).backgroundColor")
        assert colour == "rgb(255, 176, 32)"  # its own colour, not the server's blue
        rows = page.locator("#stats-body tr").evaluate_all(
            "(rows) => rows.map(r => r.dataset.stage)"
        )
        assert "network" not in rows
        assert "queue" not in rows


@pytest.mark.parametrize(
    "screen", [{"width": 1920, "height": 1080}, {"width": 1280, "height": 720}]
)
def test_a_large_screen_shows_the_whole_page_with_the_picture_filling_it(
    open_page: Callable[..., BrowserPage], screen: dict[str, int]
) -> None:
    # Seen in the README's 1920x1080 pictures: the footer cut in half at the bottom edge.
    with start_webapp((f"ws://127.0.0.1:{free_port()}/ws",)) as web:
        page = open_page(f"{web.http_url}/", camera="chelsea", viewport=screen).page
        wait_for_labels(page, "browser")
        # Details and Timings open, as in the README's pictures: the panel is at its longest.
        page.evaluate(
            "() => document.querySelectorAll('details').forEach((d) => { d.open = true; })"
        )
        page.wait_for_function("() => document.getElementById('stats-body').rows.length > 0")
        layout = page.evaluate(
            """() => {
                const box = (selector) => document.querySelector(selector).getBoundingClientRect();
                const panel = document.getElementById("panel");
                return {
                    scroll_height: document.scrollingElement.scrollHeight,
                    footer_bottom: box("footer").bottom,
                    stage: box("#stage").height,
                    panel_bottom: box("#panel").bottom,
                    main_bottom: box("main").bottom,
                    panel_scrolls: panel.scrollHeight > panel.clientHeight,
                };
            }"""
        )
    height = screen["height"]
    assert layout["scroll_height"] <= height, layout  # nothing below the screen's edge
    assert layout["footer_bottom"] <= height, layout
    assert layout["panel_bottom"] <= layout["main_bottom"] + 0.5, layout  # not over the footer
    assert layout["stage"] >= 0.8 * height, layout  # the picture still takes the screen


def test_no_stale_boxes_after_a_bad_file(
    stack: Stack, tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    page = open_page(stack.url, camera="astronaut").page
    wait_for_labels(page, "server")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a picture")
    page.locator("#file").set_input_files(str(broken))
    expect(page.locator("#message")).to_contain_text("cannot be played", timeout=10_000)
    page.wait_for_function(f"() => ({OVERLAY_LABELS})().length === 0", timeout=5_000)
    expect(page.locator("#detections li.empty")).to_be_visible()
    page.wait_for_timeout(2000)  # a late result must not bring the old boxes back
    assert labels(page) == []
    expect(page.locator("#use-camera")).to_be_visible()


def test_choosing_a_file_clears_the_camera_banner_for_good(
    stack: Stack, tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    picture = tmp_path / "chelsea.png"
    Image.fromarray(photo("chelsea")).save(picture)
    page = open_page(stack.url, camera=None).page  # no camera at all
    expect(page.locator("#message")).to_contain_text("camera", timeout=BOOT_TIMEOUT_MS)
    page.locator("#file").set_input_files(str(picture))
    expect(page.locator('#detections li[data-label="cat"]').first).to_be_visible(
        timeout=BOOT_TIMEOUT_MS
    )
    expect(page.locator("#message")).to_be_hidden()
    page.wait_for_timeout(4500)  # the camera was retried every 2 s and re-posted its banner
    expect(page.locator("#message")).to_be_hidden()
    expect(page.locator("#use-camera")).to_be_visible()


def test_a_restarted_node_is_used_again_within_the_goal(
    node: NodeProcess, open_page: Callable[..., BrowserPage]
) -> None:
    with start_webapp((node.ws_url,)) as web:
        page = open_page(f"{web.http_url}/").page
        wait_for_labels(page, "server")
        node.kill()
        expect(page.locator("#badge")).not_to_have_attribute("data-kind", "node", timeout=10_000)
        time.sleep(3)  # down long enough for the backoff to reach its cap
        # Watch for the next server to accept the page (edgesight:server) before it can:
        # the page may reconnect between /readyz answering and this test reading the
        # page's clock (then it was back in <= 0 ms).
        page.evaluate(WATCH_FIRST, ["server", None])
        node.start()  # returns once /readyz answers
        ready_ms = float(page.evaluate("performance.now()"))
        back = page.wait_for_function(FIRST_SEEN, arg="server", timeout=30_000).json_value()
    assert back["name"] == "view-node"
    assert float(back["at_ms"]) - ready_ms <= SWITCH_BACK_GOAL_MS + SWITCH_BACK_SLACK_MS


def test_a_planned_move_keeps_boxes_coming_and_ends_on_the_better_node(
    open_page: Callable[..., BrowserPage],
) -> None:
    # node-a is near at first, node-b far; then they trade places: the page moves to
    # node-b make-before-break (a second socket, promoted on its HELLO, A left after).
    with (
        start_node("node-a") as node_a,
        start_node("node-b") as node_b,
        LatencyProxy(node_a.port, delay_ms=0) as near,
        LatencyProxy(node_b.port, delay_ms=150) as far,
        # WebSocket only: the proxies delay TCP, and a link moved to QUIC would reach its
        # node's UDP port past them (a jump in round trip reads as late frames)
        start_webapp((near.ws_url, far.ws_url), page_transport="websocket") as web,
    ):
        view = open_page(f"{web.http_url}/", camera="astronaut")
        page = view.page
        wait_for_labels(page, "server")
        expect(page.locator("#badge")).to_have_text("Detecting on server node-a")
        page.evaluate(  # white-box (docs/page-api.md, "testing"): shorter routing dwell times
            """() => {
                const { pyodide: py, client } = window.edgesight.testing;
                py.globals.set("client", client);
                py.runPython(`from dataclasses import replace
s = client.router.settings
client.router.settings = replace(s, dwell_ms=500.0, min_switch_interval_ms=500.0)`);
            }"""
        )
        near.delay_ms, far.delay_ms = 150, 0
        expect(page.locator("#badge")).to_have_text("Detecting on server node-b", timeout=60_000)
        mark = float(page.evaluate("performance.now()"))
        page.wait_for_function(DRAWN_AFTER, arg=["server", "node-b", mark], timeout=30_000)
        assert page.evaluate(STATE)["server"]["url"] == far.ws_url
        assert not view.console.errors


def test_a_kiosk_without_its_camera_loops_its_configured_source_and_keeps_trying(
    stack: Stack, tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    loop = tmp_path / "loop.png"
    Image.fromarray(photo("chelsea")).save(loop)
    assert stack.node is not None
    with start_webapp((stack.node.ws_url,), kiosk_source=loop) as web:
        page = open_page(f"{web.http_url}/kiosk", camera="astronaut", allow_camera=False).page
        expect(page.locator("#message")).to_contain_text("retrying", timeout=BOOT_TIMEOUT_MS)
        expect(page.locator("#message")).to_contain_text("configured loop")
        page.wait_for_function(
            f"() => ({OVERLAY_LABELS})().some(l => l.label === 'cat')", timeout=BOOT_TIMEOUT_MS
        )
        expect(page.locator("#badge")).to_have_text("Detecting on server e2e-node")
