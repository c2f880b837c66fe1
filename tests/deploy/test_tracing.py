"""One trace per sampled frame, from the page's stages through the node's: a real node and
web app export over OTLP/HTTP to an in-process receiver; unsampled frames give none."""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from websockets.sync.client import connect

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from pyodide_client.stream import Detections, NodeStream
from pyodide_client.tracing import FrameTracer
from tests.handshake import handshake
from tests.media import rgba_photo
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from webapp.app import create_app as create_webapp
from webapp.settings import WebappSettings

NODE_STAGES = {"node", "queue", "batch", "inference", "post"}
PAGE_STAGES = {"frame", "capture", "preprocess", "send", "draw"}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="edgesight-config">(.*?)</script>', html)
    assert match, "the page must carry its configuration"
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def post_json(url: str, body: object) -> int:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_a_sampled_frame_is_one_trace_from_the_page_to_the_node_and_unsampled_ones_none(
    receiver: OtlpReceiver, node_settings: NodeSettings
) -> None:
    node_app = create_node_app(replace(node_settings, otlp_endpoint=receiver.url))
    webapp_app = create_webapp(WebappSettings(node_urls=(), otlp_endpoint=receiver.url))
    tracer = FrameTracer(sample_rate=0.5, rng=random.Random(4))
    rgba, w, h = rgba_photo("chelsea")
    sampled_ids = []
    with ServerThread(node_app) as node, ServerThread(webapp_app) as webapp:
        with urllib.request.urlopen(f"{webapp.http_url}/", timeout=10) as response:
            assert page_config(response.read().decode())["trace"] == {
                "url": "/api/trace",
                "sample_rate": 0.01,
            }
        with connect(node.ws_url, compression=None, max_size=None, open_timeout=10) as conn:
            stream = NodeStream()
            assert handshake(conn, stream).welcome.takes_traces  # type: ignore[union-attr]
            for _ in range(6):
                t0 = time.perf_counter() * 1000
                frame = stream.encode_frame(rgba, w, h, capture_ms=t0, now_ms=t0)
                frame_id = int.from_bytes(frame[4:8], "little")
                trace = tracer.sample(frame_id)
                t1 = time.perf_counter() * 1000
                if trace is not None:
                    conn.send(trace.serialize())
                    sampled_ids.append(trace.trace_id.hex())
                conn.send(frame)
                events = stream.receive(conn.recv(timeout=30), now_ms=0.0)
                assert isinstance(events[0], Detections)
                t2 = time.perf_counter() * 1000
                stages = {"capture": (t0, t0 + 0.1), "preprocess": (t0 + 0.1, t1),
                          "send": (t1, t1 + 0.2), "draw": (t2, t2 + 1.0)}  # fmt: skip
                report = tracer.report(frame_id, stages, time.time() * 1000 - t2, node.ws_url)
                assert (report is None) == (trace is None)
                if report is not None:
                    assert post_json(f"{webapp.http_url}/api/trace", report) == 204
    # Leaving both servers flushed their exporters.
    assert 1 <= len(sampled_ids) < 6, "the seed samples some frames, not all"

    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in receiver.spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert set(by_trace) == set(sampled_ids)  # and none for the unsampled frames
    for spans in by_trace.values():
        names = {s.name for s in spans}
        assert names == NODE_STAGES | PAGE_STAGES
        by_name = {s.name: s for s in spans}
        frame, node_span = by_name["frame"], by_name["node"]
        assert frame.service == "edgesight-page"
        assert frame.parent_span_id == ""
        assert node_span.parent_span_id == frame.span_id  # the node hangs under the page
        assert node_span.service == "edgesight-node"
        assert node_span.attributes["node"] == "test-node"
        assert node_span.attributes["model"] == "nanodet-g-416"
        for name in ("queue", "batch"):
            assert by_name[name].parent_span_id == node_span.span_id
        for name in ("inference", "post"):
            assert by_name[name].parent_span_id == by_name["batch"].span_id
        for name in ("capture", "preprocess", "send", "draw"):
            assert by_name[name].parent_span_id == frame.span_id
        assert by_name["inference"].end_ns > by_name["inference"].start_ns


def test_a_trace_not_marked_sampled_records_nothing(
    receiver: OtlpReceiver, node_settings: NodeSettings
) -> None:
    tracer = FrameTracer(sample_rate=1.0, rng=random.Random(1))
    rgba, w, h = rgba_photo("chelsea")
    app = create_node_app(replace(node_settings, otlp_endpoint=receiver.url))
    with (
        ServerThread(app) as node,
        connect(node.ws_url, compression=None, max_size=None, open_timeout=10) as conn,
    ):
        stream = NodeStream()
        handshake(conn, stream)
        frame = stream.encode_frame(rgba, w, h, capture_ms=1.0, now_ms=1.0)
        trace = tracer.sample(int.from_bytes(frame[4:8], "little"))
        assert trace is not None
        conn.send(replace(trace, trace_flags=0).serialize())
        conn.send(frame)
        assert isinstance(stream.receive(conn.recv(timeout=30), now_ms=2.0)[0], Detections)
    assert receiver.spans == []


def test_without_a_collector_the_page_gets_no_trace_config_and_no_route() -> None:
    from starlette.testclient import TestClient

    client = TestClient(create_webapp(WebappSettings(node_urls=())))
    assert page_config(client.get("/").text)["trace"] is None
    assert client.post("/api/trace", json={}).status_code in (404, 405)


def test_a_node_without_a_collector_does_not_offer_traces(node_settings: NodeSettings) -> None:
    with (
        ServerThread(create_node_app(node_settings)) as node,
        connect(node.ws_url, compression=None, max_size=None, open_timeout=10) as conn,
    ):
        welcome = handshake(conn, NodeStream()).welcome
        assert welcome is not None
        assert not welcome.takes_traces
