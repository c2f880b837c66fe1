"""Writing a model card: the one writer of ``model.json`` (``scripts/build_model.py``,
``edgesight model import`` and ``edgesight model quantize`` all call it).

The text is canonical (sorted keys, indent 2, a trailing newline), so a rebuilt model's card
is byte for byte the committed one, and a card is checked against the contract the node and
the page apply (``pyodide_client.model_card``) before it is written: no tool writes a card
that a node would refuse at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pyodide_client.model_card import ModelCard

__all__ = ["CARD_FILE", "card_text", "write_model_card"]

CARD_FILE = "model.json"


def card_text(card: Mapping[str, object]) -> str:
    """The canonical text of a card."""
    return json.dumps(card, indent=2, sort_keys=True) + "\n"


def write_model_card(out_dir: Path, card: Mapping[str, object]) -> ModelCard:
    """Check ``card`` (``ModelCardError`` names what is wrong), then write it as
    ``out_dir/model.json``; the parsed card comes back."""
    text = card_text(card)
    parsed = ModelCard.from_json(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CARD_FILE).write_text(text, encoding="utf-8")
    return parsed
