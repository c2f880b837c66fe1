"""Pages' spans for sampled frames (issue 12): ``POST /api/trace``, exported with the
OpenTelemetry SDK over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``. Without that setting
the route does not exist and pages are told no sample rate: tracing costs nothing.

A page that samples a frame (``pyodide_client.tracing.FrameTracer``) sends the node a
TRACE naming the frame, then reports its own stages here:

    {"traceparent": "00-<trace id>-<span id>-01", "time_origin_ms": 1732950000000.0,
     "node": "ws://gpu0:8001/ws",
     "stages": {"capture": [t0, t1], "preprocess": [t1, t2], "send": [t2, t3],
                "draw": [t4, t5]}}

Times are the page's ``performance.now()`` (ms) and ``time_origin_ms`` its
``performance.timeOrigin``. The web app records the page's ``frame`` span with exactly the
span id of the traceparent (the node's spans hang under it) and one child per stage.
Bodies over ``MAX_TRACE_BYTES``, unknown stages and impossible times are refused (4xx).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpu_backend.tracing import finished_span  # one span builder for both servers

from .report import ReportLimiter
from .request_body import read_bounded

__all__ = ["MAX_TRACE_BYTES", "PAGE_STAGES", "PageTracer", "TraceError", "trace_route"]

MAX_TRACE_BYTES = 2048
PAGE_STAGES = ("capture", "preprocess", "send", "draw")
MAX_SPAN_MS = 60_000.0  # a stage longer than a minute is no frame's
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
SCOPE = InstrumentationScope("edgesight.page")


class TraceError(ValueError):
    """A page trace report that cannot be used; the message names the field."""


class PageTracer:
    def __init__(self, exporter: SpanExporter, schedule_delay_ms: float = 1000.0) -> None:
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)
        self._resource = Resource.create({"service.name": "edgesight-page"})
        self._random = random.SystemRandom()

    @classmethod
    def for_endpoint(cls, endpoint: str) -> PageTracer:
        return cls(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"))

    def shutdown(self) -> None:
        self._processor.shutdown()  # type: ignore[no-untyped-call]  # flushes the queue

    def record(self, data: object, client: str) -> int:
        """Check one report and queue its spans; returns how many."""
        if not isinstance(data, Mapping):
            raise TraceError("body: expected a JSON object")
        match = TRACEPARENT.fullmatch(str(data.get("traceparent", "")))
        if match is None:
            raise TraceError("traceparent: expected 00-<32 hex>-<16 hex>-<2 hex>")
        trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
        if not trace_id or not span_id or not int(match.group(3), 16) & 1:
            raise TraceError("traceparent: expected non-zero ids and the sampled flag")
        origin_ms = data.get("time_origin_ms")
        if not _is_number(origin_ms) or not 0 < float(origin_ms) < 1e14:  # type: ignore[arg-type]
            raise TraceError("time_origin_ms: expected the page's performance.timeOrigin")
        stages = data.get("stages")
        if not isinstance(stages, Mapping) or not stages:
            raise TraceError("stages: expected an object of stage -> [start_ms, end_ms]")
        spans: list[tuple[str, float, float]] = []
        for name, times in stages.items():
            if name not in PAGE_STAGES:
                raise TraceError(f"stages: expected names among {', '.join(PAGE_STAGES)}")
            if not (
                isinstance(times, list)
                and len(times) == 2
                and all(_is_number(t) for t in times)
                and 0 <= times[0] <= times[1] <= times[0] + MAX_SPAN_MS
            ):
                raise TraceError(f"stages.{name}: expected [start_ms, end_ms], end >= start")
            spans.append((name, float(times[0]), float(times[1])))
        node = data.get("node")
        attributes = {"client.address": client}
        if isinstance(node, str) and len(node) <= 200:
            attributes["node"] = node

        def ns(ms: float) -> int:
            return int((float(origin_ms) + ms) * 1_000_000)  # type: ignore[arg-type]

        flags = TraceFlags(TraceFlags.SAMPLED)
        frame = SpanContext(trace_id, span_id, False, flags)
        start_ms = min(s for _, s, _ in spans)
        end_ms = max(e for _, _, e in spans)
        self._emit("frame", frame, None, ns(start_ms), ns(end_ms), attributes, SpanKind.CLIENT)
        for name, s, e in spans:
            child = SpanContext(trace_id, self._random.getrandbits(64) or 1, False, flags)
            self._emit(name, child, frame, ns(s), ns(e))
        return 1 + len(spans)

    def _emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, str] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        self._processor.on_end(
            finished_span(
                name, context, parent, self._resource, SCOPE, start_ns, end_ns, attributes,
                kind=kind,
            )
        )  # fmt: skip


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def trace_route(tracer: PageTracer, limiter: ReportLimiter | None = None) -> Route:
    limits = limiter if limiter is not None else ReportLimiter()

    async def trace(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if not limits.allow(client):
            return JSONResponse({"error": "too many trace reports"}, status_code=429)
        try:
            body = await read_bounded(request, MAX_TRACE_BYTES)
        except ClientDisconnect:
            return Response(status_code=400)
        if body is None:
            return JSONResponse({"error": f"over {MAX_TRACE_BYTES} bytes"}, 413)
        try:
            data: Any = json.loads(body)
            tracer.record(data, client)
        except TraceError as exc:
            return JSONResponse({"error": "invalid trace", "detail": str(exc)}, 422)
        except ValueError:
            return JSONResponse({"error": "invalid trace", "detail": "body: expected JSON"}, 422)
        return Response(status_code=204)

    return Route("/api/trace", trace, methods=["POST"])
