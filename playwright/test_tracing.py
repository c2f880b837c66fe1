"""Traces from a real page (issue 12): with a collector configured and every frame sampled,
the page sends TRACE before a frame and reports its own stages, and one trace holds the
page's frame span and the node's spans under it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import MODEL_PATH, BrowserPage, start_webapp

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def one_whole_trace(spans: list[ReceivedSpan]) -> bool:
    pages = {s.trace_id for s in spans if s.name == "frame"}
    nodes = {s.trace_id for s in spans if s.name == "node"}
    return bool(pages & nodes)


def test_a_sampled_frame_is_one_trace_from_the_page_to_the_node(
    receiver: OtlpReceiver, open_page: Callable[..., BrowserPage]
) -> None:
    settings = NodeSettings(
        port=0, model_path=MODEL_PATH, node_name="traced-node", otlp_endpoint=receiver.url
    )
    node_app = create_node_app(settings)
    with (
        ServerThread(node_app) as node,
        start_webapp((node.ws_url,), otlp_endpoint=receiver.url, trace_sample_rate=1.0) as web,
    ):
        browser = open_page(f"{web.http_url}/")
        # Spans leave in batches about once a second from both servers.
        receiver.wait_for(one_whole_trace, timeout_s=60)
        assert browser.console.errors == []

    spans = list(receiver.spans)
    trace_id = next(iter({s.trace_id for s in spans if s.name == "frame"}
                         & {s.trace_id for s in spans if s.name == "node"}))  # fmt: skip
    trace = {s.name: s for s in spans if s.trace_id == trace_id}
    assert {"frame", "capture", "preprocess", "send", "draw"} <= set(trace)
    assert {"node", "queue", "batch", "inference", "post"} <= set(trace)
    assert trace["node"].parent_span_id == trace["frame"].span_id
    assert trace["node"].attributes["node"] == "traced-node"
    assert trace["frame"].attributes["node"] == node.ws_url
