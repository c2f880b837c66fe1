"""A model no one here trained, imported with `edgesight model import`, detected through a
node and in the browser: the page follows the node's HELLO and the fallback its model.json
(2 classes, 640x640 input, its own names), and labels boxes with its class names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import BrowserPage, NodeProcess, start_webapp
from playwright.sync_api import expect

from edgesight.model_import import import_model
from tests.models.fall_model import fall_onnx

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 180_000  # a 45 MB model at 640x640 in Wasm
# a result drawn from ``where`` ("server" | "browser") with a "Normal" (docs/page-api.md)
DRAWN = """(where) => {
    const drawn = window.edgesight?.api.lastDetections;
    return Boolean(drawn && drawn.where === where && drawn.objects.some(o => o.label === "Normal"));
}"""


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return import_model(fall_onnx(), tmp_path_factory.mktemp("fall") / "fall")


@pytest.fixture
def fall_node(imported: Any) -> Iterator[NodeProcess]:
    process = NodeProcess("fall-node", args=("--model", str(imported.onnx_path))).start()
    yield process
    process.stop()


def test_a_node_serves_an_imported_model_to_the_page(
    imported: Any, fall_node: NodeProcess, open_page: Callable[..., BrowserPage]
) -> None:
    with start_webapp((fall_node.ws_url,), model_dir=imported.onnx_path.parent) as web:
        view = open_page(f"{web.http_url}/", camera="astronaut")
        view.page.wait_for_function(
            DRAWN,
            arg="server",
            timeout=BOOT_TIMEOUT_MS,
        )
        expect(view.page.locator("#badge")).to_have_text("Detecting on server fall-node")
        expect(view.page.locator('#detections li[data-label="Normal"]').first).to_be_visible()


def test_the_fallback_runs_an_imported_two_class_model(
    imported: Any, open_page: Callable[..., BrowserPage]
) -> None:
    # given an Ultralytics export imported into a model folder, and no node
    unreachable = f"ws://127.0.0.1:{NodeProcess().port}/ws"
    with start_webapp((unreachable,), model_dir=imported.onnx_path.parent) as web:
        # when a page opens on a standing person
        view = open_page(f"{web.http_url}/", camera="astronaut")
        page = view.page
        # then the page detects in the browser and labels with the model's own names
        page.wait_for_function(
            DRAWN,
            arg="browser",
            timeout=BOOT_TIMEOUT_MS,
        )
        expect(page.locator('#detections li[data-label="Normal"]').first).to_be_visible()
        expect(page.locator("#badge")).to_have_text("Detecting in this browser")
        labels = page.evaluate(
            "() => window.edgesight.api.lastDetections.objects.map(o => o.label)"
        )
        assert set(labels) <= {"Normal", "Fall"}
        assert "2 classes" in page.locator("footer").inner_text()
