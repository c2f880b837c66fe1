"""The web app's Prometheus metrics (issue 12): one ``CollectorRegistry`` per app.

- the registry's API is counted by ``MetricsMiddleware`` from outside the routes (heartbeats
  by answer, ``GET /api/nodes`` latency, store failures answered 503), so the registry
  code stays free of metrics;
- the registry's size by site and state, the store's health and node expiries are read when
  Prometheus scrapes (``WebappMetrics.refresh``): a node missing from the listing that did
  not deregister has expired;
- pages' own figures (``POST /api/report``, see ``webapp/report.py``) are observed here with
  labels from closed sets only, so no report can add series.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpu_backend.metrics import is_authorised  # one bearer check for both servers' /metrics

from .registry import NodeRegistry
from .registry_store import StoreUnavailable

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MetricsMiddleware",
    "WebappMetrics",
    "is_authorised",
    "metrics_route",
]

MAX_SITES = 50  # more distinct site labels than this are counted as "other"
HEARTBEAT_ANSWERS = {200: "refreshed", 201: "registered", 401: "unauthorized", 403: "forbidden",
                     413: "too_large", 422: "invalid", 503: "unavailable"}  # fmt: skip
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CLIENT_LATENCY_BUCKETS_S = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
FPS_BUCKETS = (1, 2, 5, 8, 10, 15, 20, 25, 30, 45, 60)
CLIENT_MODES = ("node", "local", "none")


class WebappMetrics:
    def __init__(self, registry: NodeRegistry) -> None:
        self._node_registry = registry
        self.registry = CollectorRegistry()
        r = self.registry
        self.nodes = Gauge(
            "edgesight_registry_nodes",
            "Nodes the registry lists, by site and state (live, degraded, static).",
            ["site", "state"],
            registry=r,
        )
        self.store_up = Gauge(
            "edgesight_registry_store_up",
            "1 when the registry store (Redis or memory) answered the last scrape.",
            registry=r,
        )
        self.store_errors = Counter(
            "edgesight_registry_store_errors",
            "Registry requests and scrapes the store failed (Redis unreachable).",
            registry=r,
        )
        self.heartbeats = Counter(
            "edgesight_registry_heartbeats",
            "Heartbeats by answer (registered, refreshed, unauthorized, invalid, ...).",
            ["result"],
            registry=r,
        )
        self.expired = Counter(
            "edgesight_registry_expired_nodes",
            "Nodes dropped for missed heartbeats (seen at scrapes).",
            registry=r,
        )
        self.list_seconds = Histogram(
            "edgesight_registry_list_seconds",
            "GET /api/nodes latency.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        # pages' reports
        self.client_reports = Counter(
            "edgesight_client_reports", "Reports pages sent, by answer.", ["result"], registry=r
        )
        self.client_fps = Histogram(
            "edgesight_client_fps", "Frames drawn per second, as pages report.", ["mode"],
            buckets=FPS_BUCKETS, registry=r,
        )  # fmt: skip
        self.client_latency = Histogram(
            "edgesight_client_grab_to_drawn_seconds",
            "Capture-to-drawn time pages report, by the page's own percentile (p50, p95).",
            ["mode", "percentile"],
            buckets=CLIENT_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.client_frames = Counter(
            "edgesight_client_frames", "Frames pages drew, by mode and node.",
            ["mode", "node"], registry=r,
        )  # fmt: skip
        self.client_dropped = Counter(
            "edgesight_client_frames_dropped",
            "Frames pages sent that were never drawn, by mode and node.",
            ["mode", "node"],
            registry=r,
        )
        for answer in ("registered", "refreshed", "unauthorized", "invalid"):
            self.heartbeats.labels(answer)
        for answer in ("accepted", "invalid", "rate_limited", "too_large"):
            self.client_reports.labels(answer)
        self.store_up.set(1)
        self._known_ids: set[str] = set()
        self._left: set[str] = set()  # deregistered since the last refresh
        self.node_labels: dict[str, str] = {}  # node URL -> id, from the last listing

    # -- scrape ----------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the registry once; called before each scrape is rendered."""
        try:
            nodes = await self._node_registry.nodes()
        except StoreUnavailable:
            self.store_errors.inc()
            self.store_up.set(0)
            return
        self.store_up.set(1)
        self.observe_listing(nodes)

    def observe_listing(self, nodes: Iterable[dict[str, Any]]) -> None:
        counts: dict[tuple[str, str], int] = {}
        sites: set[str] = set()
        ids: set[str] = set()
        labels: dict[str, str] = {}
        for node in nodes:
            if node.get("static"):
                key = ("", "static")
            else:
                site = str(node.get("site") or "")
                if site not in sites and len(sites) >= MAX_SITES:
                    site = "other"
                sites.add(site)
                key = (site, "degraded" if node.get("degraded") else "live")
                ids.add(str(node["id"]))
                labels[str(node["url"])] = str(node["id"])
            counts[key] = counts.get(key, 0) + 1
        self.nodes.clear()
        for (site, state), count in counts.items():
            self.nodes.labels(site, state).set(count)
        for state in ("live", "degraded"):  # an empty registry reads 0, not "no data"
            if not any(k[1] == state for k in counts):
                self.nodes.labels("", state).set(0)
        departed = self._known_ids - ids
        gone = departed - self._left
        if gone:
            self.expired.inc(len(gone))
        self._forget(departed)
        self._known_ids = ids
        self._left = set()
        self.node_labels = labels

    def _forget(self, node_ids: Iterable[str]) -> None:
        """Drop the series labelled with nodes that left the registry (expired or
        deregistered): every node id that ever reported otherwise stays in every scrape
        (issue 17: 736 lines became 2,884 after 1,000 ids came and went). Reports label
        only listed nodes (``node_labels``), so a departed id is not re-added."""
        for node_id in node_ids:
            for mode in CLIENT_MODES:
                for counter in (self.client_frames, self.client_dropped):
                    with contextlib.suppress(KeyError):  # that page mode never reported
                        counter.remove(mode, node_id)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- requests ----------------------------------------------------------------------------
    def answered(self, method: str, path: str, status: int, seconds: float) -> None:
        if path == "/api/nodes/register" and method == "POST":
            self.heartbeats.labels(HEARTBEAT_ANSWERS.get(status, "other")).inc()
        elif path == "/api/nodes" and method == "GET":
            self.list_seconds.observe(seconds)
        elif method == "DELETE" and path.startswith("/api/nodes/") and status == 204:
            self._left.add(path.removeprefix("/api/nodes/"))
        if status == 503 and path.startswith("/api/nodes"):
            self.store_errors.inc()


class MetricsMiddleware:
    """Times and counts the registry API's answers (plain ASGI: streaming-safe, no body
    buffering)."""

    def __init__(self, app: ASGIApp, metrics: WebappMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/nodes"):
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.answered(scope["method"], path, status, time.perf_counter() - started_s)


def metrics_route(metrics: WebappMetrics, token: str) -> Route:
    """``GET /metrics`` for Prometheus, behind the bearer ``token`` (EDGESIGHT_METRICS_TOKEN)."""

    async def metrics_page(request: Request) -> Response:
        if not is_authorised(request.headers.get("authorization", ""), token):
            return Response(
                "metrics need the bearer token\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await metrics.refresh()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics_page)
