"""Parsers for setting values that both services read from their environment, so the node
and the web app accept and refuse exactly the same spellings (issue 19: the node read
``EDGESIGHT_ALLOW_ANONYMOUS=ture`` as False while the web app refused it)."""

from __future__ import annotations

__all__ = ["BOOLEAN_EXPECTED", "parse_boolean"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
BOOLEAN_EXPECTED = "true or false (1/0, yes/no, on/off)"


def parse_boolean(raw: str) -> bool:
    """True or False for the spellings above (any case, surrounding spaces ignored);
    ValueError for anything else, so a typo never silently means 'off'."""
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected {BOOLEAN_EXPECTED}, got {raw!r}")
