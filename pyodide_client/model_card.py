"""What a client and a node must agree on about a model: its name, file, sha256, input
size and class names. Parsed from the ``model.json`` sidecar that travels with the model
(the node reads it from disk; the browser fetches it from the webapp)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelCard", "ModelCardError"]


class ModelCardError(ValueError):
    """A model.json that lacks a field or has one of the wrong kind."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    file: str
    sha256: str
    input_size_px: int
    class_names: tuple[str, ...]

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"model.json is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelCardError(f"model.json must hold an object, got {type(data).__name__}")
        name = _field(data, "name", str)
        file = _field(data, "file", str)
        sha256 = _field(data, "sha256", str).lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ModelCardError(f"model.json sha256 must be 64 hex digits, got {sha256!r}")
        model_input = _field(data, "input", dict)
        shape = model_input.get("shape")
        if not (isinstance(shape, list) and len(shape) == 4 and shape[1] == 3):
            raise ModelCardError(f"model.json input.shape must be [batch, 3, H, W], got {shape!r}")
        if shape[2] != shape[3] or not isinstance(shape[2], int) or shape[2] <= 0:
            raise ModelCardError(
                "model.json input.shape must be square [batch, 3, S, S] with S a positive "
                f"integer, got {shape!r}"
            )
        if model_input.get("dtype") != "uint8":
            raise ModelCardError(
                f"model.json input.dtype must be uint8, got {model_input.get('dtype')!r}"
            )
        classes = _field(data, "classes", list)
        if not classes or not all(isinstance(c, str) for c in classes):
            raise ModelCardError("model.json classes must be a non-empty list of strings")
        return cls(name, file, sha256, shape[2], tuple(classes))


def _field(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ModelCardError(
            f"model.json field {key!r} must be a {kind.__name__}, got {type(value).__name__}"
        )
    return value
