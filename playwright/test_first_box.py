"""The first box comes sooner (issue 18): a returning visitor's page restores Python from
the snapshot its first visit kept, and the in-browser engine loads only after the first
result from a node. Timings themselves are measured in bench/first_box.py, not asserted here."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import BrowserPage, Stack
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 90_000

SNAPSHOT_KEPT = """async () => {
    const cache = await caches.open("pyodide-snapshots");
    return (await cache.keys()).length === 1;
}"""
RESTORED = """() => performance.getEntriesByName("edgesight:runtime")[0].detail.restored"""


def _person_shown(page: Page) -> None:
    expect(page.locator('#detections li[data-label="person"]').first).to_be_visible(
        timeout=BOOT_TIMEOUT_MS
    )


def test_a_second_visit_restores_python_from_its_snapshot(
    stack: Stack, open_page: Callable[..., BrowserPage]
) -> None:
    first = open_page(stack.url)
    _person_shown(first.page)
    assert first.page.evaluate(RESTORED) is False
    first.page.wait_for_function(SNAPSHOT_KEPT, timeout=BOOT_TIMEOUT_MS)
    again = first.page
    again.goto(stack.url)  # a returning visit: the same profile, caches and service worker
    _person_shown(again)
    assert again.evaluate(RESTORED) is True
    # The restored interpreter is whole: the page's client runs, and the standard library
    # (not imported before the snapshot) still imports.
    python = "import email.utils; email.utils.quote('a')"
    run = "(code) => window.edgesight.testing.pyodide.runPython(code)"  # white-box
    assert again.evaluate(run, python) == "a"
    expect(again.locator("#badge")).to_have_text("Detecting on server e2e-node")
    assert first.console.errors == []


def test_the_in_browser_engine_loads_after_the_first_result_from_a_node(
    stack: Stack, open_page: Callable[..., BrowserPage]
) -> None:
    view = open_page(stack.url)
    view.page.wait_for_function(
        "() => performance.getEntriesByName('edgesight:local-ready').length > 0",
        timeout=BOOT_TIMEOUT_MS,
    )
    first_result_ms, model_requested_ms = view.page.evaluate(
        """() => [
            performance.getEntriesByName("edgesight:first-result")[0].startTime,
            performance.getEntriesByType("resource")
                .find((entry) => entry.name.endsWith(".onnx")).startTime,
        ]"""
    )
    assert model_requested_ms >= first_result_ms, "the model competed with the first result"
    assert view.console.errors == []
