"""The page's public API, version 1: what a Playwright suite (or any script on the page)
may read without touching edgesight's internals (issue 19). Documented in
``docs/page-api.md``; a change to a shape below (a field renamed, removed or meaning
something else) is a new ``API_VERSION``; adding a field is not.

Three shapes, all plain JSON:

* ``page_state``: a snapshot of what the page shows (``window.edgesight.api.state()``).
* ``public_detections``: one drawn result (the ``edgesight:detections`` window event and
  ``window.edgesight.api.lastDetections``).
* ``public_server``: a server accepted the page's stream (the ``edgesight:server`` window
  event and ``window.edgesight.api.lastServer``).

``static/page-api.js`` only hands these out (and stamps ``drawn_ms``, the one moment only
the page's JS sees); every field is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .view import Snapshot, badge, source_problem

__all__ = ["API_VERSION", "WHERE", "page_state", "public_detections", "public_server"]

API_VERSION = 1
# the page's internal modes, in the API's words
WHERE: Mapping[str, str | None] = {"node": "server", "local": "browser", "none": None}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def page_state(shown: Snapshot) -> dict[str, Any]:
    """What the page shows now (schema: docs/page-api.md, "state")."""
    mark = badge(shown)
    detecting = mark["kind"] in ("node", "local")
    server = None
    if shown.mode == "node" and shown.node is not None:
        server = {
            "name": shown.node,
            "url": shown.node_url,
            "transport": shown.transport,
            "identity": shown.identity,
        }
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
        "browser_backend": shown.backend,
        "browser_threads": shown.threads,
        "browser_frame_ms": _ms(shown.local_frame_ms),
        "browser_standby": shown.has_local_standby,
        "browser_note": shown.backend_note,
        "browser_problem": shown.local_problem,
        "token_problem": shown.token_problem,
    }


def public_detections(
    source: str,
    node: str | None,
    frame_id: int,
    capture_ms: float,
    boxes: list[dict[str, Any]],
    round_trip_ms: float | None = None,
) -> dict[str, Any]:
    """One drawn result (schema: docs/page-api.md, "detections"); ``boxes`` as the overlay
    draws them (frame pixels). ``drawn_ms`` is stamped by the page when it has drawn them."""
    return {
        "version": API_VERSION,
        "where": WHERE.get(source),
        "server": node if source == "node" else None,
        "frame_id": frame_id,
        "capture_ms": capture_ms,
        "round_trip_ms": _ms(round_trip_ms),
        "drawn_ms": None,
        "objects": [
            {
                "label": box["label"],
                "score": round(float(box["score"]), 4),
                "box": [round(float(box[k]), 1) for k in ("x1", "y1", "x2", "y2")],
            }
            for box in boxes
        ],
    }


def public_server(
    name: str, url: str, transport: str, identity: str | None, at_ms: float
) -> dict[str, Any]:
    """A server accepted the page's stream (schema: docs/page-api.md, "server"): its name
    from its HELLO, the URL as opened, how frames travel, who it accepted the page as
    (its WELCOME), and when (``performance.now()`` of the page)."""
    return {
        "version": API_VERSION,
        "name": name,
        "url": url,
        "transport": transport,
        "identity": identity,
        "at_ms": at_ms,
    }
