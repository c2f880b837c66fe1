"""The browser runtimes: only the files the page loads are served, each with its type."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from webapp.app import create_app
from webapp.assets import ORT_FILES, PYODIDE_FILES
from webapp.settings import PROJECT_ROOT, WebappSettings

MEDIA_TYPES = {
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".zip": "application/zip",
    ".json": "application/json",
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(WebappSettings()))


@pytest.fixture(scope="module")
def urls(client: TestClient) -> dict[str, str]:
    return dict(re.findall(r'"(pyodide_url|ort_url)": "([^"]+)"', client.get("/").text))


@pytest.mark.parametrize(
    ("base", "name"),
    [("pyodide_url", name) for name in PYODIDE_FILES] + [("ort_url", name) for name in ORT_FILES],
)
def test_each_file_the_page_loads_is_served_with_its_type(
    client: TestClient, urls: dict[str, str], base: str, name: str
) -> None:
    response = client.get(urls[base] + name)
    assert response.status_code == 200
    suffix = name[name.rindex(".") :]
    assert response.headers["content-type"].split(";")[0] == MEDIA_TYPES[suffix]


@pytest.mark.parametrize(
    ("base", "name"),
    [
        ("pyodide_url", "console.html"),  # runs any Python typed into it, on our origin
        ("pyodide_url", "console-v2.html"),
        ("pyodide_url", "pyodide.mjs.map"),
        ("pyodide_url", "pyodide.js.map"),
        ("pyodide_url", "pyodide.d.ts"),
        ("pyodide_url", "ffi.d.ts"),
        ("pyodide_url", "README.md"),
        ("pyodide_url", "package.json"),
        ("pyodide_url", "pyodide.js"),
        ("pyodide_url", "../onnxruntime-web/package.json"),
        ("pyodide_url", "%2e%2e/onnxruntime-web/package.json"),
        ("ort_url", "ort.wasm.min.mjs.map"),
        ("ort_url", "ort.all.min.js"),
        ("ort_url", "ort-wasm-simd-threaded.jsep.wasm"),
        ("ort_url", "../package.json"),
        ("ort_url", ""),
    ],
)
def test_nothing_else_from_node_modules_is_served(
    client: TestClient, urls: dict[str, str], base: str, name: str
) -> None:
    assert client.get(urls[base] + name).status_code == 404


def test_the_files_refused_do_exist_in_node_modules() -> None:
    # otherwise the test above would pass for the wrong reason
    pyodide = PROJECT_ROOT / "node_modules" / "pyodide"
    assert (pyodide / "console.html").is_file()
    assert (pyodide / "pyodide.mjs.map").is_file()
    assert (pyodide / "README.md").is_file()
