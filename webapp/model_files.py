"""Which model file the page's in-browser fallback runs.

Nodes serve the model in ``EDGESIGHT_MODEL_DIR`` (its model.json is the one the page reads).
If that folder holds an INT8 variant in ``int8/`` (``edgesight model quantize``,
``scripts/build_int8.py``), the fallback gets the variant instead when its own report says
it is worth it (docs/models.md):

- it was quantised from exactly this model (``provenance.quantized_from_sha256``);
- its agreement with the float model passed (``quantization.agreement.passes``);
- it was measured faster in onnxruntime-web with 2 threads by at least
  ``MIN_WASM_SPEEDUP`` (``quantization.speed.wasm_2_threads_speedup``, ``bench/int8.py``).

The page then accepts the variant's sha256 in place of the model's (pyodide_client.local).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyodide_client.model_card import ModelCard, ModelCardError

__all__ = ["MIN_WASM_SPEEDUP", "LocalModel", "choose_local_model"]

log = logging.getLogger(__name__)

MIN_WASM_SPEEDUP = 1.1
VARIANT_DIR = "int8"


@dataclass(frozen=True)
class LocalModel:
    card: ModelCard  # of the file the browser runs
    path: Path
    variant_of: str | None  # the served model's sha256 when this is its INT8 variant
    reason: str

    def page_config(self) -> dict[str, Any]:
        """What the page needs to fetch, check and run the file (config.model.local)."""
        return {
            "url": f"/models/{self.card.file}",
            "name": self.card.name,  # shown in the page's details while it runs
            "sha256": self.card.sha256,
            "variant_of": self.variant_of,
            "io": {
                "input": self.card.input_name,
                "width": self.card.input_width_px,
                "height": self.card.input_height_px,
                "boxes": self.card.boxes_output,
                "scores": self.card.scores_output,
            },
        }


def _offer_problem(data: dict[str, Any], variant: ModelCard, card: ModelCard) -> str:
    source = data.get("provenance", {}).get("quantized_from_sha256")
    if source != card.sha256:
        return f"it was quantised from sha256 {str(source)[:12]}…, not this model"
    if variant.class_names != card.class_names or variant.frame_shape != card.frame_shape:
        return "its classes or input size differ from the model's"
    quantization = data.get("quantization", {})
    if quantization.get("agreement", {}).get("passes") is not True:
        return "its agreement with the float model did not pass"
    speedup = quantization.get("speed", {}).get("wasm_2_threads_speedup")
    if not isinstance(speedup, (int, float)):
        return "no onnxruntime-web speed-up is recorded (bench/int8.py --record)"
    if speedup < MIN_WASM_SPEEDUP:
        return f"it is only {speedup:.2f}x as fast in onnxruntime-web (needs {MIN_WASM_SPEEDUP}x)"
    return ""


def choose_local_model(model_dir: Path, card: ModelCard) -> LocalModel:
    plain = LocalModel(card, model_dir / card.file, None, "the served model")
    card_path = model_dir / VARIANT_DIR / "model.json"
    if not card_path.is_file():
        return plain
    try:
        text = card_path.read_text(encoding="utf-8")
        variant = ModelCard.from_json(text)
        data = json.loads(text)
    except (OSError, ModelCardError, ValueError) as exc:
        log.warning("%s: not offered to browsers: %s", card_path, exc)
        return plain
    path = card_path.with_name(variant.file)
    problem = _offer_problem(data, variant, card) or ("" if path.is_file() else "file missing")
    if problem:
        log.info("INT8 variant %s not offered to browsers: %s", variant.name, problem)
        return plain
    speedup = data["quantization"]["speed"]["wasm_2_threads_speedup"]
    return LocalModel(
        variant, path, card.sha256, f"INT8 variant, {speedup:.2f}x as fast in onnxruntime-web"
    )
