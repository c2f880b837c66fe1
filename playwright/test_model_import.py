"""A model no one here trained, imported with `edgesight model import`, detected in the
browser: the in-browser fallback follows its model.json (2 classes, 640x640 input, its own
names) and the page labels boxes with its class names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BrowserPage, NodeProcess, start_webapp
from playwright.sync_api import expect

from edgesight.model_import import import_model
from tests.models.fall_model import fall_onnx

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 180_000  # a 45 MB model at 640x640 in Wasm


def test_the_fallback_runs_an_imported_two_class_model(
    tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    # given an Ultralytics export imported into a model folder, and no node
    imported = import_model(fall_onnx(), tmp_path / "fall")
    unreachable = f"ws://127.0.0.1:{NodeProcess().port}/ws"
    with start_webapp((unreachable,), model_dir=imported.onnx_path.parent) as web:
        # when a page opens on a standing person
        view = open_page(f"{web.http_url}/", camera="astronaut")
        page = view.page
        # then the page detects in the browser and labels with the model's own names
        page.wait_for_function(
            "() => (window.edgesight?.lastBoxes.local || []).some(b => b.label === 'Normal')",
            timeout=BOOT_TIMEOUT_MS,
        )
        expect(page.locator('#detections li[data-label="Normal"]').first).to_be_visible()
        expect(page.locator("#badge")).to_have_text("Detecting in this browser")
        labels = page.evaluate("() => window.edgesight.lastBoxes.local.map(b => b.label)")
        assert set(labels) <= {"Normal", "Fall"}
        assert "2 classes" in page.locator("footer").inner_text()
