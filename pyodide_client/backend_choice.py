"""Where the page's in-browser detection runs: WebGPU or WebAssembly, and with how many
Wasm threads, chosen by measurement (issue 20; the thread count: issue 18), sans-I/O.

The page loads each candidate in a Web Worker of its own and times a short warm-up on it
(a real camera frame when one is there): a worker is its own context, so each one can
have its own Wasm thread count (the first session of a context fixes it). The faster
candidate runs the frames. The operator may pin the backend (``browser_backend``:
``EDGESIGHT_BROWSER_BACKEND=auto|webgpu|wasm``) or the thread count (``local_threads``).

- Wasm candidates: 2 threads and ``min(hardwareConcurrency, 4)``, because browsers report
  what they like there (WebKit says 4 on a 2-core machine, and 4 threads ran 85-95 ms a
  frame against about 50 ms with 2): the number alone does not decide. One thread without
  cross-origin isolation.
- In ``auto`` the Wasm candidates are timed first and the faster one runs at once; WebGPU
  is tried after, beside it, and takes over only when its warm-up is faster, so trying it
  never delays the first in-browser box.
- WebGPU runs the float model (the INT8 QDQ variant measured no faster there:
  docs/benchmarks.md, section r);
  Wasm runs the variant the web app offers. In ``auto`` a WebGPU trial that is not done
  within ``WEBGPU_TRIAL_MS`` counts as slower and is stopped (a software adapter such as
  SwiftShader takes seconds a frame and would otherwise hold the page's CPU).
- When WebGPU runs, the best Wasm candidate stays loaded beside it, idle: if the device is
  lost (``GPUDevice.lost``) or a run fails, the next frame goes to Wasm without a new load.
- Every load has a deadline (issue 18: a worker that never said "ready" left the page at
  "loading" for minutes). A load past it is stopped and tried once more; after that the
  page says so in words.

Steps, as JSON for the page (``next_step``): ``{"do": "load", "key", "backend", "threads",
"model", "timed_runs", "budget_ms"}``, ``{"do": "use", "key", "drop": [keys]}``,
``{"do": "drop", "keys"}``, ``{"do": "fail", "message"}`` and ``{"do": "done"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .local import MAX_WASM_THREADS

__all__ = [
    "DEFAULT_WASM_THREADS",
    "LOAD_ATTEMPTS",
    "MAX_WASM_THREADS",
    "SETTINGS",
    "WEBGPU_TRIAL_MS",
    "BackendChoice",
    "Candidate",
    "wasm_thread_candidates",
]

SETTINGS = ("auto", "webgpu", "wasm")
WASM, WEBGPU = "wasm", "webgpu"
DEFAULT_WASM_THREADS = 2  # the count measured best on 2-core machines (NOTES, issue 18)
WEBGPU_TRIAL_MS = 20_000.0  # auto: load + warm-up; later means slower than any Wasm
LOAD_ATTEMPTS = 2  # a load past its deadline is tried once more
TIMED_RUNS_CONTESTED = 3  # warm-up runs timed when candidates are compared (the median)
TIMED_RUNS_ALONE = 1  # one candidate: its warm-up only seeds the router's estimate
# A pinned WebGPU: nothing to compare, so the first (compiling) run's time is the estimate;
# it is high, and real frames replace it (software adapters take seconds a run).
TIMED_RUNS_PINNED = 0


@dataclass(frozen=True)
class Candidate:
    backend: str  # "wasm" | "webgpu"
    threads: int  # Wasm threads of its worker
    model: str  # the page config's model entry it runs: "local" or "local_webgpu"

    @property
    def key(self) -> str:
        return f"{self.backend}-{self.threads}"

    def describe(self) -> str:
        if self.backend == WEBGPU:
            return "WebGPU"
        return f"WebAssembly, {self.threads} thread{'' if self.threads == 1 else 's'}"


def wasm_thread_candidates(
    is_cross_origin_isolated: bool, hardware_concurrency: int, operator_threads: int = 0
) -> tuple[int, ...]:
    """The Wasm thread counts worth timing, fewest first."""
    if not is_cross_origin_isolated:
        return (1,)  # threads need SharedArrayBuffer
    if operator_threads:
        return (operator_threads,)  # the operator knows the machine
    most = max(1, min(MAX_WASM_THREADS, hardware_concurrency))
    return tuple(sorted({min(DEFAULT_WASM_THREADS, most), most}))


@dataclass
class _Trial:
    candidate: Candidate
    attempts: int = 0
    budget_ms: float = 0.0
    warmup_ms: float | None = None  # measured: the median of its timed warm-up runs
    problem: str = ""  # why it is not measured
    is_done: bool = False


class BackendChoice:
    """One page's choice. ``begin`` once the page knows what the browser offers; then
    ``next_step`` after each report (``loaded``, ``failed``) until it says ``done``;
    ``lost`` when the running engine's device is lost or a run fails there."""

    def __init__(
        self, setting: str = "auto", operator_threads: int = 0, load_deadline_ms: float = 30_000.0
    ) -> None:
        if setting not in SETTINGS:
            raise ValueError(
                f"config browser_backend: expected one of {', '.join(SETTINGS)}, got {setting!r}"
            )
        if not 0 <= operator_threads <= 16:
            raise ValueError(f"config local_threads: expected 0..16, got {operator_threads!r}")
        if not 0 < load_deadline_ms < float("inf"):
            raise ValueError(
                f"config local_load_deadline_ms: expected a number > 0, got {load_deadline_ms!r}"
            )
        self.setting = setting
        self.operator_threads = operator_threads
        self.load_deadline_ms = float(load_deadline_ms)
        self._trials: list[_Trial] = []
        self._pending: _Trial | None = None  # being loaded by the page
        self.running: Candidate | None = None
        self.standby: Candidate | None = None  # loaded and idle: where a lost WebGPU goes
        self.note = ""  # why this backend, in words (Details)
        self.problem = ""  # why in-browser detection cannot run, for the page
        self._is_final = False  # every trial done and the fastest chosen

    # -- what the browser offers -------------------------------------------------------------
    def begin(
        self, is_cross_origin_isolated: bool, hardware_concurrency: int, webgpu_problem: str
    ) -> None:
        """``webgpu_problem``: '' when the browser gave a WebGPU adapter, else why not."""
        wasm = [
            Candidate(WASM, threads, "local")
            for threads in wasm_thread_candidates(
                is_cross_origin_isolated, hardware_concurrency, self.operator_threads
            )
        ]
        # The WebGPU worker's own Wasm (for ops the GPU does not take): the default count.
        webgpu = Candidate(WEBGPU, wasm[0].threads, "local_webgpu")
        if self.setting == WASM:
            candidates = wasm
            self.note = "WebAssembly, as configured (EDGESIGHT_BROWSER_BACKEND=wasm)"
        elif webgpu_problem:
            candidates = wasm
            self.note = f"WebAssembly: WebGPU is not available here ({webgpu_problem})"
        elif self.setting == WEBGPU:
            candidates = [webgpu, wasm[0]]  # WebGPU used as soon as it loads; Wasm its standby
        else:
            candidates = [*wasm, webgpu]
        self._trials = [_Trial(candidate) for candidate in candidates]

    @property
    def is_contested(self) -> bool:
        """Candidates are compared (auto or wasm with a choice of thread counts)."""
        return self.setting != WEBGPU and len(self._trials) > 1

    # -- steps -------------------------------------------------------------------------------
    def next_step(self, now_ms: float) -> dict[str, Any]:
        """What the page should do next (see the module docstring)."""
        if not self._trials:
            raise RuntimeError("BackendChoice.next_step before begin()")
        if self._pending is not None:
            raise RuntimeError(
                f"BackendChoice.next_step while {self._pending.candidate.key} is loading: "
                "report loaded() or failed() first"
            )
        first = self._trials[0]
        if self.running is None and self.setting == WEBGPU and first.warmup_ms is not None:
            return self._use(first.candidate, keep=None)  # pinned: no comparison
        waiting = next((t for t in self._trials if not t.is_done), None)
        if (
            self.running is None
            and waiting is not None
            and waiting.candidate.backend == WEBGPU
            and self.setting == "auto"
            and any(t.warmup_ms is not None for t in self._trials)
        ):
            # Wasm is measured: run it while WebGPU is tried, so trying WebGPU never makes
            # the first in-browser box later than Wasm alone would.
            return self._decide()
        if waiting is not None:
            return self._load(waiting, now_ms)
        if self.running is None:
            return self._decide()
        if not self._is_final and self.setting == "auto":
            return self._decide()  # the WebGPU trial is done: switch to it if faster
        return {"do": "done"}

    def _load(self, trial: _Trial, now_ms: float) -> dict[str, Any]:
        trial.attempts += 1
        self._pending = trial
        candidate = trial.candidate
        budget_ms = self.load_deadline_ms
        if candidate.backend == WEBGPU and self.setting == "auto":
            budget_ms = min(budget_ms, WEBGPU_TRIAL_MS)
        trial.budget_ms = budget_ms
        return {
            "do": "load",
            "key": candidate.key,
            "backend": candidate.backend,
            "threads": candidate.threads,
            "model": candidate.model,
            "timed_runs": self._timed_runs(candidate),
            # from when its worker starts (the model download before it does not count)
            "budget_ms": budget_ms,
        }

    def _timed_runs(self, candidate: Candidate) -> int:
        if self.is_contested:
            return TIMED_RUNS_CONTESTED
        if self.setting == WEBGPU and candidate.backend == WEBGPU:
            return TIMED_RUNS_PINNED
        return TIMED_RUNS_ALONE

    def _decide(self) -> dict[str, Any]:
        """The fastest measured candidate runs; final once every trial is done."""
        self._is_final = all(t.is_done for t in self._trials)
        measured = [t for t in self._trials if t.warmup_ms is not None]
        if not measured:
            reasons = "; ".join(f"{t.candidate.describe()} {t.problem}" for t in self._trials)
            self.problem = f"{reasons}. Reload the page to try again."
            return {"do": "fail", "message": self.problem}
        # Fastest first; on a tie Wasm (no GPU to lose) and fewer threads.
        best = min(measured, key=lambda t: (t.warmup_ms, t.candidate.backend != WASM))
        keep = None
        if best.candidate.backend == WEBGPU:
            wasm = [t for t in measured if t.candidate.backend == WASM]
            keep = min(wasm, key=lambda t: t.warmup_ms or 0.0).candidate if wasm else None
        if self.is_contested:
            self.note = self._comparison(best)
        if self.running is not None and best.candidate == self.running:
            # it runs already: end the others, keep its frames in flight
            drop = [t.candidate.key for t in measured if t.candidate != best.candidate]
            return {"do": "drop", "keys": drop}
        return self._use(best.candidate, keep)

    def _comparison(self, best: _Trial) -> str:
        # "; " between candidates and ": " before a time: a candidate's own words have commas
        # ("WebAssembly, 2 threads 150 ms, WebAssembly, 4 threads 341 ms" read as four things).
        times = "; ".join(
            f"{t.candidate.describe()}: {t.warmup_ms:.0f} ms"
            for t in self._trials
            if t.warmup_ms is not None
        )
        unmeasured = "".join(
            f"; {t.candidate.describe()} {t.problem or 'being tried'}"
            for t in self._trials
            if t.warmup_ms is None
        )
        return f"{best.candidate.describe()}, the fastest measured here ({times}{unmeasured})"

    def _use(self, candidate: Candidate, keep: Candidate | None) -> dict[str, Any]:
        self.running, self.standby = candidate, keep
        if self.setting == WEBGPU and candidate.backend == WEBGPU:
            self.note = "WebGPU, as configured (EDGESIGHT_BROWSER_BACKEND=webgpu)"
        kept = {candidate.key, keep.key if keep else candidate.key}
        drop = [
            t.candidate.key
            for t in self._trials
            if t.warmup_ms is not None and t.candidate.key not in kept
        ]
        warmup_ms = next(t.warmup_ms for t in self._trials if t.candidate == candidate)
        return {"do": "use", "key": candidate.key, "warmup_ms": warmup_ms, "drop": drop}

    # -- reports -----------------------------------------------------------------------------
    def _finish(self, key: str) -> _Trial:
        pending = self._pending
        if pending is None or pending.candidate.key != key:
            expected = pending.candidate.key if pending else "none"
            raise ValueError(f"in-browser engine {key!r} reported; expected {expected}")
        self._pending = None
        pending.is_done = True
        return pending

    def loaded(self, key: str, warmup_ms: float, now_ms: float) -> None:
        """The worker ``key`` is ready; ``warmup_ms``: the median of its timed warm-up."""
        if not 0 <= warmup_ms < float("inf"):
            raise ValueError(
                f"warmup_ms of {key}: expected a finite number >= 0, got {warmup_ms!r}"
            )
        trial = self._finish(key)
        trial.warmup_ms = float(warmup_ms)
        if self.running is not None and self.running.backend == WEBGPU:
            self.standby = trial.candidate  # a pinned WebGPU's Wasm standby

    def failed(self, key: str, reason: str, now_ms: float, is_timeout: bool = False) -> None:
        """The worker ``key`` failed to load, or (``is_timeout``) the page stopped it when
        its step's ``budget_ms`` ran out."""
        trial = self._finish(key)
        if not is_timeout:
            trial.problem = f"failed: {reason}"
            return
        waited_s = trial.budget_ms / 1000
        if trial.candidate.backend == WEBGPU and self.setting == "auto":
            trial.problem = f"slower: not done within {waited_s:.0f} s"
        elif trial.attempts < LOAD_ATTEMPTS:
            trial.is_done = False  # once more, in a fresh worker
            trial.problem = f"not ready after {waited_s:.0f} s; trying again"
        else:
            trial.problem = f"not ready after {waited_s:.0f} s, {trial.attempts} tries"

    def lost(self, key: str, reason: str, now_ms: float) -> dict[str, Any]:
        """The engine ``key`` lost its device, or a run failed there. For the running
        one, the next step: its Wasm standby at once, else a fresh Wasm load (call
        ``next_step``). WebGPU is not tried again in this page."""
        if self.running is None or key != self.running.key:
            if self.standby is not None and key == self.standby.key:
                self.standby = None
            return {"do": "drop", "keys": [key]}
        lost, standby = self.running, self.standby
        self.running = self.standby = None
        self.setting = WASM  # no second try of what just failed mid-stream
        for trial in self._trials:
            if trial.candidate.backend == lost.backend:
                trial.warmup_ms, trial.is_done = None, True
                trial.problem = f"stopped working ({reason})"
        note = f"WebAssembly: {lost.describe()} stopped working ({reason})"
        if standby is not None:
            step = self._use(standby, keep=None)
            step["drop"] = [lost.key]
        else:
            for trial in self._trials:  # load the Wasm candidates afresh
                if trial.candidate.backend == WASM:
                    trial.is_done, trial.attempts, trial.warmup_ms = False, 0, None
            step = {"do": "drop", "keys": [lost.key]}
        self.note = note
        return step
