"""Which file the in-browser fallback runs: the served model, or its INT8 variant when the
variant's own report says it agrees and is faster in onnxruntime-web."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from pyodide_client.model_card import ModelCard
from webapp.app import create_app
from webapp.model_files import MIN_WASM_SPEEDUP, choose_local_model
from webapp.settings import WebappSettings

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416" / "model.json"
FLOAT_BYTES = b"float model bytes"
INT8_BYTES = b"int8 model bytes"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_dir(tmp_path: Path, **variant: Any) -> Path:
    """A model folder with a (fake) float model and, unless variant is None, an int8/ one."""
    folder = tmp_path / "model"
    folder.mkdir()
    card = json.loads(SHIPPED.read_text())
    card.update(file="m.onnx", sha256=_sha(FLOAT_BYTES))
    (folder / "m.onnx").write_bytes(FLOAT_BYTES)
    (folder / "model.json").write_text(json.dumps(card))
    if variant.pop("absent", False):
        return folder
    (folder / "int8").mkdir()
    (folder / "int8" / "m-int8.onnx").write_bytes(INT8_BYTES)
    int8 = {
        **card,
        "name": "m-int8",
        "file": "m-int8.onnx",
        "sha256": _sha(INT8_BYTES),
        "provenance": {"quantized_from_sha256": variant.get("source", card["sha256"])},
        "quantization": {
            "agreement": {"passes": variant.get("passes", True)},
            "speed": {"wasm_2_threads_speedup": variant.get("speedup", 1.5)},
        },
    }
    (folder / "int8" / "model.json").write_text(json.dumps(int8))
    return folder


def choose(folder: Path) -> Any:
    card = ModelCard.from_json((folder / "model.json").read_text())
    return choose_local_model(folder, card)


def test_without_a_variant_the_served_model_runs_locally(tmp_path: Path) -> None:
    local = choose(model_dir(tmp_path, absent=True))
    assert (local.card.file, local.variant_of) == ("m.onnx", None)


def test_a_faster_agreeing_variant_is_offered(tmp_path: Path) -> None:
    local = choose(model_dir(tmp_path))
    assert local.card.file == "m-int8.onnx"
    assert local.variant_of == _sha(FLOAT_BYTES)
    assert local.page_config()["sha256"] == _sha(INT8_BYTES)


@pytest.mark.parametrize(
    "variant",
    [
        {"passes": False},
        {"speedup": MIN_WASM_SPEEDUP - 0.01},
        {"speedup": None},
        {"source": "ab" * 32},
    ],
    ids=["disagrees", "not-faster", "unmeasured", "other-model"],
)
def test_a_variant_without_its_case_is_not_offered(tmp_path: Path, variant: Any) -> None:
    local = choose(model_dir(tmp_path, **variant))
    assert local.card.file == "m.onnx"


def test_the_page_fetches_and_checks_the_variant(tmp_path: Path) -> None:
    folder = model_dir(tmp_path)
    client = TestClient(create_app(WebappSettings(node_urls=("ws://a:8001/ws",), model_dir=folder)))
    html = client.get("/").text
    match = re.search(r'<script type="application/json" id="edgesight-config">(.*?)</script>', html)
    assert match
    model = json.loads(match.group(1))["model"]
    # nodes and the page's card keep the float model; the fallback fetches the variant
    assert model["sha256"] == _sha(FLOAT_BYTES)
    local = model["local"]
    assert (local["sha256"], local["variant_of"]) == (_sha(INT8_BYTES), _sha(FLOAT_BYTES))
    assert local["io"] == {
        "input": "images",
        "width": 416,
        "height": 416,
        "boxes": "boxes",
        "scores": "scores",
    }
    assert client.get(local["url"]).content == INT8_BYTES
    assert client.get("/models/m.onnx").content == FLOAT_BYTES


@pytest.mark.parametrize("path", ["/", "/kiosk"])
def test_the_footer_names_the_variant_the_browser_runs(tmp_path: Path, path: str) -> None:
    """Seen in the round-5 pictures: the footer named only the float model while the
    in-browser engine ran its INT8 variant (Details named it right)."""
    settings = WebappSettings(node_urls=("ws://a:8001/ws",), model_dir=model_dir(tmp_path))
    html = TestClient(create_app(settings)).get(path).text
    footer = re.search(r"<footer>(.*?)</footer>", html)
    assert footer
    float_sha, int8_sha = _sha(FLOAT_BYTES)[:12], _sha(INT8_BYTES)[:12]
    assert f"sha256 {float_sha}…); in the browser its INT8 variant (sha256 {int8_sha}…)" in (
        footer.group(1)
    )


def test_without_a_variant_the_footer_names_one_model(tmp_path: Path) -> None:
    settings = WebappSettings(
        node_urls=("ws://a:8001/ws",), model_dir=model_dir(tmp_path, absent=True)
    )
    footer = re.search(r"<footer>(.*?)</footer>", TestClient(create_app(settings)).get("/").text)
    assert footer
    assert "INT8" not in footer.group(1)
