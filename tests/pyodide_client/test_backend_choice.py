"""pyodide_client.backend_choice: WebGPU or Wasm, and how many Wasm threads, by measurement
(issue 20; thread count and load deadline: issue 18). The clock is the test's."""

from __future__ import annotations

from typing import Any

import pytest

from pyodide_client import backend_choice
from pyodide_client.backend_choice import (
    LOAD_ATTEMPTS,
    WEBGPU_TRIAL_MS,
    BackendChoice,
    wasm_thread_candidates,
)


def test_all_names_exported_exist() -> None:
    for name in backend_choice.__all__:
        assert hasattr(backend_choice, name)


@pytest.mark.parametrize(
    ("is_isolated", "cores", "operator", "expected"),
    [
        (False, 8, 0, (1,)),  # no SharedArrayBuffer: one thread
        (True, 1, 0, (1,)),
        (True, 2, 0, (2,)),
        (True, 4, 0, (2, 4)),  # WebKit says 4 on 2 cores: time both (issue 18)
        (True, 16, 0, (2, 4)),
        (True, 16, 3, (3,)),  # the operator knows the machine
        (False, 16, 3, (1,)),
    ],
)
def test_wasm_thread_candidates(
    is_isolated: bool, cores: int, operator: int, expected: tuple[int, ...]
) -> None:
    assert wasm_thread_candidates(is_isolated, cores, operator) == expected


def run_choice(
    choice: BackendChoice, times_ms: dict[str, float | None], now_ms: float = 0.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Play the page: load each step's worker; ``times_ms[key]`` is its warm-up, None a
    worker that never answers (stopped at its budget); do "use" and "drop" steps, until
    "done" or "fail". Returns the last "use" (or the "fail") step, and every step."""
    steps = []
    last: dict[str, Any] = {}
    step = choice.next_step(now_ms)
    while step["do"] not in ("done", "fail"):
        steps.append(step)
        if step["do"] == "load":
            warmup_ms = times_ms[step["key"]]
            if warmup_ms is None:
                now_ms += step["budget_ms"]
                choice.failed(step["key"], "timed out", now_ms, is_timeout=True)
            else:
                now_ms += 500.0 + warmup_ms
                choice.loaded(step["key"], warmup_ms, now_ms)
        elif step["do"] == "use":
            last = step
        step = choice.next_step(now_ms)
    return (step if step["do"] == "fail" else last), steps


def loads_of(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [step for step in steps if step["do"] == "load"]


def test_auto_picks_wasm_when_webgpu_is_slower() -> None:
    # given a software adapter (SwiftShader here): 13 s a frame against 75 ms
    choice = BackendChoice("auto")
    choice.begin(True, 2, webgpu_problem="")
    # when both are timed
    step, steps = run_choice(choice, {"wasm-2": 75.0, "webgpu-2": 13_000.0})
    # then Wasm runs from the moment it is measured (WebGPU is tried beside it), and once
    # WebGPU is measured slower its worker is ended and Details says why
    assert [(s["do"], s.get("key", s.get("keys"))) for s in steps] == [
        ("load", "wasm-2"),
        ("use", "wasm-2"),
        ("load", "webgpu-2"),
        ("drop", ["webgpu-2"]),
    ]
    assert all(load["timed_runs"] == 3 for load in loads_of(steps))
    assert step == {"do": "use", "key": "wasm-2", "warmup_ms": 75.0, "drop": []}
    assert choice.standby is None
    assert choice.note.startswith("WebAssembly, 2 threads, the fastest measured here")
    assert "WebGPU: 13000 ms" in choice.note
    assert choice.next_step(20_000.0) == {"do": "done"}


def test_while_webgpu_is_tried_details_say_so() -> None:
    choice = BackendChoice("auto")
    choice.begin(True, 2, webgpu_problem="")
    choice.loaded(choice.next_step(0.0)["key"], 75.0, 1000.0)
    assert choice.next_step(1000.0)["do"] == "use"
    assert choice.note == (
        "WebAssembly, 2 threads, the fastest measured here "
        "(WebAssembly, 2 threads: 75 ms; WebGPU being tried)"
    )


def test_auto_stops_a_webgpu_trial_that_outlasts_its_budget_and_runs_wasm() -> None:
    choice = BackendChoice("auto", load_deadline_ms=60_000.0)
    choice.begin(True, 2, webgpu_problem="")
    step, steps = run_choice(choice, {"wasm-2": 75.0, "webgpu-2": None})
    loads = loads_of(steps)
    assert loads[-1]["budget_ms"] == WEBGPU_TRIAL_MS  # not the minute a pinned one gets
    assert len(loads) == 2  # a slow WebGPU is not retried
    assert step["key"] == "wasm-2"
    assert "WebGPU slower: not done within 20 s" in choice.note


def test_auto_picks_webgpu_when_faster_and_keeps_wasm_as_its_standby() -> None:
    choice = BackendChoice("auto")
    choice.begin(True, 8, webgpu_problem="")
    step, steps = run_choice(choice, {"wasm-2": 50.0, "wasm-4": 90.0, "webgpu-2": 6.0})
    loads = loads_of(steps)
    assert [load["key"] for load in loads] == ["wasm-2", "wasm-4", "webgpu-2"]
    assert [load["model"] for load in loads] == ["local", "local", "local_webgpu"]
    uses = [s for s in steps if s["do"] == "use"]
    assert uses[0] == {"do": "use", "key": "wasm-2", "warmup_ms": 50.0, "drop": ["wasm-4"]}
    assert step == {"do": "use", "key": "webgpu-2", "warmup_ms": 6.0, "drop": ["wasm-4"]}
    assert choice.running is not None
    assert choice.running.backend == "webgpu"
    assert choice.standby is not None
    assert choice.standby.key == "wasm-2"  # the one that ran until now


def test_two_threads_win_when_four_are_slower() -> None:
    # WebKit: hardwareConcurrency 4 on 2 cores; 4 threads 85-95 ms, 2 threads ~50 ms
    choice = BackendChoice("auto")
    choice.begin(True, 4, webgpu_problem="this browser has no navigator.gpu")
    step, steps = run_choice(choice, {"wasm-2": 50.0, "wasm-4": 90.0})
    assert [load["threads"] for load in loads_of(steps)] == [2, 4]
    assert step["key"] == "wasm-2"
    assert step["drop"] == ["wasm-4"]
    assert choice.running is not None
    assert choice.running.threads == 2


def test_four_threads_win_when_faster() -> None:
    choice = BackendChoice("wasm")
    choice.begin(True, 4, webgpu_problem="")
    step, steps = run_choice(choice, {"wasm-2": 50.0, "wasm-4": 30.0})
    assert all(load["backend"] == "wasm" for load in loads_of(steps))  # pinned: WebGPU never tried
    assert step["key"] == "wasm-4"


def test_one_candidate_is_not_timed_three_times() -> None:
    choice = BackendChoice("auto")
    choice.begin(True, 2, webgpu_problem="no GPU adapter")
    step, steps = run_choice(choice, {"wasm-2": 75.0})
    assert [load["timed_runs"] for load in loads_of(steps)] == [1]
    assert step["key"] == "wasm-2"
    assert choice.note == "WebAssembly: WebGPU is not available here (no GPU adapter)"


def test_pinned_webgpu_runs_as_soon_as_loaded_then_loads_its_standby() -> None:
    choice = BackendChoice("webgpu")
    choice.begin(True, 2, webgpu_problem="")
    first = choice.next_step(0.0)
    assert (first["key"], first["timed_runs"]) == ("webgpu-2", 0)  # nothing to compare
    choice.loaded("webgpu-2", 13_000.0, 40_000.0)
    assert choice.next_step(40_000.0) == {
        "do": "use",
        "key": "webgpu-2",
        "warmup_ms": 13_000.0,
        "drop": [],
    }
    standby = choice.next_step(40_000.0)
    assert (standby["do"], standby["key"]) == ("load", "wasm-2")
    choice.loaded("wasm-2", 80.0, 41_000.0)
    assert choice.next_step(41_000.0) == {"do": "done"}
    assert choice.running is not None
    assert choice.running.key == "webgpu-2"
    assert choice.standby is not None
    assert choice.standby.key == "wasm-2"


def test_pinned_webgpu_without_an_adapter_runs_wasm_and_says_why() -> None:
    choice = BackendChoice("webgpu")
    choice.begin(True, 2, webgpu_problem="no GPU adapter")
    step, _ = run_choice(choice, {"wasm-2": 80.0})
    assert step["key"] == "wasm-2"
    assert "WebGPU is not available here (no GPU adapter)" in choice.note


def test_pinned_webgpu_that_fails_to_load_falls_back_to_wasm() -> None:
    choice = BackendChoice("webgpu")
    choice.begin(True, 2, webgpu_problem="")
    step = choice.next_step(0.0)
    choice.failed(step["key"], "Failed to get GPU adapter", 100.0)
    step, _ = run_choice(choice, {"wasm-2": 80.0}, now_ms=100.0)
    assert step["key"] == "wasm-2"


def test_device_loss_goes_to_the_standby_at_once() -> None:
    choice = BackendChoice("auto")
    choice.begin(True, 2, webgpu_problem="")
    run_choice(choice, {"wasm-2": 75.0, "webgpu-2": 6.0})
    step = choice.lost("webgpu-2", "the GPU device was lost (destroyed)", 10_000.0)
    # no load: the standby is already warm
    assert step == {"do": "use", "key": "wasm-2", "warmup_ms": 75.0, "drop": ["webgpu-2"]}
    assert choice.running is not None
    assert choice.running.key == "wasm-2"
    assert choice.note == (
        "WebAssembly: WebGPU stopped working (the GPU device was lost (destroyed))"
    )
    assert choice.next_step(10_000.0) == {"do": "done"}
    # and a later loss of the Wasm engine is not a reason to try WebGPU again
    assert choice.lost("wasm-2", "crashed", 11_000.0) == {"do": "drop", "keys": ["wasm-2"]}
    step = choice.next_step(11_000.0)
    assert (step["do"], step["backend"]) == ("load", "wasm")


def test_device_loss_without_a_standby_loads_wasm() -> None:
    choice = BackendChoice("webgpu")
    choice.begin(True, 2, webgpu_problem="")
    choice.next_step(0.0)
    choice.loaded("webgpu-2", 100.0, 1000.0)
    choice.next_step(1000.0)  # use
    assert choice.lost("webgpu-2", "destroyed", 2000.0) == {"do": "drop", "keys": ["webgpu-2"]}
    assert choice.running is None
    step = choice.next_step(2000.0)
    assert (step["do"], step["key"]) == ("load", "wasm-2")
    choice.loaded("wasm-2", 80.0, 3000.0)
    assert choice.next_step(3000.0)["key"] == "wasm-2"


def test_device_loss_while_the_standby_loads_runs_it_once_loaded() -> None:
    choice = BackendChoice("webgpu")
    choice.begin(True, 2, webgpu_problem="")
    choice.next_step(0.0)
    choice.loaded("webgpu-2", 100.0, 1000.0)
    choice.next_step(1000.0)  # use WebGPU
    standby = choice.next_step(1000.0)  # the page starts loading the standby
    assert choice.lost("webgpu-2", "destroyed", 1500.0) == {"do": "drop", "keys": ["webgpu-2"]}
    choice.loaded(standby["key"], 80.0, 2000.0)
    step = choice.next_step(2000.0)
    assert (step["do"], step["key"]) == ("use", "wasm-2")


def test_loss_of_a_standby_only_forgets_it() -> None:
    choice = BackendChoice("auto")
    choice.begin(True, 2, webgpu_problem="")
    run_choice(choice, {"wasm-2": 75.0, "webgpu-2": 6.0})
    assert choice.lost("wasm-2", "crashed", 1.0) == {"do": "drop", "keys": ["wasm-2"]}
    assert choice.standby is None
    assert choice.running is not None
    assert choice.running.key == "webgpu-2"


def test_a_load_past_its_deadline_is_tried_again_then_reported() -> None:
    # issue 18: Firefox once stayed at "loading" for 180 s waiting for the worker
    choice = BackendChoice("wasm", load_deadline_ms=30_000.0)
    choice.begin(True, 2, webgpu_problem="")
    step, steps = run_choice(choice, {"wasm-2": None})
    loads = loads_of(steps)
    assert [load["key"] for load in loads] == ["wasm-2"] * LOAD_ATTEMPTS
    assert all(load["budget_ms"] == 30_000.0 for load in loads)
    assert step["do"] == "fail"
    assert step["message"] == (
        "WebAssembly, 2 threads not ready after 30 s, 2 tries. Reload the page to try again."
    )


def test_a_retry_that_answers_runs() -> None:
    choice = BackendChoice("wasm")
    choice.begin(True, 2, webgpu_problem="")
    step = choice.next_step(0.0)
    choice.failed(step["key"], "timed out", 30_000.0, is_timeout=True)
    again = choice.next_step(30_000.0)
    assert (again["do"], again["key"]) == ("load", "wasm-2")
    choice.loaded("wasm-2", 70.0, 31_000.0)
    assert choice.next_step(31_000.0)["do"] == "use"


def test_a_failed_load_is_not_retried() -> None:
    choice = BackendChoice("wasm")
    choice.begin(False, 2, webgpu_problem="")
    step = choice.next_step(0.0)
    choice.failed(step["key"], "no WebAssembly", 10.0)
    step = choice.next_step(10.0)
    assert step == {
        "do": "fail",
        "message": "WebAssembly, 1 thread failed: no WebAssembly. Reload the page to try again.",
    }


def test_reports_out_of_turn_are_refused() -> None:
    choice = BackendChoice("auto")
    with pytest.raises(RuntimeError, match="before begin"):
        choice.next_step(0.0)
    choice.begin(True, 2, webgpu_problem="")
    step = choice.next_step(0.0)
    with pytest.raises(RuntimeError, match="while wasm-2 is loading"):
        choice.next_step(1.0)
    with pytest.raises(ValueError, match="'webgpu-2' reported; expected wasm-2"):
        choice.loaded("webgpu-2", 1.0, 1.0)
    with pytest.raises(ValueError, match="expected a finite number >= 0"):
        choice.loaded(step["key"], float("nan"), 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"setting": "gpu"}, "browser_backend: expected one of auto, webgpu, wasm, got 'gpu'"),
        ({"operator_threads": 17}, "local_threads: expected 0..16"),
        ({"load_deadline_ms": 0.0}, "local_load_deadline_ms: expected a number > 0"),
    ],
)
def test_bad_config_is_refused_naming_the_key(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackendChoice(**kwargs)
