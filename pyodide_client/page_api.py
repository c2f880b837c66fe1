"""The page's public API, version 1: what a Playwright suite (or any script on the page)
may read without touching edgesight's internals (issue 19). Documented in
``docs/page-api.md``; a change to either shape below is a new ``API_VERSION``.

Two shapes, both plain JSON:

* ``page_state``: a snapshot of what the page shows (``window.edgesight.api.state()``).
* ``public_detections``: one drawn result (the ``edgesight:detections`` window event and
  ``window.edgesight.api.lastDetections``).

``static/page-api.js`` only hands these out; every field is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .view import Snapshot, badge, source_problem

__all__ = ["API_VERSION", "WHERE", "page_state", "public_detections"]

API_VERSION = 1
# the page's internal modes, in the API's words
WHERE: Mapping[str, str | None] = {"node": "server", "local": "browser", "none": None}


def page_state(shown: Snapshot) -> dict[str, Any]:
    """What the page shows now (schema: docs/page-api.md, "state")."""
    mark = badge(shown)
    detecting = mark["kind"] in ("node", "local")
    server = None
    if shown.mode == "node" and shown.node is not None:
        server = {"name": shown.node, "url": shown.node_url}
    return {
        "version": API_VERSION,
        "detecting": detecting,
        "where": WHERE.get(shown.mode) if detecting else None,
        "badge": mark["text"],
        "server": server,
        "model": shown.model,
        "fps": shown.fps,
        "latency_ms": shown.latency_ms,
        "problem": shown.refusal or source_problem(shown),
        "browser_engine": shown.local_state,
    }


def public_detections(
    source: str, node: str | None, frame_id: int, capture_ms: float, boxes: list[dict[str, Any]]
) -> dict[str, Any]:
    """One drawn result (schema: docs/page-api.md, "detections"); ``boxes`` as the overlay
    draws them (frame pixels)."""
    return {
        "version": API_VERSION,
        "where": WHERE.get(source),
        "server": node if source == "node" else None,
        "frame_id": frame_id,
        "capture_ms": capture_ms,
        "objects": [
            {
                "label": box["label"],
                "score": round(float(box["score"]), 4),
                "box": [round(float(box[k]), 1) for k in ("x1", "y1", "x2", "y2")],
            }
            for box in boxes
        ],
    }
