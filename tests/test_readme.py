"""The README documents every setting the services read (issue 19: it had fallen behind)."""

from __future__ import annotations

from pathlib import Path

from gpu_backend.settings import NodeSettings
from webapp.settings import WebappSettings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_environment_variable_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    keys = {*NodeSettings.ENV.values(), *WebappSettings.ENV.values()}
    missing = sorted(key for key in keys if f"`{key}`" not in text)
    assert missing == [], f"settings the README does not name: {missing}"
