"""The class the page's JavaScript holds inside Pyodide: three calls, nothing else (issue 19).

``BrowserClient(config_json, model_card_json)`` is the page core (``page_core.PageCore``:
node choice, links, frames, the in-browser engine, what the page shows) with the JSON edge
JavaScript talks to (``page_edge.PageEdge``):

* ``handle(event_json, data=None) -> reply_json``: what happened (a socket's message, a
  frame, the timer, ...) in; the commands to carry out, and when to report the timer
  next, out. docs/page-core.md lists the events and commands.
* ``take(blob_id) -> bytes``: the bytes a command names (a message to send, a tensor for
  the local worker, a warm-up sample), once.
* ``api_state(now_ms) -> json``: the public page API's snapshot (docs/page-api.md).

Runs unchanged under CPython: tests and the cluster driver (tests/cluster/driver.py) call
the same three methods the browser does.
"""

from __future__ import annotations

from .page_core import PageCore
from .page_edge import PageEdge
from .page_events import Buffer

__all__ = ["BrowserClient"]


class BrowserClient(PageCore):
    """One page: its core, and the edge JavaScript calls."""

    def __init__(self, config_json: str, model_card_json: str) -> None:
        super().__init__(config_json, model_card_json)
        self.edge = PageEdge(self)

    def handle(self, event_json: str, data: Buffer | None = None) -> str:
        """One event from the page (JSON) -> ``{"commands": [...], "next_tick_ms"}``."""
        return self.edge.handle(event_json, data)

    def take(self, blob_id: int) -> bytes:
        """The bytes a command named by ``blob``; each is taken once."""
        return self.edge.blobs.take(int(blob_id))
