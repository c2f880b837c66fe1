"""static/*.js calls the Python client through at most three methods (issue 19): events go
in through ``handle``, bytes come out through ``take``, the page API reads ``api_state``.
Any other call is a decision or a format that belongs in Python."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "static"
MAX_CALLS = 3
# ``client.name(`` or ``this._client.name(``; not ``pyodide_client.browser``
CALL = re.compile(r"(?<![\w$])_?client\s*\.\s*([A-Za-z_$][\w$]*)\s*\(")


def client_calls(source: str) -> set[str]:
    return set(CALL.findall(source))


def test_the_finder_sees_calls_and_only_calls() -> None:
    source = """
      const reply = client.handle(json, data);  this._client.api_state(now);
      client . take (id); import pyodide_client.browser; const c = python.client;
      window.edgesight.client.view(performance.now());
    """
    assert client_calls(source) == {"handle", "api_state", "take", "view"}


def test_the_page_calls_at_most_three_client_methods() -> None:
    calls: dict[str, set[str]] = {}
    for path in sorted(STATIC.glob("*.js")):
        for name in client_calls(path.read_text(encoding="utf-8")):
            calls.setdefault(name, set()).add(path.name)
    assert len(calls) <= MAX_CALLS, f"expected at most {MAX_CALLS} client methods, got {calls}"
    assert set(calls) == {"handle", "take", "api_state"}
