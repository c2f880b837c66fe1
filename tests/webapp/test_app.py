"""The web app: the page, its isolation headers, the runtimes and files it serves
(every security header: test_headers.py; which npm files: test_assets.py)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pyodide_client.page_config import PageConfig, PageTiming
from webapp.app import create_app
from webapp.assets import AssetError
from webapp.report import REPORT_INTERVAL_S
from webapp.settings import SettingsError, WebappSettings

ROOT = Path(__file__).resolve().parents[2]
ISOLATED = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
}


@pytest.fixture(scope="module")
def settings() -> WebappSettings:
    return WebappSettings(node_urls=("ws://127.0.0.1:9999/ws", "ws://{hostname}:8001/ws"))


@pytest.fixture(scope="module")
def client(settings: WebappSettings) -> TestClient:
    return TestClient(create_app(settings))


def _page_config(client: TestClient) -> dict[str, object]:
    html = client.get("/").text
    match = re.search(r'<script type="application/json" id="edgesight-config">(.*?)</script>', html)
    assert match, "the page must carry its configuration"
    config: dict[str, object] = json.loads(match.group(1))
    return config


@pytest.mark.parametrize("path", ["/", "/kiosk"])
def test_the_page_config_parses_as_the_page_reads_it(client: TestClient, path: str) -> None:
    """Every key the web app writes is one PageConfig knows (an unknown key raises), and
    the page reads the values the web app meant."""
    html = client.get(path).text
    match = re.search(r'<script type="application/json" id="edgesight-config">(.*?)</script>', html)
    assert match
    given = json.loads(match.group(1))
    config = PageConfig.parse(given)
    assert config.kiosk is (path == "/kiosk")
    assert config.max_in_flight == given["max_in_flight"]
    assert config.model.local is not None
    assert config.model.local_webgpu is not None
    assert config.timing == PageTiming()  # app.js's timers follow Python's numbers


def test_the_report_limit_takes_a_report_every_period_of_the_page() -> None:
    assert PageTiming().report_period_ms >= REPORT_INTERVAL_S * 1000.0


def test_the_web_app_and_the_page_default_alike() -> None:
    """A setting the operator leaves alone means the same on the page as in the web app."""
    webapp, page = WebappSettings(), PageConfig()
    for name in ("max_in_flight", "local_threads", "browser_backend", "frame_encoding"):
        assert getattr(webapp, name) == getattr(page, name), name
    assert webapp.target_fps == page.target_fps
    assert webapp.local_load_deadline_s * 1000.0 == page.local_load_deadline_ms
    assert webapp.score_threshold == page.postprocess.score_threshold
    assert webapp.iou_threshold == page.postprocess.iou_threshold
    assert webapp.cross_class_iou_threshold == page.postprocess.cross_class_iou_threshold


def test_page_is_cross_origin_isolated(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    for name, value in ISOLATED.items():
        assert response.headers[name] == value
    assert '<video id="video"' in response.text


def test_page_carries_node_urls_and_model(client: TestClient, settings: WebappSettings) -> None:
    config = _page_config(client)
    assert config["node_urls"] == list(settings.node_urls)
    model = config["model"]
    assert isinstance(model, dict)
    card = json.loads((settings.model_dir / "model.json").read_text())
    assert model["sha256"] == card["sha256"]


def test_runtimes_are_served_locally_with_long_caching(client: TestClient) -> None:
    config = _page_config(client)
    for base, name in (
        (config["pyodide_url"], "pyodide.mjs"),
        (config["ort_url"], "ort.wasm.min.mjs"),
    ):
        assert isinstance(base, str)
        assert base.startswith("/vendor/")
        response = client.get(f"{base}{name}")
        assert response.status_code == 200
        assert "immutable" in response.headers["cache-control"]
        assert response.headers["cross-origin-embedder-policy"] == "require-corp"
        assert response.headers["cross-origin-resource-policy"] == "same-origin"


def test_python_client_package_is_served_as_a_zip(client: TestClient) -> None:
    response = client.get("/py/pyodide_client.zip")
    names = set(zipfile.ZipFile(io.BytesIO(response.content)).namelist())
    expected = {f"pyodide_client/{p.name}" for p in (ROOT / "pyodide_client").glob("*.py")}
    assert expected <= names
    assert "pyodide_client/protocol.py" in names


def test_model_and_its_card_are_served(client: TestClient, settings: WebappSettings) -> None:
    card = client.get("/models/model.json").json()
    model = client.get(f"/models/{card['file']}")
    assert model.status_code == 200
    assert hashlib.sha256(model.content).hexdigest() == card["sha256"]


def test_missing_npm_runtimes_say_how_to_install(settings: WebappSettings, tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="npm ci"):
        create_app(replace(settings, vendor_dir=tmp_path))


def test_page_gets_the_operator_s_thresholds() -> None:
    settings = WebappSettings.from_env(
        {
            "EDGESIGHT_SCORE_THRESHOLD": "0.5",
            "EDGESIGHT_IOU_THRESHOLD": "0.45",
            "EDGESIGHT_CROSS_CLASS_IOU_THRESHOLD": "0.8",
        }
    )
    config = _page_config(TestClient(create_app(settings)))
    assert config["postprocess"] == {
        "score_threshold": 0.5,
        "iou_threshold": 0.45,
        "cross_class_iou_threshold": 0.8,
    }
    with pytest.raises(SettingsError, match="EDGESIGHT_CROSS_CLASS_IOU_THRESHOLD"):
        WebappSettings.from_env({"EDGESIGHT_CROSS_CLASS_IOU_THRESHOLD": "0"})
    with pytest.raises(SettingsError, match="EDGESIGHT_SCORE_THRESHOLD"):
        WebappSettings.from_env({"EDGESIGHT_SCORE_THRESHOLD": "1.5"})
    with pytest.raises(SettingsError, match="EDGESIGHT_IOU_THRESHOLD"):
        WebappSettings.from_env({"EDGESIGHT_IOU_THRESHOLD": "high"})


def test_page_gets_the_operator_s_frame_encoding() -> None:
    assert WebappSettings().frame_encoding == "auto"
    settings = WebappSettings.from_env({"EDGESIGHT_FRAME_ENCODING": "webp"})
    assert _page_config(TestClient(create_app(settings)))["frame_encoding"] == "webp"
    fps = WebappSettings.from_env({"EDGESIGHT_TARGET_FPS": "12.5"})
    assert _page_config(TestClient(create_app(fps)))["target_fps"] == 12.5
    with pytest.raises(SettingsError, match="EDGESIGHT_TARGET_FPS"):
        WebappSettings.from_env({"EDGESIGHT_TARGET_FPS": "0"})
    with pytest.raises(SettingsError) as info:
        WebappSettings.from_env({"EDGESIGHT_FRAME_ENCODING": "png"})
    assert str(info.value) == (
        "EDGESIGHT_FRAME_ENCODING (frame_encoding): expected one of auto, raw, jpeg, webp, "
        "got 'png'"
    )


def test_a_kiosk_gets_its_loop_source_and_in_view_setting(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    settings = WebappSettings.from_env(
        {"EDGESIGHT_KIOSK_SOURCE": str(loop), "EDGESIGHT_KIOSK_IN_VIEW": "yes"}
    )
    client = TestClient(create_app(settings))
    kiosk = client.get("/kiosk").text
    assert '"kiosk_source_url": "/kiosk/source"' in kiosk
    assert '"kiosk_in_view": true' in kiosk
    assert client.get("/kiosk/source").content == loop.read_bytes()
    assert "kiosk_source_url" not in client.get("/").text  # only the kiosk loops it
    worker = client.get("/sw.js").text
    assert '"/kiosk/source"' in worker  # kept for an offline reboot


def test_kiosk_settings_name_their_keys(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="EDGESIGHT_KIOSK_SOURCE"):
        WebappSettings.from_env({"EDGESIGHT_KIOSK_SOURCE": str(tmp_path / "missing.mp4")})
    with pytest.raises(SettingsError, match="EDGESIGHT_KIOSK_IN_VIEW"):
        WebappSettings.from_env({"EDGESIGHT_KIOSK_IN_VIEW": "perhaps"})
    assert WebappSettings().kiosk_source is None


def test_nothing_serves_an_unused_config_document(client: TestClient) -> None:
    assert client.get("/api/config").status_code == 404


def test_settings_come_from_the_environment_and_name_bad_keys() -> None:
    settings = WebappSettings.from_env(
        {"EDGESIGHT_PORT": "9000", "EDGESIGHT_NODE_URLS": "ws://a:2/ws, wss://b/ws"}
    )
    assert settings.port == 9000
    assert settings.node_urls == ("ws://a:2/ws", "wss://b/ws")
    with pytest.raises(SettingsError, match="EDGESIGHT_PORT"):
        WebappSettings.from_env({"EDGESIGHT_PORT": "eighty"})
    with pytest.raises(SettingsError, match="EDGESIGHT_NODE_URLS"):
        WebappSettings.from_env({"EDGESIGHT_NODE_URLS": "http://a/ws"})


def test_a_model_that_does_not_match_its_card_is_reported_at_start(
    settings: WebappSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = json.loads((settings.model_dir / "model.json").read_text())
    (tmp_path / card["file"]).write_bytes(b"not the model")
    (tmp_path / "model.json").write_text(json.dumps(card))
    with caplog.at_level("WARNING", logger="webapp.site"):
        create_app(replace(settings, model_dir=tmp_path))
    assert "browsers will refuse to run it locally" in caplog.text
    assert card["sha256"] in caplog.text


def test_kiosk_page_and_service_worker(client: TestClient) -> None:
    kiosk = client.get("/kiosk")
    assert kiosk.status_code == 200
    assert '"kiosk": true' in kiosk.text
    worker = client.get("/sw.js")
    assert worker.headers["content-type"].startswith("text/javascript")
    assert "__EDGESIGHT_MANIFEST__" not in worker.text
    manifest = json.loads(worker.text.split("const MANIFEST = ", 1)[1].split(";\n", 1)[0])
    for url in ("/", "/kiosk", "/models/model.json", "/static/app.js", "/static/local-worker.js"):
        assert url in manifest["urls"]
    assert any(url.endswith("pyodide.asm.wasm") for url in manifest["urls"])
    assert all(client.get(url).status_code == 200 for url in manifest["urls"])


def test_page_gets_the_browser_backend_and_both_local_models(client: TestClient) -> None:
    # issue 20: WebGPU runs the float model, Wasm the variant the web app offers
    config = _page_config(client)
    assert config["browser_backend"] == "auto"
    assert config["local_load_deadline_ms"] == 30_000.0
    model = config["model"]
    assert isinstance(model, dict)
    webgpu = model["local_webgpu"]
    assert (webgpu["url"], webgpu["sha256"], webgpu["variant_of"]) == (
        model["url"],
        model["sha256"],
        None,
    )
    assert webgpu["io"] == model["local"]["io"]
    pinned = WebappSettings.from_env(
        {"EDGESIGHT_BROWSER_BACKEND": "wasm", "EDGESIGHT_LOCAL_LOAD_DEADLINE_S": "5"}
    )
    config = _page_config(TestClient(create_app(pinned)))
    assert (config["browser_backend"], config["local_load_deadline_ms"]) == ("wasm", 5000.0)


def test_browser_backend_settings_name_their_keys() -> None:
    with pytest.raises(SettingsError) as info:
        WebappSettings.from_env({"EDGESIGHT_BROWSER_BACKEND": "cuda"})
    assert str(info.value) == (
        "EDGESIGHT_BROWSER_BACKEND (browser_backend): expected one of auto, webgpu, wasm, "
        "got 'cuda'"
    )
    with pytest.raises(SettingsError, match="EDGESIGHT_LOCAL_LOAD_DEADLINE_S"):
        WebappSettings.from_env({"EDGESIGHT_LOCAL_LOAD_DEADLINE_S": "0"})
    with pytest.raises(SettingsError, match="EDGESIGHT_LOCAL_LOAD_DEADLINE_S: expected a number"):
        WebappSettings.from_env({"EDGESIGHT_LOCAL_LOAD_DEADLINE_S": "soon"})


def test_the_webgpu_build_is_served_but_not_kept_offline(client: TestClient) -> None:
    config = _page_config(client)
    base = config["ort_url"]
    assert isinstance(base, str)
    worker = client.get("/sw.js").text
    for name in ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs"):
        response = client.get(f"{base}{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert f'"{base}{name}"' not in worker  # 27 MB a kiosk does not need offline
    assert f'"{base}ort.wasm.min.mjs"' in worker
    # the JSEP build (ort.all's) and the other bundles stay unserved
    assert client.get(f"{base}ort-wasm-simd-threaded.jsep.wasm").status_code == 404
    assert client.get(f"{base}ort.all.min.mjs").status_code == 404
