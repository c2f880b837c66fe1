"""scripts/build_model.py rebuilds the committed product model byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.test_product_model import MODEL_DIR, RAW_DEFAULT

ROOT = Path(__file__).resolve().parents[2]


def test_the_build_script_reproduces_the_committed_model(tmp_path: Path) -> None:
    raw = Path(os.environ.get("EDGESIGHT_RAW_MODEL", RAW_DEFAULT))
    if not raw.is_file():
        pytest.skip(f"the raw model is not at {raw}: run scripts/build_raw_model.py")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_model.py"),
            "--raw",
            str(raw),
            "--out-dir",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    for name in ("nanodet-g-416.onnx", "model.json"):
        assert (tmp_path / name).read_bytes() == (MODEL_DIR / name).read_bytes(), name


def test_names_invented_by_the_converter_do_not_change_the_product_model() -> None:
    # Given the committed product model with every raw name scrambled the way another
    # tf2onnx run (another hash seed) would number them, and its weights listed in another order
    sys.path.insert(0, str(ROOT / "scripts"))
    import onnx
    from build_model import canonical_names

    committed = onnx.load(str(MODEL_DIR / "nanodet-g-416.onnx"))
    scrambled = onnx.ModelProto()
    scrambled.CopyFrom(committed)
    graph = scrambled.graph
    rename = {}
    for i, node in enumerate(graph.node):
        for name in [*node.input, *node.output]:
            if name.startswith("raw/") and name not in rename:
                rename[name] = f"PartitionedCall/Where_{(i * 7919) % 1009}__{len(rename)}:0"
        if node.name.startswith("raw/"):
            node.name = f"PartitionedCall/op__{(i * 31) % 97}_{i}"
    for node in graph.node:
        node.input[:] = [rename.get(t, t) for t in node.input]
        node.output[:] = [rename.get(t, t) for t in node.output]
    weights = list(reversed(graph.initializer))
    for weight in weights:
        weight.name = rename.get(weight.name, weight.name)
    del graph.initializer[:]
    graph.initializer.extend(weights)
    assert scrambled.SerializeToString() != committed.SerializeToString()

    # When the build's renaming runs on it
    canonical_names(graph)

    # Then it is the committed model again, byte for byte
    assert (
        scrambled.SerializeToString(deterministic=True)
        == (MODEL_DIR / "nanodet-g-416.onnx").read_bytes()
    )
