"""The in-browser engine's steps as the page reports them, sans-I/O (issue 19: one job, out
of the page core).

Where the engine runs (``backend_choice.py``): the page loads the worker each step names,
reports how it went, and does the next step, until "done"; a lost GPU device or a frame
that fails on it falls back to the Wasm standby. ``LocalSteps`` turns those reports into
the next step (JSON, as the JSON edge hands it on) and keeps the router's view of the
browser's speed (its warm-up, then its frames) in line; frames are letterboxed for the
worker here too. The state lives in ``local_path.LocalPath``; the router is the page's
(read at each call: tests and benches replace it).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from .local_path import LocalPath
from .page_events import Buffer, as_bytes
from .routing import Router

__all__ = ["LocalPage", "LocalSteps"]

log = logging.getLogger(__name__)


class LocalPage(Protocol):
    """What the steps read on the page (``page_core.PageCore``)."""

    @property
    def local_path(self) -> LocalPath: ...
    @property
    def router(self) -> Router: ...


class LocalSteps:
    def __init__(self, page: LocalPage) -> None:
        self._page = page

    def start(self, is_cross_origin_isolated: bool, hardware_concurrency: int) -> int:
        """The page starts loading the local engine; returns the Wasm thread count."""
        return self._page.local_path.start(is_cross_origin_isolated, hardware_concurrency)

    def check_model(self, actual_sha256: str) -> str:
        """'' when the downloaded model may run, else a message for the page."""
        return self._page.local_path.check_model(actual_sha256)

    def loaded(self, warmup_ms: float | None = None) -> None:
        """The worker's session is ready; ``warmup_ms``: its timed warm-up run, the
        browser's time per frame until real frames measure it (routing.py)."""
        self._page.local_path.engine.loaded()
        if warmup_ms is not None:
            self._page.router.record_local(warmup_ms, 0.0)

    def failed(self, reason: str) -> None:
        self._page.local_path.engine.failed(reason)

    # Where the in-browser engine runs (backend_choice.py): the page loads the worker
    # each step names, reports how it went, and does the next step, until "done".
    def begin(
        self,
        is_cross_origin_isolated: bool,
        hardware_concurrency: int,
        webgpu_problem: str,
        now_ms: float,
    ) -> str:
        """The page starts its in-browser engine; ``webgpu_problem``: '' when the browser
        gave a WebGPU adapter, else why not. Returns the first step (JSON)."""
        self._page.local_path.begin(is_cross_origin_isolated, hardware_concurrency, webgpu_problem)
        return self._step(self._page.local_path.choice.next_step(now_ms), now_ms)

    def step_loaded(self, key: str, warmup_ms: float, now_ms: float) -> str:
        """The worker of a "load" step is ready (``warmup_ms``: its timed warm-up)."""
        self._page.local_path.choice.loaded(key, warmup_ms, now_ms)
        return self._step(self._page.local_path.choice.next_step(now_ms), now_ms)

    def step_failed(self, key: str, reason: str, is_timeout: bool, now_ms: float) -> str:
        """The worker of a "load" step failed, or was stopped when its ``budget_ms`` ran out."""
        self._page.local_path.choice.failed(key, reason, now_ms, is_timeout=is_timeout)
        return self._step(self._page.local_path.choice.next_step(now_ms), now_ms)

    def lost(self, key: str, reason: str, now_ms: float) -> str:
        """The worker ``key`` lost its GPU device (or failed a run on it). Returns the step
        that replaces it ("use" the Wasm standby, or "drop" it and then ``next_step``)."""
        log.warning("in-browser engine %s stopped: %s", key, reason)
        return self._step(self._page.local_path.choice.lost(key, reason, now_ms), now_ms)

    def next_step(self, now_ms: float) -> str:
        """The step after a "use" or "drop" step."""
        return self._step(self._page.local_path.choice.next_step(now_ms), now_ms)

    def run_failed(self, key: str, frame_id: int, message: str, now_ms: float) -> str:
        """A frame failed in the worker ``key``. On WebGPU that is a lost device in all
        but name (the page falls back, ``lost``); on Wasm only that frame is lost.
        Returns a step as ``lost`` does, or ``{"do": "none"}``."""
        self._page.local_path.engine.forget(frame_id)
        running = self._page.local_path.choice.running
        if running is not None and running.key == key and running.backend == "webgpu":
            # onnxruntime's message (source paths, error codes) goes to the console only
            log.warning("frame %d failed on %s: %s", frame_id, key, message[:500])
            return self.lost(key, "a frame failed on the GPU", now_ms)
        return json.dumps({"do": "none"})

    def sample(self, rgba: Buffer, width_px: int, height_px: int) -> bytes:
        """A camera frame letterboxed for the warm-up of a "load" step."""
        return self._page.local_path.sample(as_bytes(rgba), width_px, height_px)

    def _step(self, step: dict[str, Any], now_ms: float) -> str:
        step = self._page.local_path.apply(step)
        if step["do"] == "use":
            self._page.router.reset_local()
            if step.get("warmup_ms") is not None:
                self._page.router.record_local(float(step["warmup_ms"]), now_ms)
        return json.dumps(step)

    def encode(
        self, rgba: Buffer, width_px: int, height_px: int, capture_ms: float, now_ms: float
    ) -> int:
        """Letterbox a frame for the worker; returns its id. ``tensor()`` holds it."""
        return self._page.local_path.encode(as_bytes(rgba), width_px, height_px, capture_ms, now_ms)

    def tensor(self) -> bytearray:
        """The tensor of the last ``encode`` (reused by the next one: copy it out)."""
        return self._page.local_path.tensor

    def forget(self, frame_id: int) -> None:
        self._page.local_path.engine.forget(frame_id)
