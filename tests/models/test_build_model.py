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
        pytest.skip(f"the raw model (from ../shared) is not available at {raw}")
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
