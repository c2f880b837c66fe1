"""What the page shows about itself, sans-I/O: the facts behind the status line, badge,
details and Timings rows (worded by ``view.py``), the raw ``status`` tests and benchmarks
read, and the report the page POSTs to the web app.

Functions of a ``PageFacts`` (``page_core.PageCore`` is one); nothing here changes it.
"""

from __future__ import annotations

import json
from typing import Protocol

from .dashboard import Dashboard
from .local import LocalEngine
from .local_path import LocalPath
from .model_card import ModelCard
from .node_link import NodeLink
from .page_api import page_state
from .page_origin import PageOrigin
from .page_source import PageSource
from .routing import Router
from .token_refresh import TokenKeeper
from .view import (
    Snapshot,
    badge,
    details,
    source_problem,
    status_line,
    timing_rows,
    timings_note,
)

__all__ = [
    "PageFacts",
    "api_state_json",
    "report_json",
    "stats_json",
    "status_json",
    "view_json",
    "wire",
]


class PageFacts(Protocol):
    @property
    def mode(self) -> str: ...
    @property
    def link(self) -> NodeLink: ...
    @property
    def card(self) -> ModelCard: ...
    @property
    def local(self) -> LocalEngine: ...
    @property
    def dashboard(self) -> Dashboard: ...
    @property
    def tokens(self) -> TokenKeeper: ...
    @property
    def route_note(self) -> str: ...
    @property
    def router(self) -> Router: ...
    @property
    def local_path(self) -> LocalPath: ...
    @property
    def origin(self) -> PageOrigin: ...
    @property
    def source(self) -> PageSource: ...
    @property
    def is_kiosk(self) -> bool: ...
    @property
    def refusal(self) -> str: ...
    def security_problem(self) -> str: ...


def wire(page: PageFacts, now_ms: float) -> dict[str, object]:
    """Frames on the wire: the link's current encoding (not a probe's), bytes per frame,
    Mbit/s and why (issue 9), and how many may be in flight (issue 16)."""
    shown: dict[str, object] = {**page.dashboard.wire(now_ms), "note": ""}
    stream = page.link.stream
    if stream is not None and page.link.is_ready:
        shown["encoding"] = stream.encoding.encoding.name.lower()
        shown["note"] = stream.encoding.note
        shown["in_flight"] = stream.window  # K, adapted to the link (issue 16)
    return shown


def _model(page: PageFacts, mode: str) -> str:
    """The model actually running: the node's, or the browser's (its INT8 variant when the
    web app offers one), not the page's nominal one."""
    if mode == "node":
        return page.link.model or page.card.name
    if mode == "local":
        return page.local_path.model_name
    return page.card.name


def _shown_url(page: PageFacts, text: str | None) -> str | None:
    """Node URLs as the page opens them: ``{hostname}`` filled in (app.js does the same)."""
    return page.origin.fill_host(text) if text is not None else None


def snapshot(page: PageFacts, now_ms: float) -> Snapshot:
    mode = page.mode
    summary = page.dashboard.summary(now_ms)
    return Snapshot(
        mode=mode,
        node=page.link.name if mode == "node" else None,
        node_url=_shown_url(page, page.link.url),
        model=_model(page, mode),
        threads=page.local.threads,
        local_state=page.local.state.value,
        route=_shown_url(page, page.route_note) or "",
        fps=summary["fps"],
        latency_ms=summary["latency_ms"],
        round_trip_ms=summary["round_trip_ms"],
        wire=wire(page, now_ms),
        source=page.source.state.value,
        frames_flow=page.dashboard.is_drawing(now_ms),
        is_kiosk=page.is_kiosk,
        refusal=page.refusal,
        camera_failure=page.source.camera_failure.value if page.source.camera_failure else "",
        transport=page.link.transport if page.link.url else None,
        backend=page.local.backend,
        backend_note=page.local.backend_note,
        identity=_identity(page),
        local_frame_ms=page.router.local_ms,
        has_local_standby=bool(page.local.standby),
        local_problem=page.local.problem,
        token_problem=page.tokens.problem.message if page.tokens.problem else "",
    )


def _identity(page: PageFacts) -> str | None:
    """Who the current node accepted the page as (its WELCOME); None before, or for a node
    that predates AUTH."""
    stream = page.link.stream
    if stream is None or not page.link.is_ready or stream.welcome is None:
        return None
    return stream.welcome.identity


def api_state_json(page: PageFacts, now_ms: float) -> str:
    """The page API's state snapshot (``page_api.page_state``, docs/page-api.md)."""
    return json.dumps(page_state(snapshot(page, now_ms)))


def view_json(page: PageFacts, now_ms: float) -> str:
    """Everything the page shows in words (``view.py``), as JSON: the badge, the status
    line, the details lines and the Timings rows of the current mode."""
    shown = snapshot(page, now_ms)
    return json.dumps(
        {
            "mode": shown.mode,
            "badge": badge(shown),
            "line": status_line(shown),
            "details": details(shown),
            "timings": timing_rows(shown.mode, page.dashboard.stage_table(now_ms)),
            "security": page.security_problem(),
            "timings_note": timings_note(shown),
            "source_problem": source_problem(shown),
            "refusal": shown.refusal,
        }
    )


def status_json(page: PageFacts, now_ms: float) -> str:
    """The raw facts behind ``view_json`` (tests and benchmarks read them)."""
    mode = page.mode
    tokens = page.tokens
    return json.dumps(
        {
            "mode": mode,
            "node": page.link.name if mode == "node" else None,
            "node_url": page.link.url,
            "model": _model(page, mode),
            "threads": page.local.threads,
            "local_backend": page.local.backend,
            "local_backend_note": page.local.backend_note,
            "local_standby": page.local.standby or None,
            "local_state": page.local.state.value,
            "local_problem": page.local.problem,
            "route": page.route_note,
            "source": page.source.state.value,
            "refusal": page.refusal,
            "security": page.security_problem(),
            "identity": tokens.identity or None,
            "token_problem": tokens.problem.message if tokens.problem else None,
            **page.dashboard.summary(now_ms),
            "wire": wire(page, now_ms),
        }
    )


def report_json(page: PageFacts, now_ms: float) -> str:
    """The summary the page POSTs to the web app's report_url (JSON)."""
    return json.dumps(page.dashboard.report(now_ms, page.mode, page.link.url))


def stats_json(page: PageFacts, now_ms: float) -> str:
    """p50/p95 per stage over the last seconds, for the stats panel."""
    return json.dumps(page.dashboard.stage_table(now_ms))
