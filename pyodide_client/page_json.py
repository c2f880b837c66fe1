"""The JSON edge's formats (issue 19): one event JavaScript reports, parsed with errors that
name the field that is missing or wrong, and the bytes a command names, held until JS
takes them (``Blobs``): bytes never go into JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from .page_events import Buffer, as_bytes

__all__ = ["MAX_BLOBS", "Blobs", "JsonEvent", "payload"]

log = logging.getLogger(__name__)

# Blobs JS has not taken yet; it takes each as it runs the command naming it, so more than
# this means it stopped taking them: the oldest go.
MAX_BLOBS = 256


class Blobs:
    """Bytes waiting for JS's ``take``, by id."""

    def __init__(self) -> None:
        self._blobs: dict[int, bytes] = {}
        self._last_id = 0

    def put(self, data: bytes) -> int:
        if len(self._blobs) >= MAX_BLOBS:
            oldest = next(iter(self._blobs))
            log.warning("blob %d was never taken; dropped", oldest)
            del self._blobs[oldest]
        self._last_id += 1
        self._blobs[self._last_id] = data
        return self._last_id

    def take(self, blob_id: int) -> bytes:
        try:
            return self._blobs.pop(blob_id)
        except KeyError:
            raise ValueError(f"expected a blob id a command named, got {blob_id!r}") from None

    def __len__(self) -> int:
        return len(self._blobs)


class JsonEvent:
    """One parsed event: its fields, read with errors that name the missing or wrong one."""

    def __init__(self, event_json: str) -> None:
        data = json.loads(event_json)
        if not isinstance(data, Mapping):
            raise ValueError(f"page event: expected a JSON object, got {type(data).__name__}")
        self._data = data
        self.name = self.text("event")
        self.now_ms = self.number("now_ms")

    def _get(self, key: str) -> object:
        if key not in self._data:
            raise ValueError(f"page event {self._data.get('event')!r}: expected {key!r}")
        return self._data[key]

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key) if default is None else self._data.get(key, default)
        if not isinstance(value, str):
            raise ValueError(f"page event field {key!r}: expected a string, got {value!r}")
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"page event field {key!r}: expected a number, got {value!r}")
        return float(value)

    def whole(self, key: str) -> int:
        value = self.number(key)
        if value != int(value):
            raise ValueError(f"page event field {key!r}: expected a whole number, got {value!r}")
        return int(value)

    def flag(self, key: str) -> bool:
        value = self._data.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"page event field {key!r}: expected true or false, got {value!r}")
        return value


def payload(data: Buffer | None, event: JsonEvent) -> bytes | bytearray | memoryview:
    if data is None:
        raise ValueError(f"page event {event.name!r}: expected its bytes as the second argument")
    return as_bytes(data)
