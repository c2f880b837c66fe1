"""A node's live connections (``gpu_backend/connections.py``), without a socket: who may
open one, what each gets, and what closed ones leave behind."""

from __future__ import annotations

import logging

import pytest

from gpu_backend.access import AnonymousAccess
from gpu_backend.admission import Admission
from gpu_backend.connection import Connection, ConnectionLimits, Send, Submit
from gpu_backend.connections import Connections
from gpu_backend.origins import OriginPolicy
from pyodide_client.protocol import (
    Auth,
    Dropped,
    DropReason,
    Dtype,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Result,
    encodings_mask,
    parse,
)

SHAPE = (3, 4, 4)
HELLO = Hello("n", "m", "ab" * 32, Dtype.UINT8, SHAPE, ("cat",), 2).serialize()
FRAME = Frame(1, 0.0, Dtype.UINT8, SHAPE, bytes(48)).serialize()


class Outcomes:
    """A ConnectionObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.outcomes: list[object] = []

    def stream_opened(self) -> None:
        pass

    def stream_closed(self) -> None:
        pass

    def stream_refused(self, code: int) -> None:
        pass

    def frame_received(self) -> None:
        pass

    def refused(self, code: int) -> None:
        pass

    def outcome(self, outcome: Result | Dropped | Error) -> None:
        self.outcomes.append(outcome)


def connections(observer: Outcomes | None = None, refused: int = 3) -> Connections:
    return Connections(
        origins=OriginPolicy(("https://app.example",)),
        hello=HELLO,
        limits=ConnectionLimits(max_refused_messages=refused, max_outbox_bytes=64 * 1024),
        admission=Admission("n", 4, 4, 4),
        authenticator=AnonymousAccess(),
        frame_shape=SHAPE,
        encodings=encodings_mask([]),
        features=0,
        observer=observer or Outcomes(),
    )


def test_a_page_of_another_origin_gets_no_connection_and_one_sampled_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = connections()
    with caplog.at_level(logging.INFO, "gpu_backend.connections"):
        for i in range(50):
            assert node.open("https://evil.example", "10.0.0.1", 100.0 + i / 1000) is None
    assert [r.getMessage() for r in caplog.records] == [
        "refused a WebSocket from 10.0.0.1: origin 'https://evil.example'"
    ]
    assert node.open("https://app.example", "10.0.0.1", 100.0) is not None


def test_two_nodes_in_one_process_do_not_share_a_log_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # issue 19: the samplers were module-level, one budget for every app of a process
    with caplog.at_level(logging.INFO, "gpu_backend.connections"):
        for node in (connections(), connections()):
            assert node.open("https://evil.example", "10.0.0.1", 5.0) is None
    assert len(caplog.records) == 2


def test_accepted_connections_check_frames_against_the_model_shape() -> None:
    conn = connections().open("https://app.example", "10.0.0.1", 0.0)
    assert conn is not None
    assert parse(conn.open(0.0)[0].data) == parse(HELLO)  # type: ignore[union-attr]
    conn.receive(Auth("").serialize(), 0.0)
    (submit,) = conn.receive(FRAME, 0.0)
    assert isinstance(submit, Submit)
    assert submit.image.shape == SHAPE
    wrong = Frame(2, 0.0, Dtype.UINT8, (3, 2, 8), bytes(48)).serialize()
    (send,) = conn.receive(wrong, 0.0)
    assert isinstance(send, Send)
    error = parse(send.data)
    assert isinstance(error, Error)
    assert error.code is ErrorCode.WRONG_SHAPE


def test_outcomes_reach_the_observer_through_the_connection() -> None:
    observer = Outcomes()
    conn = connections(observer).open("https://app.example", "10.0.0.1", 0.0)
    assert conn is not None
    conn.open(0.0)
    conn.receive(Auth("").serialize(), 0.0)
    conn.receive(FRAME, 0.0)
    dropped = Dropped(1, DropReason.SUPERSEDED)
    conn.outcome(dropped, 1.0)
    assert observer.outcomes == [dropped]


def test_a_closed_connection_leaves_its_counts_behind(caplog: pytest.LogCaptureFixture) -> None:
    node = connections(refused=0)
    conn = node.open("https://app.example", "10.0.0.7", 0.0)
    assert conn is not None
    node.add(conn)
    assert len(node) == 1
    conn.open(0.0)
    conn.receive_text(0.0)  # refused, over a budget of 0: closed
    with caplog.at_level(logging.INFO, "gpu_backend.connections"):
        node.closed(conn, node.next_stream_id(), 1.0)
    assert len(node) == 0
    assert node.policy_closes["TOO_MANY_ERRORS"] == 1
    assert node.peak_outbox_bytes >= len(HELLO)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("connection 1 from 10.0.0.7 closed (TOO_MANY_ERRORS)")


def test_a_connection_built_without_reporting_leaves_outcomes_to_its_driver() -> None:
    # drivers written before connections.py count outcomes themselves: no double count
    observer = Outcomes()
    conn: Connection[object] = Connection(
        hello=HELLO,
        limits=ConnectionLimits(),
        admission=Admission("n", 4, 4, 4),
        authenticator=AnonymousAccess(),
        decode=lambda frame: frame,
        address="10.0.0.1",
        observer=observer,
    )
    conn.open(0.0)
    conn.receive(Auth("").serialize(), 0.0)
    conn.receive(FRAME, 0.0)
    conn.outcome(Dropped(1, DropReason.SUPERSEDED), 1.0)
    assert observer.outcomes == []


def test_a_set_s_add_and_discard_still_work() -> None:
    node = connections()
    conn = node.open("https://app.example", "10.0.0.1", 0.0)
    assert conn is not None
    conn.open(0.0)
    node.add(conn)
    assert conn in node
    node.discard(conn)
    assert conn not in node
    assert node.peak_outbox_bytes == len(HELLO)
