"""The service worker's manifest: what it keeps, and a version that follows content."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.offline import OfflineManifest, service_worker_script


def _static(tmp_path: Path, app_js: str) -> Path:
    folder = tmp_path / "static"
    folder.mkdir(exist_ok=True)
    (folder / "app.js").write_text(app_js)
    (folder / "sw.js").write_text("const MANIFEST = __EDGESIGHT_MANIFEST__;\n")
    return folder


def _manifest(
    static_dir: Path, client_zip: bytes = b"zip", model_sha: str = "ab", config: bytes = b"{}"
) -> OfflineManifest:
    return OfflineManifest.build(
        static_dir,
        pages={"/": b"<html>" + config, "/kiosk": b"<html>kiosk" + config},
        documents={"/py/pyodide_client.zip": client_zip},
        vendor_urls=("/vendor/pyodide-1/pyodide.mjs",),
        model_url="/models/m.onnx",
        model_sha256=model_sha,
    )


def test_manifest_keeps_pages_documents_static_runtimes_and_model(tmp_path: Path) -> None:
    manifest = _manifest(_static(tmp_path, "one"))
    assert manifest.urls == (
        "/",
        "/kiosk",
        "/py/pyodide_client.zip",
        "/static/app.js",
        "/vendor/pyodide-1/pyodide.mjs",
        "/models/m.onnx",
    )
    assert "/static/sw.js" not in manifest.urls


def test_version_changes_with_any_kept_content(tmp_path: Path) -> None:
    static = _static(tmp_path, "one")
    base = _manifest(static).version
    assert _manifest(static).version == base
    assert _manifest(static, client_zip=b"zip2").version != base
    assert _manifest(static, model_sha="cd").version != base
    assert _manifest(static, config=b'{"node_urls": []}').version != base
    _static(tmp_path, "two")
    assert _manifest(static).version != base


def test_script_gets_the_manifest_and_refuses_a_template_without_placeholder(
    tmp_path: Path,
) -> None:
    static = _static(tmp_path, "one")
    manifest = _manifest(static)
    assert manifest.version in service_worker_script(static, manifest)
    (static / "sw.js").write_text("no placeholder")
    with pytest.raises(ValueError, match="__EDGESIGHT_MANIFEST__"):
        service_worker_script(static, manifest)


def test_one_cache_serves_pages_scripts_and_the_python_bundle_alike() -> None:
    # Version skew (issue 10): no URL may be network-first while another is cache-first.
    script = (Path(__file__).resolve().parents[2] / "static" / "sw.js").read_text()
    assert "networkFirst" not in script
    assert "network_first" not in script
    assert "cacheName: CACHE" in script
