"""pyodide_client.node_intake: the nodes this page may use, from its config and the registry."""

from __future__ import annotations

import json

import pytest

from pyodide_client.node_intake import NodeIntake
from pyodide_client.page_origin import PageOrigin

HTTPS = PageOrigin("https:", "edge.test", "8443", is_secure_context=True)
HTTP = PageOrigin("http:", "localhost", "8000", is_secure_context=True)


def test_registered_nodes_come_first_then_configured_ones_not_listed() -> None:
    intake = NodeIntake(HTTP, ("ws://a:8001/ws", "ws://b:8001/ws"))
    listing = {"nodes": [{"url": "ws://c:8001/ws", "id": "c1"}, {"url": "ws://a:8001/ws"}]}
    registry = intake.take_listing(json.dumps(listing))
    assert [info.url for info in registry] == ["ws://c:8001/ws", "ws://a:8001/ws"]
    candidates = intake.candidates()
    assert [c if isinstance(c, str) else c.url for c in candidates] == [
        "ws://c:8001/ws",
        "ws://a:8001/ws",
        "ws://b:8001/ws",
    ]
    assert intake.node_ids == {"ws://c:8001/ws": "c1"}  # a registered node's own token


def test_an_https_page_refuses_ws_nodes_and_says_so_in_a_few_lines() -> None:
    intake = NodeIntake(HTTPS, ("ws://a:8001/ws", "wss://b:8001/ws"))
    assert intake.static_urls == ["wss://b:8001/ws"]
    intake.take_listing(json.dumps([{"url": f"ws://n{i}:8001/ws"} for i in range(6)]))
    problem = intake.security_problem()
    assert "ws://a:8001/ws" in problem
    assert "(4 more ws:// nodes not used.)" in problem
    assert intake.registry == []


def test_a_listing_that_is_not_a_list_is_refused_by_name() -> None:
    intake = NodeIntake(HTTP, ())
    with pytest.raises(ValueError, match="expected a list of nodes, got str"):
        intake.take_listing(json.dumps({"nodes": "ws://a:8001/ws"}))


def test_each_unusable_entry_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    intake = NodeIntake(HTTP, ())
    with caplog.at_level("WARNING", logger="pyodide_client.node_intake"):
        for _ in range(3):  # three polls of the same list
            intake.take_listing(json.dumps([{"url": "ws://0:99999/ws"}]))
    assert len(caplog.records) == 1
