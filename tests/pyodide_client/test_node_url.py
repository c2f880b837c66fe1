"""Node URLs: what a browser's WebSocket constructor accepts, and nothing it refuses."""

from __future__ import annotations

import pytest

from pyodide_client.node_url import (
    BAD_PORTS,
    NodeUrl,
    NodeUrlError,
    node_url_problem,
    parse_node_url,
)


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("ws://127.0.0.1:8001/ws", NodeUrl("ws", "127.0.0.1", 8001, "/ws")),
        ("wss://gpu-1.example:8443/ws", NodeUrl("wss", "gpu-1.example", 8443, "/ws")),
        ("ws://node", NodeUrl("ws", "node", 80, "/")),
        (
            "wss://node.example./ws?token=a%20b",
            NodeUrl("wss", "node.example.", 443, "/ws?token=a%20b"),
        ),
        ("ws://[::1]:8001/ws", NodeUrl("ws", "[::1]", 8001, "/ws")),
        ("ws://[2001:db8::7]/ws", NodeUrl("ws", "[2001:db8::7]", 80, "/ws")),
        ("ws://GPU_box-2.lab:65535/", NodeUrl("ws", "GPU_box-2.lab", 65535, "/")),
        ("ws://xn--bcher-kva.example:8001/ws", NodeUrl("ws", "xn--bcher-kva.example", 8001, "/ws")),
        ("ws://host:2/ws", NodeUrl("ws", "host", 2, "/ws")),
    ],
)
def test_a_url_browsers_take_is_parsed(url: str, parsed: NodeUrl) -> None:
    assert parse_node_url(url) == parsed
    assert node_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://0:99999/ws", "port from 1 to 65535"),  # the kiosk that reloaded every 11 s
        ("ws://host:0/ws", "port from 1 to 65535"),
        ("ws://host:80a/ws", "port from 1 to 65535"),
        ("ws://host:/ws", "port from 1 to 65535"),
        ("ws://host:6000/ws", "blocked list"),
        ("ws://[::1/ws", "IPv6 address in brackets"),
        ("ws://::1:8001/ws", "IPv6 address in brackets"),
        ("ws://[::1%eth0]:8001/ws", "IPv6 address inside"),
        ("ws://[fe80::zz]:8001/ws", "IPv6 address inside"),
        ("ws://[::]:8001/ws", "not [::]"),
        ("ws://0.0.0.0:8001/ws", "not 0.0.0.0"),
        ("ws://1.2.3.256:8001/ws", "0 to 255"),
        ("ws://1.2.3.4.5:8001/ws", "dotted IPv4"),
        ("ws://999:8001/ws", "dotted IPv4"),
        ("ws://host.0x1f:8001/ws", "dotted IPv4"),
        ("ws://01.2.3.4:8001/ws", "dotted IPv4"),
        ("ws://user:pw@host:8001/ws", "user name or password"),
        ("ws://host:8001/ws#frag", "fragment"),
        ("http://host:8001/ws", "ws:// or wss://"),
        ("WS://host:8001/ws", "ws:// or wss://"),
        ("host:8001/ws", "ws:// or wss://"),
        ("ws:/host/ws", "ws:// or wss://"),
        ("ws:///ws", "host name or address"),
        ("ws://:8001/ws", "host name or address"),
        ("ws://ho st:8001/ws", "without spaces"),
        ("ws://bücher.example/ws", "punycode"),
        ("ws://host\\evil:8001/ws", "backslash"),
        ("ws://-host:8001/ws", "labels"),
        ("ws://a..b:8001/ws", "labels"),
        ("ws://" + "a" * 64 + ":8001/ws", "labels"),
        ("ws://host:8001/w s", "without spaces"),
        ("ws://host:8001/w<s>", "path and query"),
        ("ws://host:8001/%zz", "path and query"),
        ("ws://{hostname}:8001/ws", "template"),
        ("ws://h/" + "a" * 2048, "at most 2048"),
        ("", "got ''"),
    ],
)
def test_a_url_browsers_refuse_is_refused_with_what_was_expected(url: str, expected: str) -> None:
    with pytest.raises(NodeUrlError, match="expected") as caught:
        parse_node_url(url)
    assert expected in str(caught.value)
    assert node_url_problem(url) == str(caught.value)


@pytest.mark.parametrize("value", [None, 8001, b"ws://host/ws", ["ws://host/ws"]])
def test_a_non_string_is_refused(value: object) -> None:
    assert node_url_problem(value) == f"expected a ws:// or wss:// URL, got {type(value).__name__}"


def test_the_hostname_template_is_taken_where_allowed() -> None:
    parsed = parse_node_url("ws://{hostname}:8001/ws", allow_template=True)
    assert parsed.is_template
    assert not parsed.is_secure
    assert node_url_problem("ws://{hostname}.lab:8001/ws", allow_template=True) is not None


def test_the_blocked_ports_are_the_fetch_standards() -> None:
    assert {22, 25, 6666, 10080, 4190, 6679} <= BAD_PORTS
    assert not {80, 443, 8000, 8001, 8080, 8443} & BAD_PORTS


def test_the_message_does_not_grow_with_the_url() -> None:
    problem = node_url_problem("ws://h:99999/" + "a" * 1000)
    assert problem is not None
    assert len(problem) < 200


def test_node_url_error_is_a_value_error() -> None:
    assert issubclass(NodeUrlError, ValueError)
