"""The one writer of model.json (issue 19): canonical text, and no card a node would refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesight.model_card_file import card_text, write_model_card
from pyodide_client.model_card import ModelCardError

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "nanodet-g-416"
PRODUCT_CARD = MODEL_DIR / "model.json"


@pytest.mark.parametrize("committed", [PRODUCT_CARD, MODEL_DIR / "int8" / "model.json"])
def test_a_committed_card_is_written_back_byte_for_byte(tmp_path: Path, committed: Path) -> None:
    card = json.loads(committed.read_text(encoding="utf-8"))
    shuffled = dict(reversed(list(card.items())))

    parsed = write_model_card(tmp_path / "out", shuffled)

    assert (tmp_path / "out" / "model.json").read_bytes() == committed.read_bytes()
    assert parsed.name == card["name"]
    assert card_text(shuffled).endswith("}\n")


def test_a_card_the_contract_refuses_is_not_written(tmp_path: Path) -> None:
    card = json.loads(PRODUCT_CARD.read_text(encoding="utf-8"))
    card["sha256"] = "not hex"

    with pytest.raises(ModelCardError, match="sha256"):
        write_model_card(tmp_path, card)

    assert not (tmp_path / "model.json").exists()
