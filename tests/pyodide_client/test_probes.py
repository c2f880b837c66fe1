"""Probes: HELLO -> PING -> PONG measures a node; anything else is a failure for the
router, and a refusal at capacity is a cool-down, not a fault."""

from __future__ import annotations

from dataclasses import replace

from pyodide_client.probes import Probes
from pyodide_client.protocol import Dtype, Error, ErrorCode, Hello, Ping, Pong, parse
from pyodide_client.routing import Router, RoutingSettings

A = "ws://a:8001/ws"
HELLO = Hello("node-a", "m", "ab" * 32, Dtype.UINT8, (3, 8, 8), ("cat",), 2)


def router() -> Router:
    made = Router(replace(RoutingSettings(), backoff_jitter=0.0))
    made.update_candidates([A], 0.0)
    made.probes_due(0.0)
    return made


def test_hello_ping_pong_records_the_round_trip() -> None:
    probes, routes = Probes(), router()
    ping = parse(probes.on_message(routes, A, HELLO.serialize(), 10.0))
    assert isinstance(ping, Ping)
    assert probes.on_message(routes, A, ping.answer().serialize(), 35.0) == b""
    assert routes.expected_ms(A) == 25.0


def test_a_pong_without_its_ping_is_a_failure() -> None:
    probes, routes = Probes(), router()
    assert probes.on_message(routes, A, Pong(99, 0.0).serialize(), 10.0) == b""
    assert routes.probes_due(20.0) == []  # backing off


def test_a_node_at_capacity_is_skipped_for_the_cool_down() -> None:
    probes, routes = Probes(), router()
    refusal = Error(ErrorCode.OVERLOADED, "full").serialize()
    assert probes.on_message(routes, A, refusal, 10.0) == b""
    cooldown = routes.settings.overload_cooldown_ms
    assert routes.probes_due(10.0 + cooldown - 1) == []
    assert routes.probes_due(10.0 + cooldown) == [A]


def test_garbage_and_a_closed_socket_are_failures() -> None:
    probes, routes = Probes(), router()
    assert probes.on_message(routes, A, b"nonsense", 10.0) == b""
    assert routes.probes_due(20.0) == []
    probes.on_failed(routes, A, 30.0)  # idempotent for the router: still backing off
    assert routes.probes_due(40.0) == []


def test_a_node_with_another_model_is_refused_at_the_probe_and_backs_off_slowly() -> None:
    # given a page expecting one model and a node whose HELLO announces another (issue 18)
    probes, routes = Probes(expected_sha256="cd" * 32), router()
    # when its probe gets the HELLO, then no PING is sent: it is refused, not measured
    assert probes.on_message(routes, A, HELLO.serialize(), 10.0) == b""
    refused_ms = routes.settings.backoff_refused_initial_ms
    assert routes.probes_due(10.0 + refused_ms - 1) == []
    assert routes.probes_due(10.0 + refused_ms) == [A]


def test_garbage_backs_off_on_its_own_slower_schedule() -> None:
    probes, routes = Probes(), router()
    assert probes.on_message(routes, A, b"nonsense", 10.0) == b""
    assert routes.probes_due(10.0 + routes.settings.backoff_max_ms) == []  # not the fast one
    assert routes.probes_due(10.0 + routes.settings.backoff_refused_initial_ms) == [A]
