"""The inference engine seam and its onnxruntime implementation.

An ``Engine`` takes a uint8 batch [B, 3, H, W] and returns the model's raw ``boxes``
[B, A, 4] and ``scores`` [B, A, C] float32 arrays. It is called from one worker thread,
never from the event loop. Input and output names come from the model card (model.json);
a model whose card fixes the batch at 1 is run one frame at a time.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pyodide_client.model_card import ModelCard, ModelCardError

from . import NodeError

__all__ = ["Engine", "EngineError", "LoadedModel", "OnnxEngine", "file_sha256", "load_model"]

log = logging.getLogger(__name__)

UInt8Array = npt.NDArray[np.uint8]
Float32Array = npt.NDArray[np.float32]


class EngineError(NodeError):
    """The model could not be loaded or run."""


class Engine(Protocol):
    @property
    def provider(self) -> str: ...

    @property
    def device_name(self) -> str: ...

    def infer(self, images: UInt8Array) -> tuple[Float32Array, Float32Array]: ...


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    card: ModelCard


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(model_path: Path) -> LoadedModel:
    """Find the model and its model.json sidecar, and check the file's sha256 against it."""
    if not model_path.is_file():
        raise EngineError(f"model file not found: {model_path}")
    card_path = model_path.with_name("model.json")
    if not card_path.is_file():
        raise EngineError(f"model metadata not found: expected {card_path} beside the model")
    try:
        card = ModelCard.from_json(card_path.read_text(encoding="utf-8"))
    except ModelCardError as exc:
        raise EngineError(f"{card_path}: {exc}") from exc
    actual = file_sha256(model_path)
    if actual != card.sha256:
        raise EngineError(
            f"{model_path}: sha256 is {actual}, but {card_path.name} expects {card.sha256}"
        )
    return LoadedModel(model_path, card)


class OnnxEngine:
    """onnxruntime session; CUDAExecutionProvider when asked for or available, else CPU."""

    def __init__(
        self,
        model_path: Path,
        provider: str = "auto",
        device_id: int = 0,
        intra_op_threads: int = 0,
        card: ModelCard | None = None,
    ) -> None:
        import onnxruntime as ort  # deferred: tests of other modules need not load it

        if card is None:
            card = load_model(model_path).card

        available = ort.get_available_providers()
        has_cuda = "CUDAExecutionProvider" in available
        if provider == "cuda" and not has_cuda:
            raise EngineError(
                "provider 'cuda' requested, but this onnxruntime offers only "
                f"{', '.join(available)}; install the '.[gpu]' extra (onnxruntime-gpu)"
            )
        providers: list[Any] = ["CPUExecutionProvider"]
        if has_cuda and provider in ("auto", "cuda"):
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EngineError(f"onnxruntime could not load {model_path}: {exc}") from exc
        # onnxruntime lists CUDA whenever the GPU build is installed, but builds a CPU-only
        # session when the CUDA libraries fail to load (it logs and falls back): believe
        # the session, not the list (issue 10).
        active = [str(name) for name in self._session.get_providers()]
        if has_cuda and provider in ("auto", "cuda") and "CUDAExecutionProvider" not in active:
            if provider == "cuda":
                raise EngineError(
                    "provider 'cuda' requested and onnxruntime offers it, but the session "
                    f"runs on {', '.join(active)}: the CUDA libraries did not load (see "
                    "onnxruntime's messages above; check the CUDA and cuDNN versions)"
                )
            log.warning(
                "onnxruntime offers CUDA but the session fell back to %s: the CUDA libraries "
                "did not load; this node runs on the CPU",
                ", ".join(active),
            )
        self._provider = active[0]
        self._device_name = f"cuda:{device_id}" if self._provider.startswith("CUDA") else "cpu"
        self._input_name = card.input_name
        self._output_names = [card.boxes_output, card.scores_output]
        self._is_batch_of_one = card.fixed_batch == 1
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != [card.input_name] or not set(self._output_names) <= set(outputs):
            raise EngineError(
                f"{model_path}: model.json names input {card.input_name!r} and outputs "
                f"{self._output_names}, but the model has inputs {inputs} and outputs {outputs}"
            )
        log.info(
            "onnxruntime %s: model %s runs on %s (%s); available providers: %s",
            ort.__version__,
            model_path.name,
            self._provider,
            self._device_name,
            ", ".join(available),
        )

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def device_name(self) -> str:
        return self._device_name

    def infer(self, images: UInt8Array) -> tuple[Float32Array, Float32Array]:
        if self._is_batch_of_one and len(images) != 1:
            parts = [self.infer(images[i : i + 1]) for i in range(len(images))]
            return (
                np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]),
            )
        boxes, scores = self._session.run(self._output_names, {self._input_name: images})
        return boxes, scores
