"""Sign-in as a person meets it: the page asks for a user name and password, and once
signed in it detects through a node that takes only the web app's stream tokens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL_PATH, BrowserPage, free_port, start_webapp
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
        server = page.evaluate("() => window.edgesight.api.state().server")
        assert server["identity"] == "alice"  # the node took the token issued to alice
        assert view.console.errors == []


SW_CONTROLS_PAGE = """async () => {
    const reg = await navigator.serviceWorker.ready;
    return Boolean(reg.active) && navigator.serviceWorker.controller !== null;
}"""


def test_signing_out_reaches_the_sign_in_form_even_with_the_page_kept_offline(
    tmp_path: Path, open_page: Callable[..., BrowserPage]
) -> None:
    # issue 18: after sign-out the service worker kept serving the page, and its "sign in
    # again (reload this page)" never reached the form.
    users_file = tmp_path / "users.json"
    users = Users()
    users.set_password("alice", PASSWORD, n=2**10)
    users.save(users_file)
    with start_webapp(
        (f"ws://127.0.0.1:{free_port()}/ws",),  # no node: the page detects by itself
        auth_modes=("users",),
        users_file=users_file,
        token_key_path=tmp_path / "token-key.pem",
    ) as web:
        view = open_page(f"{web.http_url}/", camera="chelsea")
        page = view.page
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as alice")).to_be_visible(timeout=BOOT_TIMEOUT_MS)
        # the service worker keeps the page: the case that used to hide the sign-out
        page.wait_for_function(SW_CONTROLS_PAGE, timeout=BOOT_TIMEOUT_MS)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        page.goto(f"{web.http_url}/")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert "/login" in page.url
        page.reload()
        expect(page.get_by_label("Password")).to_be_visible()

        # a bookmarked /logout asks before it signs out
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as alice")).to_be_visible(timeout=BOOT_TIMEOUT_MS)
        page.goto(f"{web.http_url}/logout")
        page.get_by_role("button", name="Sign out").click()
        page.goto(f"{web.http_url}/")
        expect(page.get_by_label("Password")).to_be_visible()
