"""The page's in-browser engine glue, sans-I/O: what JavaScript's onnxruntime-web worker
is told and what its answers become.

``LocalPath`` wraps ``local.LocalEngine`` (the letterbox, the in-flight frames and the
post-processing) with what comes from the page's config: the operator's thresholds, a
fixed Wasm thread count, the INT8 variant the web app may offer in place of the
node's model, and which backend runs it (``backend_choice.py``: WebGPU or Wasm, by
measurement unless pinned). The page's reports about it reach it through
``local_steps.LocalSteps``.
"""

from __future__ import annotations

from typing import Any

from .backend_choice import BackendChoice
from .local import LocalEngine, LocalError, LocalResult, LocalState
from .model_card import ModelCard
from .page_config import PageConfig
from .preprocess import Letterbox

__all__ = ["LocalPath"]


class LocalPath:
    """The local engine as the page config describes it."""

    def __init__(self, card: ModelCard, config: PageConfig) -> None:
        self.card = card
        self.threads = config.local_threads  # 0: decide from the page
        # An INT8 variant the web app offers for local detection: (its sha256, the sha256 of
        # the model it was quantised from); webapp/model_files.py decides.
        local = config.model.local
        # The name of the file the browser runs (the INT8 variant's, when offered).
        self.model_name = (local.name if local else "") or card.name
        self.variant: tuple[str, str] | None = (
            (local.sha256, local.variant_of) if local is not None and local.variant_of else None
        )
        # The operator's thresholds (EDGESIGHT_SCORE_THRESHOLD, ...), so that the boxes
        # drawn do not depend on where detection runs.
        self.engine = LocalEngine(card, config.postprocess)
        self.tensor = bytearray()  # the last encode()'s; reused by the next one
        self.choice = BackendChoice(
            config.browser_backend, self.threads, config.local_load_deadline_ms
        )
        self._sample_box: Letterbox | None = None

    # -- choosing the backend (backend_choice.py) ------------------------------------------------
    def begin(
        self, is_cross_origin_isolated: bool, hardware_concurrency: int, webgpu_problem: str
    ) -> None:
        self.engine.state = LocalState.LOADING
        self.choice.begin(is_cross_origin_isolated, hardware_concurrency, webgpu_problem)

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        """Bring the engine in line with a step of ``choice`` before the page acts on it."""
        if step["do"] == "use":
            running = self.choice.running
            assert running is not None
            self.engine.switched(running.backend, running.threads)
        elif step["do"] == "fail":
            self.engine.failed(step["message"])
            step = {**step, "message": self.engine.problem}  # what the page shows
        elif step["do"] == "drop" and self.choice.running is None:
            self.engine.reloading()
        self.engine.backend_note = self.choice.note
        self.engine.standby = self.choice.standby.key if self.choice.standby else ""
        return step

    def sample(self, rgba: bytes | bytearray | memoryview, width_px: int, height_px: int) -> bytes:
        """A camera frame letterboxed for a warm-up run (not a frame in flight)."""
        box = self._sample_box = Letterbox.reuse(
            self._sample_box,
            width_px,
            height_px,
            self.card.input_width_px,
            self.card.input_height_px,
        )
        return bytes(box.fill(rgba))

    def start(self, is_cross_origin_isolated: bool, hardware_concurrency: int) -> int:
        """The page starts loading the local engine; returns the Wasm thread count."""
        threads = self.engine.start_loading(is_cross_origin_isolated, hardware_concurrency)
        if self.threads and (is_cross_origin_isolated or self.threads == 1):
            threads = self.engine.threads = self.threads
        return threads

    def check_model(self, actual_sha256: str) -> str:
        """'' when the downloaded model may run, else a message for the page. The model
        must be the one the web app describes (nodes must serve it too)."""
        try:
            self.engine.check_model(actual_sha256, self.card.sha256, self.variant)
        except LocalError as exc:
            return str(exc)
        return ""

    def encode(
        self,
        rgba: bytes | bytearray | memoryview,
        width_px: int,
        height_px: int,
        capture_ms: float,
        now_ms: float,
    ) -> int:
        """Letterbox a frame for the worker; returns its id. ``tensor`` holds it."""
        frame_id, self.tensor = self.engine.encode(rgba, width_px, height_px, capture_ms, now_ms)
        return frame_id

    def on_output(
        self,
        frame_id: int,
        boxes: bytes | bytearray | memoryview,
        scores: bytes | bytearray | memoryview,
        inference_ms: float,
        now_ms: float,
    ) -> LocalResult | None:
        """The worker's answer for ``frame_id``; None for a frame the page forgot."""
        return self.engine.on_output(frame_id, boxes, scores, inference_ms, now_ms)
