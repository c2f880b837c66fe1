"""In-browser inference (the fallback when no node answers, or every node misses its
latency objective and the browser is faster: routing.py), sans-I/O.

The page runs the same model file with onnxruntime-web in a Web Worker. This object makes
the decisions around it: whether the downloaded model is the one the node announced (its
sha256), how many Wasm threads to ask for, which frames are in flight locally, and turning
the raw ``boxes`` / ``scores`` outputs into detections with the same post-processing the
node uses (``postprocess.select``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .model_card import ModelCard
from .postprocess import FrameBox, PostprocessSettings, select, to_frame
from .preprocess import Geometry, Letterbox

__all__ = ["LocalEngine", "LocalError", "LocalResult", "LocalState", "wasm_threads"]

MAX_WASM_THREADS = 4


class LocalError(Exception):
    """Local inference cannot be used; the message is meant for the page."""


class LocalState(enum.Enum):
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    READY = "ready"
    REFUSED = "refused"  # the model file failed its check; never run it
    FAILED = "failed"  # the runtime failed to start


def wasm_threads(is_cross_origin_isolated: bool, hardware_concurrency: int) -> int:
    """onnxruntime-web can use threads only on a cross-origin-isolated page; the first
    session fixes the count for the page, so choose once."""
    if not is_cross_origin_isolated:
        return 1
    return max(1, min(MAX_WASM_THREADS, hardware_concurrency))


@dataclass(frozen=True)
class LocalResult:
    frame_id: int
    boxes: tuple[FrameBox, ...]
    capture_ms: float
    round_trip_ms: float  # handed to the worker -> outputs back
    inference_ms: float


@dataclass(frozen=True)
class _InFlight:
    geometry: Geometry
    capture_ms: float
    sent_ms: float


class LocalEngine:
    def __init__(self, card: ModelCard, postprocess: PostprocessSettings) -> None:
        self.card = card
        self.postprocess = postprocess
        self.state = LocalState.NOT_LOADED
        self.threads = 1
        self.backend = "wasm"  # or "webgpu": where the worker running frames runs them
        self.backend_note = ""  # why that backend, in words (backend_choice.py)
        self.standby = ""  # the key of a loaded, idle Wasm worker beside it ("" none)
        self.problem = ""
        self._letterbox: Letterbox | None = None
        self._in_flight: dict[int, _InFlight] = {}
        self._next_frame_id = 1

    # -- loading ---------------------------------------------------------------------------
    def start_loading(self, is_cross_origin_isolated: bool, hardware_concurrency: int) -> int:
        """Returns the thread count to create the session with."""
        self.state = LocalState.LOADING
        self.threads = wasm_threads(is_cross_origin_isolated, hardware_concurrency)
        return self.threads

    def check_model(
        self,
        actual_sha256: str,
        expected_sha256: str,
        variant: tuple[str, str] | None = None,
    ) -> None:
        """Refuse a downloaded model whose sha256 is not the expected one. ``variant``:
        (sha256, sha256 of the model it was quantised from) of an INT8 variant the web app
        offers; it may run in place of that model only."""
        actual, expected = actual_sha256.lower(), expected_sha256.lower()
        if variant is not None and (actual, expected) == (variant[0].lower(), variant[1].lower()):
            return
        if actual != expected:
            self.state = LocalState.REFUSED
            self.problem = (
                f"The model file for local detection is not the expected one "
                f"(sha256 {actual[:12]}…, expected {expected[:12]}…); local detection is "
                "off until the right file is served."
            )
            raise LocalError(self.problem)

    def loaded(self) -> None:
        if self.state is LocalState.LOADING:
            self.state = LocalState.READY

    def switched(self, backend: str, threads: int) -> None:
        """Frames go to another worker from now on (backend_choice.py): the frames still
        on the one it replaces will not be answered."""
        self.backend, self.threads = backend, threads
        self._in_flight.clear()
        if self.state in (LocalState.LOADING, LocalState.FAILED):
            self.state, self.problem = LocalState.READY, ""

    def reloading(self) -> None:
        """The running worker is gone and another one loads: no frames meanwhile."""
        self._in_flight.clear()
        if self.state is LocalState.READY:
            self.state = LocalState.LOADING

    def failed(self, reason: str) -> None:
        if self.state is not LocalState.REFUSED:
            self.state = LocalState.FAILED
            self.problem = f"Local detection could not start: {reason}"

    # -- frames ----------------------------------------------------------------------------
    @property
    def is_ready(self) -> bool:
        return self.state is LocalState.READY

    def can_run(self) -> bool:
        return self.is_ready and not self._in_flight

    def encode(
        self,
        rgba: bytes | bytearray | memoryview,
        width_px: int,
        height_px: int,
        capture_ms: float,
        now_ms: float,
    ) -> tuple[int, bytearray]:
        """Letterbox a frame for the worker: returns (frame id, uint8 CHW tensor)."""
        if not self.can_run():
            raise LocalError(f"local inference is not ready for a frame (state {self.state.value})")
        box = self._letterbox = Letterbox.reuse(
            self._letterbox,
            width_px,
            height_px,
            self.card.input_width_px,
            self.card.input_height_px,
        )
        frame_id = self._next_frame_id
        self._next_frame_id += 1
        self._in_flight[frame_id] = _InFlight(box.geometry, capture_ms, now_ms)
        return frame_id, box.fill(rgba)

    def forget(self, frame_id: int) -> None:
        """The worker failed on this frame."""
        self._in_flight.pop(frame_id, None)

    def on_output(
        self,
        frame_id: int,
        boxes: bytes | bytearray | memoryview,
        scores: bytes | bytearray | memoryview,
        inference_ms: float,
        now_ms: float,
    ) -> LocalResult | None:
        sent = self._in_flight.pop(frame_id, None)
        if sent is None:
            return None
        detections = select(boxes, scores, len(self.card.class_names), self.postprocess)
        mapped = to_frame(detections, sent.geometry, self.card.class_names)
        return LocalResult(
            frame_id=frame_id,
            boxes=tuple(mapped),
            capture_ms=sent.capture_ms,
            round_trip_ms=now_ms - sent.sent_ms,
            inference_ms=inference_ms,
        )
