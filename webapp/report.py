"""``POST /api/report``: a page's summary of what its user sees (issue 12), every ~10 s.

    {"mode": "node" | "local" | "none", "node_url": "ws://..." | null, "fps": 29.5,
     "latency_p50_ms": 48.0, "latency_p95_ms": 61.0, "frames": 290, "dropped": 3}

``frames`` and ``dropped`` count since the page's previous report. The body is at most
``MAX_REPORT_BYTES``, every field is checked (422 names the field), and each client address
may send ``REPORT_BURST`` reports at once and one per ``REPORT_INTERVAL_S`` after that (429).
Labels come from closed sets: the mode is one of three words and the node is the id the
registry lists for that URL, else "other", so a report can never add a series.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .metrics import CLIENT_MODES, WebappMetrics
from .request_body import read_bounded

__all__ = ["MAX_REPORT_BYTES", "ReportLimiter", "parse_report", "report_route"]

MAX_REPORT_BYTES = 2048
REPORT_INTERVAL_S = 2.0  # sustained: one per 2 s per address (pages: PageTiming, 10 s)
REPORT_BURST = 5
MAX_TRACKED_CLIENTS = 10_000
MAX_COUNT = 100_000  # frames in one report interval; more is not a real page


class ReportError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def _number(data: dict[str, Any], name: str, maximum: float) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(name, f"expected a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= maximum):
        raise ReportError(name, f"expected 0..{maximum:g}, got {value!r}")
    return float(value)


def parse_report(data: object) -> dict[str, Any]:
    """The checked report; raises ReportError naming the first bad field."""
    if not isinstance(data, dict):
        raise ReportError("body", f"expected a JSON object, got {type(data).__name__}")
    mode = data.get("mode")
    if mode not in CLIENT_MODES:
        raise ReportError("mode", f"expected one of {', '.join(CLIENT_MODES)}, got {mode!r:.40}")
    node_url = data.get("node_url")
    if node_url is not None and not (isinstance(node_url, str) and len(node_url) <= 2048):
        raise ReportError("node_url", "expected a URL of at most 2048 characters or null")
    return {
        "mode": mode,
        "node_url": node_url,
        "fps": _number(data, "fps", 1000),
        "latency_p50_ms": _number(data, "latency_p50_ms", 600_000),
        "latency_p95_ms": _number(data, "latency_p95_ms", 600_000),
        "frames": int(_number(data, "frames", MAX_COUNT)),
        "dropped": int(_number(data, "dropped", MAX_COUNT)),
    }


class ReportLimiter:
    """A token bucket per client address; the least recently seen addresses are forgotten
    past ``MAX_TRACKED_CLIENTS``, so memory stays bounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        now_s = self._clock()
        tokens, then_s = self._buckets.pop(client, (float(REPORT_BURST), now_s))
        tokens = min(REPORT_BURST, tokens + (now_s - then_s) / REPORT_INTERVAL_S)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now_s)
        while len(self._buckets) > MAX_TRACKED_CLIENTS:
            self._buckets.popitem(last=False)
        return allowed


def report_route(metrics: WebappMetrics, limiter: ReportLimiter | None = None) -> Route:
    limits = limiter if limiter is not None else ReportLimiter()

    async def report(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if not limits.allow(client):
            metrics.client_reports.labels("rate_limited").inc()
            return JSONResponse(
                {"error": f"at most one report per {REPORT_INTERVAL_S:g} s"},
                status_code=429,
                headers={"Retry-After": str(math.ceil(REPORT_INTERVAL_S))},
            )
        try:
            raw = await read_bounded(request, MAX_REPORT_BYTES)
        except ClientDisconnect:
            return Response(status_code=400)
        if raw is None:
            metrics.client_reports.labels("too_large").inc()
            return JSONResponse({"error": f"report over {MAX_REPORT_BYTES} bytes"}, 413)
        try:
            checked = parse_report(json.loads(raw))
        except ValueError as exc:  # ReportError, JSONDecodeError, UnicodeDecodeError
            metrics.client_reports.labels("invalid").inc()
            detail = str(exc) if isinstance(exc, ReportError) else "body: expected JSON"
            return JSONResponse({"error": "invalid report", "detail": detail}, 422)
        metrics.client_reports.labels("accepted").inc()
        mode = checked["mode"]
        node = "none"
        if checked["node_url"] is not None:
            node = metrics.node_labels.get(checked["node_url"], "other")
        metrics.client_fps.labels(mode).observe(checked["fps"])
        if checked["frames"]:  # a page that drew nothing has no latency to tell
            metrics.client_latency.labels(mode, "p50").observe(checked["latency_p50_ms"] / 1e3)
            metrics.client_latency.labels(mode, "p95").observe(checked["latency_p95_ms"] / 1e3)
        metrics.client_frames.labels(mode, node).inc(checked["frames"])
        metrics.client_dropped.labels(mode, node).inc(checked["dropped"])
        return Response(status_code=204)

    return Route("/api/report", report, methods=["POST"])
