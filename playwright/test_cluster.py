"""Two nodes: when the page's node dies, boxes keep coming from the other one and the
status line shows the move."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import BrowserPage, NodeProcess, start_webapp
from page_state import DRAWN_AFTER, FRAMES_DRAWN, STATE
from playwright.sync_api import expect

from webapp.node_identity import NodeCredentials
from webapp.tokens import TokenSigner

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 90_000


@pytest.fixture
def two_nodes() -> Iterator[tuple[NodeProcess, NodeProcess]]:
    nodes = (NodeProcess("node-a").start(), NodeProcess("node-b").start())
    yield nodes
    for node in nodes:
        node.stop()


def test_killed_node_is_replaced_by_the_other_node(
    two_nodes: tuple[NodeProcess, NodeProcess], open_page: Callable[..., BrowserPage]
) -> None:
    with start_webapp(tuple(node.ws_url for node in two_nodes)) as web:
        view = open_page(f"{web.http_url}/", camera="astronaut")
        page = view.page
        page.wait_for_function(FRAMES_DRAWN, arg="node", timeout=TIMEOUT_MS)
        first = page.evaluate(STATE)["server"]["name"]
        assert first in ("node-a", "node-b")
        survivor = "node-b" if first == "node-a" else "node-a"
        expect(page.locator("#badge")).to_have_text(f"Detecting on server {first}")

        mark = page.evaluate("performance.now()")
        next(node for node in two_nodes if node.name == first).kill()
        page.wait_for_function(DRAWN_AFTER, arg=["server", survivor, mark], timeout=TIMEOUT_MS)
        assert page.evaluate(STATE)["server"]["name"] == survivor
        expect(page.locator("#badge")).to_have_text(f"Detecting on server {survivor}")
        expect(page.locator('#detections li[data-label="person"]').first).to_be_visible()


def test_a_node_known_only_from_the_registry_is_used(
    open_page: Callable[..., BrowserPage], tmp_path: Path
) -> None:
    """An enrolled node (issue 17): it registers with its own credential and accepts only
    tokens for its own id, so the page must present the per-node token it got."""
    key_path = tmp_path / "token-key.pem"
    signer = TokenSigner.from_file(key_path, "edgesight", 300)  # the web app's key file
    credential = NodeCredentials(signer.enrolment_key()).issue("registered-node")
    with start_webapp((), token_key_path=key_path) as web:
        node = NodeProcess(
            "registered-node",
            args=("--registry-url", web.http_url),
            env={"EDGESIGHT_NODE_CREDENTIAL": credential},
        ).start()
        try:
            page = open_page(f"{web.http_url}/", camera="astronaut").page
            page.wait_for_function(FRAMES_DRAWN, arg="node", timeout=TIMEOUT_MS)
            expect(page.locator("#badge")).to_have_text("Detecting on server registered-node")
            # white-box (docs/page-api.md, "testing"): the page holds that node's own token
            held = page.evaluate("[...window.edgesight.testing.client.tokens.node_tokens.keys()]")
            assert held == ["registered-node"]
        finally:
            node.stop()
