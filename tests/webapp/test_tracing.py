"""POST /api/trace: a page's stages become spans under the page's own span id; bad reports
are refused with 4xx naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.testclient import TestClient

from webapp.report import ReportLimiter
from webapp.tracing import MAX_TRACE_BYTES, PageTracer, trace_route

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def report(**changes: Any) -> dict[str, Any]:
    return {
        "traceparent": TRACEPARENT,
        "time_origin_ms": 1.7e12,
        "node": "ws://gpu0:8001/ws",
        "stages": {"capture": [10.0, 11.0], "preprocess": [11.0, 14.5], "draw": [40.0, 41.0]},
        **changes,
    }


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def client(exported: InMemorySpanExporter) -> TestClient:
    tracer = PageTracer(exported, schedule_delay_ms=10)
    app = Starlette(routes=[trace_route(tracer, ReportLimiter())])
    app.state.tracer = tracer
    return TestClient(app)


def test_stages_become_children_of_the_pages_frame_span(
    client: TestClient, exported: InMemorySpanExporter
) -> None:
    assert client.post("/api/trace", json=report()).status_code == 204
    client.app.state.tracer.shutdown()  # type: ignore[attr-defined]
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert set(spans) == {"frame", "capture", "preprocess", "draw"}
    frame = spans["frame"]
    assert frame.context is not None
    assert f"{frame.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert f"{frame.context.span_id:016x}" == "00f067aa0ba902b7"
    assert frame.parent is None
    assert frame.attributes is not None
    assert frame.attributes["node"] == "ws://gpu0:8001/ws"
    assert spans["preprocess"].parent == frame.context
    assert spans["preprocess"].start_time == int((1.7e12 + 11.0) * 1e6)
    assert frame.end_time == int((1.7e12 + 41.0) * 1e6)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"traceparent": "01-xyz"}, "traceparent"),
        ({"traceparent": TRACEPARENT[:-2] + "00"}, "traceparent"),  # not sampled
        ({"time_origin_ms": "now"}, "time_origin_ms"),
        ({"stages": {"gpu": [1.0, 2.0]}}, "stages"),
        ({"stages": {"draw": [5.0, 4.0]}}, "stages.draw"),
        ({"stages": {"draw": [1.0, 1e9]}}, "stages.draw"),
        ({"stages": {}}, "stages"),
    ],
)
def test_bad_reports_are_422_naming_the_field(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    response = client.post("/api/trace", json=report(**changes))
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field)


def test_oversized_reports_are_413(client: TestClient) -> None:
    body = b'{"pad": "' + b"x" * MAX_TRACE_BYTES + b'"}'
    assert client.post("/api/trace", content=body).status_code == 413


def test_what_the_page_reports_is_what_the_route_accepts(exported: InMemorySpanExporter) -> None:
    import json
    import random

    from pyodide_client.tracing import PageTraces

    traces = PageTraces("/api/trace", 1.0, random.Random(2))
    assert traces.frame_sent(3, capture_ms=100.0, encode_start_ms=101.0) is not None
    traces.preprocessed(2.5, 104.0)
    traces.drawn(100.0, 1.0, 140.0, "ws://gpu0:8001/ws")
    tracer = PageTracer(exported)

    assert tracer.record(json.loads(traces.take_report(1.7e12)), "127.0.0.1") == 5
