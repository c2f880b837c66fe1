"""LocalEngine, the decisions around in-browser inference, with real model-shaped outputs:
float32 ``boxes`` [3549, 4] and ``scores`` [3549, 80] built with numpy, as the worker posts
them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pyodide_client import local as local_module
from pyodide_client.local import (
    MAX_WASM_THREADS,
    LocalEngine,
    LocalError,
    LocalResult,
    LocalState,
    wasm_threads,
)
from pyodide_client.model_card import ModelCard
from pyodide_client.postprocess import FrameBox, PostprocessSettings
from pyodide_client.preprocess import Letterbox

MODEL_JSON = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416" / "model.json"
CARD_JSON = MODEL_JSON.read_text(encoding="utf-8")
CARD = ModelCard.from_json(CARD_JSON)
ANCHORS = int(json.loads(CARD_JSON)["anchors"])
CLASSES = len(CARD.class_names)
CAT = 15
OTHER_SHA = "0123456789ab" + "cd" * 26

# A 64x48 frame into the 416x416 input: scale 6.5, scaled 416x312, left 0, top 52. So an
# input box (65, 117, 130, 182) is the frame box (10, 10, 20, 20).
WIDTH, HEIGHT = 64, 48
CAT_BOX_INPUT = (65.0, 117.0, 130.0, 182.0)
CAT_BOX_FRAME = (10.0, 10.0, 20.0, 20.0)


def rgba(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> bytes:
    size = width * height * 4
    pattern = bytes((seed + 7 * i) % 256 for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


def outputs(
    *hits: tuple[int, int, float, tuple[float, float, float, float]],
) -> tuple[bytes, bytes]:
    """The worker's two outputs as float32 bytes: (anchor, class, score, box) per hit."""
    boxes = np.zeros((ANCHORS, 4), dtype="<f4")
    scores = np.zeros((ANCHORS, CLASSES), dtype="<f4")
    for anchor, class_id, score, box in hits:
        boxes[anchor] = box
        scores[anchor, class_id] = score
    return boxes.tobytes(), scores.tobytes()


def loading_engine() -> LocalEngine:
    engine = LocalEngine(CARD, PostprocessSettings())
    engine.start_loading(is_cross_origin_isolated=False, hardware_concurrency=8)
    return engine


def ready_engine() -> LocalEngine:
    engine = loading_engine()
    engine.check_model(CARD.sha256, CARD.sha256)
    engine.loaded()
    return engine


def test_all_names_exported_exist() -> None:
    for name in local_module.__all__:
        assert hasattr(local_module, name), name


def test_the_card_is_the_real_model_description() -> None:
    assert CARD.name == "nanodet-g-416"
    assert CARD.frame_shape == (3, 416, 416)
    assert CARD.class_names[CAT] == "cat"
    assert (ANCHORS, CLASSES) == (3549, 80)


# -- threads -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("is_isolated", "cores", "threads"),
    [
        (False, 8, 1),  # no SharedArrayBuffer without cross-origin isolation
        (False, 1, 1),
        (True, 8, MAX_WASM_THREADS),
        (True, 4, 4),
        (True, 2, 2),
        (True, 1, 1),
        (True, 0, 1),  # navigator.hardwareConcurrency can be missing
    ],
)
def test_wasm_threads(is_isolated: bool, cores: int, threads: int) -> None:
    assert wasm_threads(is_isolated, cores) == threads


def test_start_loading_picks_the_thread_count_and_loads() -> None:
    engine = LocalEngine(CARD, PostprocessSettings())
    assert engine.state is LocalState.NOT_LOADED
    assert engine.threads == 1

    assert engine.start_loading(is_cross_origin_isolated=True, hardware_concurrency=3) == 3

    assert engine.state is LocalState.LOADING
    assert engine.threads == 3
    assert not engine.is_ready
    assert not engine.can_run()


# -- the model check ---------------------------------------------------------------------------
def test_the_expected_model_is_accepted_and_becomes_ready_once_loaded() -> None:
    engine = loading_engine()

    engine.check_model(CARD.sha256, CARD.sha256)
    assert engine.state is LocalState.LOADING
    engine.loaded()

    assert engine.state is LocalState.READY
    assert engine.is_ready
    assert engine.can_run()
    assert engine.problem == ""


def test_the_sha256_check_ignores_hex_case() -> None:
    engine = loading_engine()

    engine.check_model(CARD.sha256.upper(), CARD.sha256)

    assert engine.state is LocalState.LOADING


def test_a_wrong_model_is_refused_naming_both_hashes() -> None:
    engine = loading_engine()

    with pytest.raises(LocalError) as info:
        engine.check_model(OTHER_SHA, CARD.sha256)

    message = str(info.value)
    assert f"sha256 {OTHER_SHA[:12]}…" in message
    assert f"expected {CARD.sha256[:12]}…" in message
    assert message.startswith("The model file for local detection is not the expected one")
    assert engine.state is LocalState.REFUSED
    assert engine.problem == message


def test_a_refused_model_never_becomes_ready() -> None:
    engine = loading_engine()
    with pytest.raises(LocalError):
        engine.check_model(OTHER_SHA, CARD.sha256)
    refusal = engine.problem

    engine.loaded()
    engine.failed("the worker died")

    assert engine.state is LocalState.REFUSED
    assert engine.problem == refusal  # the refusal is what the page must show
    assert not engine.can_run()


def test_loaded_only_counts_while_loading() -> None:
    engine = LocalEngine(CARD, PostprocessSettings())

    engine.loaded()

    assert engine.state is LocalState.NOT_LOADED


def test_a_runtime_failure_is_kept_with_its_reason() -> None:
    engine = loading_engine()

    engine.failed("no WebAssembly")

    assert engine.state is LocalState.FAILED
    assert engine.problem == "Local detection could not start: no WebAssembly"
    assert not engine.can_run()


# -- frames ------------------------------------------------------------------------------------
def test_encode_before_ready_is_refused() -> None:
    engine = loading_engine()

    with pytest.raises(LocalError, match=r"not ready for a frame \(state loading\)"):
        engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)


def test_encode_letterboxes_like_the_node_path() -> None:
    engine = ready_engine()
    frame = rgba(seed=3)

    frame_id, tensor = engine.encode(frame, WIDTH, HEIGHT, capture_ms=10.0, now_ms=12.0)

    assert frame_id == 1
    assert len(tensor) == 3 * 416 * 416
    assert bytes(tensor) == bytes(Letterbox.for_frame(WIDTH, HEIGHT, 416).fill(frame))


def test_one_frame_at_a_time() -> None:
    engine = ready_engine()
    engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)

    assert not engine.can_run()
    with pytest.raises(LocalError, match=r"state ready"):
        engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=1.0, now_ms=1.0)


def test_output_is_selected_and_mapped_to_frame_pixels() -> None:
    engine = ready_engine()
    frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=1000.0, now_ms=1004.0)
    boxes, scores = outputs((1234, CAT, 0.9, CAT_BOX_INPUT))

    result = engine.on_output(frame_id, boxes, scores, inference_ms=55.0, now_ms=1070.0)

    assert result is not None
    assert result == LocalResult(
        frame_id=frame_id,
        boxes=result.boxes,
        capture_ms=1000.0,
        round_trip_ms=66.0,  # handed over at 1004, back at 1070
        inference_ms=55.0,
    )
    (box,) = result.boxes
    assert (box.label, box.class_id) == ("cat", CAT)
    assert box.score == pytest.approx(0.9, rel=1e-6)
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx(CAT_BOX_FRAME)
    assert engine.can_run()  # the slot is free again


def test_output_below_the_score_threshold_gives_no_boxes() -> None:
    engine = ready_engine()
    frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)
    boxes, scores = outputs((7, CAT, 0.3, CAT_BOX_INPUT))  # threshold is 0.35

    result = engine.on_output(frame_id, boxes, scores, inference_ms=40.0, now_ms=50.0)

    assert result is not None
    assert result.boxes == ()


def test_output_boxes_of_one_class_are_suppressed_and_of_two_kept() -> None:
    engine = ready_engine()
    frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)
    shifted = (66.0, 117.0, 131.0, 182.0)  # IoU with CAT_BOX_INPUT well above 0.6
    dog = CARD.class_names.index("dog")
    boxes, scores = outputs(
        (100, CAT, 0.8, CAT_BOX_INPUT),
        (101, CAT, 0.7, shifted),
        (102, dog, 0.6, (150.0, 200.0, 215.0, 265.0)),
        (103, dog, 0.5, shifted),  # the cat again, labelled dog: one object, one label
    )

    result = engine.on_output(frame_id, boxes, scores, inference_ms=40.0, now_ms=50.0)

    assert result is not None
    assert [(b.label, round(b.score, 3)) for b in result.boxes] == [("cat", 0.8), ("dog", 0.6)]


def test_a_new_frame_size_gets_a_new_letterbox() -> None:
    engine = ready_engine()
    first_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)
    engine.forget(first_id)
    # 48x64 (portrait): scale 6.5, scaled 312x416, left 52, top 0
    frame_id, tensor = engine.encode(rgba(48, 64), 48, 64, capture_ms=1.0, now_ms=1.0)
    assert bytes(tensor) == bytes(Letterbox.for_frame(48, 64, 416).fill(rgba(48, 64)))
    boxes, scores = outputs((5, CAT, 0.9, (117.0, 65.0, 182.0, 130.0)))

    result = engine.on_output(frame_id, boxes, scores, inference_ms=1.0, now_ms=2.0)

    assert result is not None
    assert [(b.x1, b.y1, b.x2, b.y2) for b in result.boxes] == [pytest.approx(CAT_BOX_FRAME)]


def test_frame_ids_count_up() -> None:
    engine = ready_engine()
    ids = []
    for i in range(3):
        frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=i, now_ms=i)
        engine.forget(frame_id)
        ids.append(frame_id)

    assert ids == [1, 2, 3]


def test_output_for_an_unknown_or_forgotten_frame_is_ignored() -> None:
    engine = ready_engine()
    boxes, scores = outputs((0, CAT, 0.9, CAT_BOX_INPUT))
    assert engine.on_output(99, boxes, scores, inference_ms=1.0, now_ms=1.0) is None

    frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)
    engine.forget(frame_id)
    engine.forget(frame_id)  # twice is harmless

    assert engine.can_run()
    assert engine.on_output(frame_id, boxes, scores, inference_ms=1.0, now_ms=1.0) is None


def test_output_twice_for_one_frame_counts_once() -> None:
    engine = ready_engine()
    frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)
    boxes, scores = outputs((0, CAT, 0.9, CAT_BOX_INPUT))

    assert engine.on_output(frame_id, boxes, scores, inference_ms=1.0, now_ms=1.0) is not None
    assert engine.on_output(frame_id, boxes, scores, inference_ms=1.0, now_ms=2.0) is None


def test_outputs_of_the_wrong_size_raise() -> None:
    engine = ready_engine()
    frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)
    boxes, scores = outputs()

    with pytest.raises(ValueError, match="expected boxes of 3549x4 and scores of 3549x80"):
        engine.on_output(frame_id, boxes, scores[:-4], inference_ms=1.0, now_ms=1.0)


def test_frame_boxes_are_the_postprocess_type() -> None:
    engine = ready_engine()
    frame_id, _ = engine.encode(rgba(), WIDTH, HEIGHT, capture_ms=0.0, now_ms=0.0)
    boxes, scores = outputs((0, CAT, 0.9, CAT_BOX_INPUT))

    result = engine.on_output(frame_id, memoryview(boxes), bytearray(scores), 1.0, now_ms=1.0)

    assert result is not None
    assert all(isinstance(box, FrameBox) for box in result.boxes)


INT8_SHA = "ab" * 32


def test_an_int8_variant_of_the_expected_model_may_run() -> None:
    engine = loading_engine()

    engine.check_model(INT8_SHA.upper(), CARD.sha256, variant=(INT8_SHA, CARD.sha256))

    assert engine.state is LocalState.LOADING


def test_an_int8_variant_of_another_model_is_refused() -> None:
    engine = loading_engine()

    with pytest.raises(LocalError):
        engine.check_model(INT8_SHA, CARD.sha256, variant=(INT8_SHA, OTHER_SHA))

    assert engine.state is LocalState.REFUSED
