"""Security headers on every response the web app sends: pages, assets, API, errors."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from webapp.app import create_app
from webapp.headers import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from webapp.settings import WebappSettings

SECRET = "test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(WebappSettings(registry_secret=SECRET)))


def vendor_urls(client: TestClient) -> dict[str, str]:
    html = client.get("/").text
    urls = dict(re.findall(r'"(pyodide_url|ort_url)": "([^"]+)"', html))
    return urls


def every_kind_of_response(client: TestClient) -> list[tuple[str, str]]:
    urls = vendor_urls(client)
    return [
        ("GET", "/"),
        ("GET", "/kiosk"),
        ("GET", "/static/app.js"),
        ("GET", "/static/style.css"),
        ("GET", "/sw.js"),
        ("GET", "/py/pyodide_client.zip"),
        ("GET", "/models/model.json"),
        ("GET", urls["pyodide_url"] + "pyodide.asm.wasm"),
        ("GET", urls["ort_url"] + "ort.wasm.min.mjs"),
        ("GET", "/api/nodes"),
        ("GET", "/healthz"),
        ("GET", "/no/such/page"),
        ("GET", urls["pyodide_url"] + "console.html"),
        ("POST", "/api/nodes/register"),  # 401: no token
        ("DELETE", "/"),  # 405
    ]


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for method, url in every_kind_of_response(client):
        response = client.request(method, url)
        for name, value in SECURITY_HEADERS.items():
            if name != "Cache-Control":
                assert response.headers.get(name) == value, (method, url, name)
        assert response.headers.get("cache-control"), (method, url)


@pytest.mark.parametrize(
    ("url", "cache_control"),
    [
        ("/", "no-cache"),
        ("/kiosk", "no-cache"),
        ("/static/app.js", "no-cache"),
        ("/sw.js", "no-cache"),
        ("/models/model.json", "no-cache"),
        ("/py/pyodide_client.zip", "no-cache"),
        ("/api/nodes", "no-store"),
        ("/healthz", "no-store"),
        ("/no/such/page", "no-store"),
    ],
)
def test_cache_control_is_explicit(client: TestClient, url: str, cache_control: str) -> None:
    assert client.get(url).headers["cache-control"] == cache_control


def test_vendor_files_are_immutable(client: TestClient) -> None:
    urls = vendor_urls(client)
    response = client.get(urls["pyodide_url"] + "pyodide.mjs")
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_the_policy_allows_wasm_and_nodes_anywhere_but_no_eval_nor_framing() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY.replace("'wasm-unsafe-eval'", "")
    assert directives["worker-src"] == "'self'"
    assert directives["connect-src"] == "'self' ws: wss: https:"  # https: WebTransport
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert SECURITY_HEADERS["X-Frame-Options"] == "DENY"
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"


def test_a_header_a_route_sets_itself_is_kept(client: TestClient) -> None:
    assert client.get("/").headers["cache-control"] == "no-cache"  # not the no-store default


def test_the_page_has_no_inline_script_the_policy_would_block(client: TestClient) -> None:
    html = client.get("/").text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    for attributes, body in scripts:
        # a JSON data block is not run, so script-src does not apply to it
        assert 'type="application/json"' in attributes or not body.strip(), attributes
    assert not re.search(r"<[^>]*\sstyle=", html), "inline style attributes"
    assert not re.search(r"<[^>]*\son[a-z]+=", html), "inline event handlers"
