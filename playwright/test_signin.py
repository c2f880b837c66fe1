"""Sign-in as a person meets it: the page asks for a user name and password, and once
signed in it detects through a node that takes only the web app's stream tokens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL_PATH, BrowserPage, start_webapp
from playwright.sync_api import expect

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from webapp.tokens import TokenSigner
from webapp.users import Users

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT_MS = 60_000
PASSWORD = "correct horse battery"


def test_a_signed_in_page_detects_through_a_node_that_requires_tokens(
    tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    users_file = tmp_path / "users.json"
    users = Users()
    users.set_password("alice", PASSWORD, n=2**10)
    users.save(users_file)
    key_path = tmp_path / "token-key.pem"
    public_key = tmp_path / "token-key.pub.pem"
    public_key.write_bytes(TokenSigner.from_file(key_path, "edgesight", 300).public_key_pem())
    # a key file given: this node refuses streams without a valid token, even on loopback
    node_settings = NodeSettings(
        port=0, model_path=MODEL_PATH, node_name="e2e-node", token_public_key=str(public_key)
    )
    node = ServerThread(
        create_node_app(node_settings), max_message_bytes=node_settings.max_message_bytes
    )
    with (
        node,
        start_webapp(
            (node.ws_url,),
            auth_modes=("users",),
            users_file=users_file,
            token_key_path=key_path,
        ) as web,
    ):
        view = open_page(f"{web.http_url}/", camera="chelsea")
        page = view.page
        expect(page.get_by_label("User name")).to_be_visible()
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        expect(page.locator('#detections li[data-label="cat"]').first).to_be_visible(
            timeout=BOOT_TIMEOUT_MS
        )
        expect(page.locator("#status")).to_have_attribute("data-mode", "node")
        welcome = page.evaluate("() => window.edgesight.client.stream.welcome.identity")
        assert welcome == "alice"  # the node took the token the web app issued to alice
        assert view.console.errors == []
