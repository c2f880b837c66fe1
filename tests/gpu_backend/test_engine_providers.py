"""OnnxEngine reports the execution provider its session really runs on, and refuses
``--provider cuda`` when onnxruntime lists CUDA but the session fell back to the CPU.
A fake onnxruntime stands in: a broken CUDA install cannot be staged on a test machine."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from gpu_backend.engine import EngineError, OnnxEngine
from pyodide_client.model_card import ModelCard

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
CARD = ModelCard.from_json(
    (Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416" / "model.json").read_text()
)


def fake_onnxruntime(available: list[str], session_runs_on: list[str]) -> types.ModuleType:
    """An onnxruntime whose sessions end up on ``session_runs_on``, as the real one does
    when the CUDA libraries are broken (it lists CUDA, then falls back)."""

    class SessionOptions:
        intra_op_num_threads = 0

    class Port:
        def __init__(self, name: str) -> None:
            self.name = name

    class InferenceSession:
        def __init__(self, path: str, sess_options: Any, providers: list[Any]) -> None:
            self.asked = providers

        def get_providers(self) -> list[str]:
            return session_runs_on

        def get_inputs(self) -> list[Port]:
            return [Port(CARD.input_name)]

        def get_outputs(self) -> list[Port]:
            return [Port(CARD.boxes_output), Port(CARD.scores_output)]

    module = types.ModuleType("onnxruntime")
    module.__version__ = "fake"  # type: ignore[attr-defined]
    module.get_available_providers = lambda: available  # type: ignore[attr-defined]
    module.SessionOptions = SessionOptions  # type: ignore[attr-defined]
    module.InferenceSession = InferenceSession  # type: ignore[attr-defined]
    return module


def use(monkeypatch: pytest.MonkeyPatch, available: list[str], runs_on: list[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(available, runs_on))


def test_cuda_that_works_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, [CUDA, CPU], [CUDA, CPU])
    engine = OnnxEngine(Path("m.onnx"), card=CARD, provider="cuda", device_id=1)
    assert (engine.provider, engine.device_name) == (CUDA, "cuda:1")


def test_provider_cuda_refuses_a_session_that_fell_back_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use(monkeypatch, [CUDA, CPU], [CPU])
    with pytest.raises(EngineError, match="the CUDA libraries did not load"):
        OnnxEngine(Path("m.onnx"), card=CARD, provider="cuda")


def test_provider_auto_reports_the_cpu_fallback_truthfully(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use(monkeypatch, [CUDA, CPU], [CPU])
    with caplog.at_level(logging.INFO, logger="gpu_backend.engine"):
        engine = OnnxEngine(Path("m.onnx"), card=CARD, provider="auto")
    assert (engine.provider, engine.device_name) == (CPU, "cpu")  # what /readyz reports
    assert "fell back to CPUExecutionProvider" in caplog.text
    assert "runs on CPUExecutionProvider (cpu)" in caplog.text


def test_provider_cuda_without_cuda_in_onnxruntime_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use(monkeypatch, [CPU], [CPU])
    with pytest.raises(EngineError, match="offers only CPUExecutionProvider"):
        OnnxEngine(Path("m.onnx"), card=CARD, provider="cuda")


def test_provider_cpu_never_asks_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, [CUDA, CPU], [CPU])
    engine = OnnxEngine(Path("m.onnx"), card=CARD, provider="cpu")
    assert engine.provider == CPU
