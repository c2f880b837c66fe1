"""The page from another machine (issue 8): a non-localhost origin over https, a node over
wss, and the same page over plain http from that name.

Chromium resolves ``edgesight.test`` to 127.0.0.1 (``--host-resolver-rules``), so the
origin is not localhost and gets no secure-context exemption. It trusts the test CA made by
``edgesight certs`` through ``--ignore-certificate-errors-spki-list`` with the CA's SPKI
hash only (not a blanket ignore). Chromium matches that list against the certificates the
server presents, so this works because ``edgesight certs`` serves the CA after the leaf
(a leaf-only chain is refused with ERR_CERT_AUTHORITY_INVALID; checked by hand).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CHROMIUM_ARGS, MODEL_PATH, camera_args
from page_state import LOCAL_READY
from playwright.sync_api import Browser, Page, Playwright, expect

from edgesight.certs import Issued, issue, spki_sha256
from edgesight.serving import ServerThread
from edgesight.tls import server_context
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings

pytestmark = pytest.mark.e2e

HOST = "edgesight.test"
# A plain node URL listed next to the wss one: an https page must skip it and say so.
WS_NODE_URL = f"ws://{HOST}:65001/ws"
BOOT_TIMEOUT_MS = 90_000

NODE_CAT_DRAWN = """() => {
    const drawn = window.edgesight?.api.lastDetections;  // docs/page-api.md
    return Boolean(drawn && drawn.where === "server" && drawn.objects.some(o => o.label === "cat"));
}"""


@dataclass
class TlsStack:
    issued: Issued
    node: ServerThread
    web: ServerThread
    plain_web: ServerThread  # the same web app over plain http

    def https(self, path: str) -> str:
        return f"https://{HOST}:{self.web.port}{path}"

    def http(self, path: str) -> str:
        return f"http://{HOST}:{self.plain_web.port}{path}"


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    issued = issue(tmp_path_factory.mktemp("tls") / "certs", [HOST])
    settings = NodeSettings(
        port=0,
        model_path=MODEL_PATH,
        node_name="tls-node",
        # the pages of both web apps below (their ports are chosen after the node's)
        allowed_origins=(f"https://{HOST}:*", f"http://{HOST}:*"),
    )
    node = ServerThread(
        create_node_app(settings),
        max_message_bytes=settings.max_message_bytes,
        ssl_context=server_context(issued.cert, issued.key),
    )
    with node:
        node_url = f"wss://{{hostname}}:{node.port}/ws"
        web_settings = WebappSettings(
            port=0, node_urls=(node_url, WS_NODE_URL), tls_cert=issued.cert, tls_key=issued.key
        )
        web = ServerThread(
            create_webapp(web_settings), ssl_context=server_context(issued.cert, issued.key)
        )
        plain = ServerThread(create_webapp(WebappSettings(port=0, node_urls=(node_url,))))
        with web, plain:
            yield TlsStack(issued, node, web, plain)


@pytest.fixture(scope="module")
def browser(
    playwright_driver: Playwright, chromium_path: str, cameras: dict[str, Path], tls_stack: TlsStack
) -> Iterator[Browser]:
    ca_spki = spki_sha256(tls_stack.issued.ca_cert.read_bytes())
    args = [
        *CHROMIUM_ARGS,
        *camera_args(cameras["chelsea"]),
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={ca_spki}",
    ]
    launched = playwright_driver.chromium.launch(executable_path=chromium_path, args=args)
    yield launched
    launched.close()


def _page(browser: Browser) -> tuple[Page, list[str]]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return page, errors


def test_https_on_a_lan_name_gets_camera_isolation_worker_and_node_labels(
    browser: Browser, tls_stack: TlsStack
) -> None:
    page, errors = _page(browser)
    page.goto(tls_stack.https("/"))
    page.wait_for_function(NODE_CAT_DRAWN, timeout=BOOT_TIMEOUT_MS)

    assert page.evaluate("location.hostname") == HOST
    assert page.evaluate("isSecureContext") is True
    assert page.evaluate("crossOriginIsolated") is True
    assert page.evaluate("document.getElementById('video').srcObject !== null")  # the camera
    expect(page.locator('#detections li[data-label="cat"]').first).to_be_visible()
    expect(page.locator("#badge")).to_have_text("Detecting on server tls-node")
    page.wait_for_function(
        """async () => {
            const reg = await navigator.serviceWorker.ready;
            return reg.active !== null && reg.scope === location.origin + "/";
        }""",
        timeout=BOOT_TIMEOUT_MS,
    )
    # the ws:// node is not tried, and the page says why instead of failing silently
    message = page.locator("#message")
    expect(message).to_contain_text(f"node {WS_NODE_URL} is not used: this page is https")
    expect(message).not_to_contain_text("needs https")

    page.goto(tls_stack.https("/kiosk"))
    page.wait_for_function(NODE_CAT_DRAWN, timeout=BOOT_TIMEOUT_MS)
    assert page.evaluate("document.body.classList.contains('kiosk')")
    assert page.evaluate("crossOriginIsolated") is True
    expect(page.locator("#badge")).to_have_text("Detecting on server tls-node")
    assert errors == []
    page.close()


def test_plain_http_on_a_lan_name_says_it_needs_https(
    browser: Browser, tls_stack: TlsStack
) -> None:
    page, errors = _page(browser)
    page.goto(tls_stack.http("/"))

    message = page.locator("#message")
    expect(message).to_contain_text("This page needs https", timeout=BOOT_TIMEOUT_MS)
    expect(message).to_contain_text(f"https://{HOST}:{tls_stack.plain_web.port}/")
    expect(message).to_contain_text("Use it from other machines")
    assert page.evaluate("isSecureContext") is False
    # Local detection still starts (the model is checked by Python's hashlib, not WebCrypto)
    page.wait_for_function(LOCAL_READY, timeout=BOOT_TIMEOUT_MS)
    assert "Cannot read properties" not in message.inner_text()
    assert not [e for e in errors if "Cannot read properties" in e]
    page.close()
