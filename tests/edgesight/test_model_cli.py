"""`edgesight model import|quantize`: what a person types and reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.edgesight.test_model_import import C, detector, names_file, save


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgesight", "model", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


@pytest.mark.parametrize("command", ["import", "quantize"])
def test_help(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0
    assert "--out" in result.stdout


def test_import_writes_the_model_and_says_how_to_serve_it(tmp_path: Path) -> None:
    raw = np.zeros((1, 4 + C, 4), np.float32)
    source = save(tmp_path, detector(raw))
    names = names_file(tmp_path)
    result = _run("import", str(source), "--names", str(names), "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    assert "yolov8, 3 classes, input 48x32, batch any" in result.stdout
    assert f"--model {tmp_path / 'm' / 'det.onnx'}" in result.stdout
    assert json.loads((tmp_path / "m" / "model.json").read_text())["classes"] == [
        "cat",
        "dog",
        "fall",
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("import", "/nowhere/x.onnx", "--out", "OUT"), "model file not found: /nowhere/x.onnx"),
        (("import", "x.onnx", "--imgsz", "big"), "expected HEIGHT,WIDTH or SIZE, got 'big'"),
        (("import", "x.onnx", "--family", "ssd"), "invalid choice: 'ssd'"),
        (("quantize", "/nowhere", "--calibration", "/x"), "model metadata not found"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    result = _run(*[a.replace("OUT", str(tmp_path / "o")) for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr.strip().splitlines()[-1]  # after argparse's usage
    assert "Traceback" not in result.stderr
