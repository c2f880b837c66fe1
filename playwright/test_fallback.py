"""Never stop detecting: local inference in the browser when no node answers, switching
back when one does; the model's hash is checked before it runs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BrowserPage, NodeProcess, start_webapp
from fake_camera import photo
from page_state import BOXES_DRAWN, FRAMES_DRAWN, LOCAL_READY
from PIL import Image
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 90_000
MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "nanodet-g-416"


@pytest.fixture(scope="module")
def stack_node() -> Iterator[NodeProcess]:
    process = NodeProcess("file-node").start()
    yield process
    process.stop()


@pytest.fixture
def node() -> Iterator[NodeProcess]:
    process = NodeProcess("fallback-node").start()
    yield process
    process.stop()


def _status(page: Page) -> str:
    return page.locator("#status").inner_text()


def _drawn_count(page: Page, mode: str) -> int:
    return int(page.evaluate(FRAMES_DRAWN, mode))


def _wait_for_boxes(page: Page, mode: str, label: str, after: int = 0) -> None:
    """Until a box with ``label`` has been drawn from ``mode`` (beyond ``after`` frames)."""
    page.wait_for_function(BOXES_DRAWN, arg=[mode, label, after], timeout=BOOT_TIMEOUT_MS)


def _last_objects(page: Page, where: str) -> list[dict[str, Any]]:
    """The objects of the newest drawn result, which must have come from ``where``."""
    last: dict[str, Any] = page.evaluate("() => window.edgesight.api.lastDetections")
    assert last["where"] == where, last
    objects: list[dict[str, Any]] = last["objects"]
    return objects


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter) if area > inter else 0.0


def test_with_no_node_the_page_detects_locally(open_page: Callable[..., BrowserPage]) -> None:
    with start_webapp((f"ws://127.0.0.1:{NodeProcess().port}/ws",)) as web:
        view = open_page(f"{web.http_url}/", camera="chelsea")
        _wait_for_boxes(view.page, "local", "cat")
        expect(view.page.locator('#detections li[data-label="cat"]').first).to_be_visible()
        expect(view.page.locator("#badge")).to_have_text("Detecting in this browser")
        expect(view.page.locator("#badge")).to_have_attribute("data-kind", "local")
        expect(view.page.locator("#details-body")).to_contain_text("thread")


def test_node_killed_mid_stream_then_restarted(
    node: NodeProcess, open_page: Callable[..., BrowserPage]
) -> None:
    with start_webapp((node.ws_url,)) as web:
        view = open_page(f"{web.http_url}/", camera="astronaut")
        page = view.page
        _wait_for_boxes(page, "node", "person")
        expect(page.locator("#badge")).to_have_text("Detecting on server fallback-node")
        node_boxes = _last_objects(page, "server")
        # Local detection must be ready before the node dies for the switch to be instant.
        page.wait_for_function(LOCAL_READY, timeout=BOOT_TIMEOUT_MS)

        drawn_before = _drawn_count(page, "local")
        node.kill()
        _wait_for_boxes(page, "local", "person", after=drawn_before)
        expect(page.locator("#badge")).to_have_text("Detecting in this browser")

        # Parity: the same frame gives the same confident detections on both paths. The
        # browser runs the model's INT8 variant (docs/models.md), which agrees with the
        # float model on detections scoring >= 0.5; weaker ones flicker between any two runs.
        local_boxes = _last_objects(page, "browser")
        for boxes, others in ((node_boxes, local_boxes), (local_boxes, node_boxes)):
            for box in (b for b in boxes if b["score"] >= 0.5):
                same = [b for b in others if b["label"] == box["label"]]
                assert same, (box, others)
                assert max(_iou(box["box"], other["box"]) for other in same) >= 0.9, (box, others)

        node.start()  # same port: the page must come back to it by itself
        drawn_from_node = _drawn_count(page, "node")
        _wait_for_boxes(page, "node", "person", after=drawn_from_node)
        expect(page.locator("#badge")).to_have_text("Detecting on server fallback-node")


def test_a_model_with_the_wrong_hash_is_refused(
    tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    card = json.loads((MODEL_DIR / "model.json").read_text())
    shutil.copy(MODEL_DIR / card["file"], model_dir / card["file"])
    card["sha256"] = "0" * 64  # the file on disk is not the one the card promises
    (model_dir / "model.json").write_text(json.dumps(card))
    with start_webapp((f"ws://127.0.0.1:{NodeProcess().port}/ws",), model_dir=model_dir) as web:
        view = open_page(f"{web.http_url}/")
        expect(view.page.locator("#message")).to_contain_text(
            "not the expected one", timeout=BOOT_TIMEOUT_MS
        )
        assert view.page.evaluate("() => window.edgesight.api.drawn") == {
            "server": 0,
            "browser": 0,
        }


def test_a_stalled_node_is_left_for_local_detection(
    node: NodeProcess, open_page: Callable[..., BrowserPage]
) -> None:
    with start_webapp((node.ws_url,)) as web:
        page = open_page(f"{web.http_url}/", camera="astronaut").page
        _wait_for_boxes(page, "node", "person")
        page.wait_for_function(LOCAL_READY, timeout=BOOT_TIMEOUT_MS)
        drawn_before = _drawn_count(page, "local")
        node.freeze()  # sockets stay open, nothing answers: only the deadline can tell
        try:
            _wait_for_boxes(page, "local", "person", after=drawn_before)
            expect(page.locator("#badge")).to_have_text("Detecting in this browser")
        finally:
            node.thaw()
        drawn_from_node = _drawn_count(page, "node")
        _wait_for_boxes(page, "node", "person", after=drawn_from_node)


def test_an_image_file_can_replace_the_camera(
    stack_node: NodeProcess, tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    picture = tmp_path / "chelsea.png"
    Image.fromarray(photo("chelsea")).save(picture)
    with start_webapp((stack_node.ws_url,)) as web:
        page = open_page(f"{web.http_url}/", camera=None).page  # no camera at all
        expect(page.locator("#message")).to_contain_text("camera", timeout=BOOT_TIMEOUT_MS)
        page.locator("#file").set_input_files(str(picture))
        expect(page.locator('#detections li[data-label="cat"]').first).to_be_visible(
            timeout=BOOT_TIMEOUT_MS
        )
        expect(page.locator("#message")).to_be_hidden()
