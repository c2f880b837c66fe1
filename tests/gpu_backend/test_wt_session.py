"""The WebTransport session adapter, sans-I/O: a client and a node QUIC connection joined
in memory (datagrams handed across, a fake clock), H3 events in, protocol messages out."""

from __future__ import annotations

import ssl

import pytest
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StopSendingReceived, StreamDataReceived

from gpu_backend.quic_cert import make_hashed_certificate
from gpu_backend.wt_session import (
    ControlMessage,
    FrameAbandoned,
    FrameMessage,
    Input,
    SessionClosed,
    SessionRequest,
    WtLimits,
    WtSession,
)
from pyodide_client.protocol import Detection, Ping, Result
from pyodide_client.quic_framing import DATAGRAM_ANSWER_MAX_BYTES, ControlReader, frame_control

CLIENT = ("127.0.0.1", 50000)
NODE = ("127.0.0.1", 4433)
ORIGIN = "https://app.example"


class Pair:
    """A client QuicConnection (+H3) and a node one (+WtSession), in memory."""

    def __init__(self, limits: WtLimits | None = None, client_datagram_bytes: int = 1200) -> None:
        self.now_s = 0.0
        cert = make_hashed_certificate(["localhost"], 3600.0)
        node_config = QuicConfiguration(
            is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=1200
        )
        node_config.certificate = cert.certificate
        node_config.private_key = cert.private_key
        client_config = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=client_datagram_bytes
        )
        client_config.verify_mode = ssl.CERT_NONE
        self.client = QuicConnection(configuration=client_config)
        self.client_h3 = H3Connection(self.client, enable_webtransport=True)
        self.node = QuicConnection(
            configuration=node_config,
            original_destination_connection_id=self.client.original_destination_connection_id,
        )
        self.session = WtSession(self.node, limits or WtLimits(max_message_bytes=4096))
        self.client_events: list[object] = []
        self.raw: set[int] = set()  # the page's control streams
        self.client.connect(NODE, now=self.now_s)
        self.exchange()

    def exchange(self) -> list[Input]:
        """Hand datagrams across until both sides are quiet; the node's inputs."""
        inputs: list[Input] = []
        for _ in range(50):
            moved = False
            for data, _addr in self.client.datagrams_to_send(now=self.now_s):
                self.node.receive_datagram(data, CLIENT, now=self.now_s)
                moved = True
            while (event := self.node.next_event()) is not None:
                inputs += self.session.receive(event)
            for data, _addr in self.node.datagrams_to_send(now=self.now_s):
                self.client.receive_datagram(data, NODE, now=self.now_s)
                moved = True
            while (event := self.client.next_event()) is not None:
                self.client_events.append(event)
                if isinstance(event, StreamDataReceived) and event.stream_id in self.raw:
                    continue  # aioquic's H3 does not know bidirectional WebTransport streams
                self.client_events += self.client_h3.handle_event(event)
            if not moved:
                return inputs
            self.now_s += 0.001
        raise AssertionError("the connections never went quiet")

    def connect(self, path: str = "/wt", origin: str | None = ORIGIN) -> int:
        stream_id = self.client.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport"),
            (b":scheme", b"https"),
            (b":authority", b"localhost:4433"),
            (b":path", path.encode()),
        ]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        self.client_h3.send_headers(stream_id, headers)
        return stream_id

    def status(self, stream_id: int) -> int:
        for event in self.client_events:
            if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                return int(dict(event.headers)[b":status"])
        raise AssertionError(f"no response on stream {stream_id}")

    def open(self) -> int:
        session_id = self.connect()
        assert self.exchange() == [SessionRequest("/wt", ORIGIN, "localhost:4433")]
        self.session.accept()
        self.exchange()
        assert self.status(session_id) == 200
        return session_id


def test_a_connect_is_a_request_with_its_path_and_origin() -> None:
    pair = Pair()
    stream_id = pair.connect("/wt?x=1", origin=None)
    assert pair.exchange() == [SessionRequest("/wt?x=1", None, "localhost:4433")]
    pair.session.refuse(403)
    pair.exchange()
    assert pair.status(stream_id) == 403


def test_other_requests_get_404_and_a_second_session_429() -> None:
    pair = Pair()
    session_id = pair.open()
    get = pair.client.get_next_available_stream_id()
    pair.client_h3.send_headers(
        get,
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/")],
        end_stream=True,
    )
    second = pair.connect()
    assert pair.exchange() == []
    assert (pair.status(get), pair.status(second)) == (404, 429)
    assert pair.session.session_id == session_id


def test_control_messages_both_ways_the_node_speaking_once_the_page_opened_its_stream() -> None:
    pair = Pair()
    session_id = pair.open()
    pair.session.send(b"ES\x01\x01hello")  # the HELLO, before the page's stream exists
    ping = Ping(1, 2.0).serialize()
    control = pair.client_h3.create_webtransport_stream(session_id)
    pair.raw.add(control)
    pair.client.send_stream_data(control, frame_control(ping) + frame_control(ping)[:3])
    assert pair.exchange() == [ControlMessage(ping)]
    pair.client.send_stream_data(control, frame_control(ping)[3:])
    assert pair.exchange() == [ControlMessage(ping)]
    reader = ControlReader(4096)
    got = [
        m
        for e in pair.client_events
        if isinstance(e, StreamDataReceived) and e.stream_id == control
        for m in reader.feed(e.data)
    ]
    assert got == [b"ES\x01\x01hello"]


def test_a_frame_stream_is_one_message_and_its_answer_comes_on_its_own_stream() -> None:
    pair = Pair()
    session_id = pair.open()
    frame = pair.client_h3.create_webtransport_stream(session_id, is_unidirectional=True)
    pair.client.send_stream_data(frame, b"ES\x01\x02" + bytes(1000))
    assert pair.exchange() == []
    pair.client.send_stream_data(frame, bytes(1000), end_stream=True)
    assert pair.exchange() == [FrameMessage(frame, b"ES\x01\x02" + bytes(2000))]
    answer = Result(1, 0.0, 1.0, 2.0, 3.0, 1, ()).serialize()
    pair.session.send(answer)
    assert pair.session.unacked_answers == 1
    pair.exchange()
    assert pair.session.acked_answer_bytes() == len(answer)  # the page acknowledged it
    assert pair.session.unacked_answers == 0


def test_a_reset_frame_is_abandoned_and_what_came_of_it_forgotten() -> None:
    pair = Pair()
    session_id = pair.open()
    frame = pair.client_h3.create_webtransport_stream(session_id, is_unidirectional=True)
    pair.client.send_stream_data(frame, b"ES\x01\x02" + bytes(500))
    pair.exchange()
    pair.client.reset_stream(frame, 0)
    assert pair.exchange() == [FrameAbandoned(frame, by_peer=True)]
    assert pair.session.frames_abandoned == 1


def test_one_frame_too_many_uploading_stops_the_oldest() -> None:
    pair = Pair(WtLimits(max_message_bytes=4096, max_frame_streams=2))
    session_id = pair.open()
    streams = []
    for _ in range(3):
        stream = pair.client_h3.create_webtransport_stream(session_id, is_unidirectional=True)
        pair.client.send_stream_data(stream, b"ES\x01\x02")
        streams.append(stream)
    assert pair.exchange() == [FrameAbandoned(streams[0], by_peer=False)]
    stops = [e.stream_id for e in pair.client_events if isinstance(e, StopSendingReceived)]
    assert stops == [streams[0]]


def test_a_frame_over_the_limit_closes_the_session() -> None:
    pair = Pair(WtLimits(max_message_bytes=1000))
    session_id = pair.open()
    frame = pair.client_h3.create_webtransport_stream(session_id, is_unidirectional=True)
    pair.client.send_stream_data(frame, bytes(1001))
    (closed,) = pair.exchange()
    assert isinstance(closed, SessionClosed)
    assert closed.is_violation
    assert "at most 1000 bytes" in closed.reason


def test_a_second_control_stream_closes_the_session() -> None:
    pair = Pair()
    session_id = pair.open()
    for _ in range(2):
        stream = pair.client_h3.create_webtransport_stream(session_id)
        pair.client.send_stream_data(stream, frame_control(b"x"))
    inputs = pair.exchange()
    assert inputs[0] == ControlMessage(b"x")
    assert isinstance(inputs[-1], SessionClosed)
    assert "one bidirectional (control) stream" in inputs[-1].reason


@pytest.mark.parametrize("how", ["capsule", "end"])
def test_the_page_closing_its_session_is_seen(how: str) -> None:
    pair = Pair()
    session_id = pair.open()
    body = (0).to_bytes(4, "big")
    data = b"\x80\x00\x28\x43" + bytes([len(body)]) + body if how == "capsule" else b""
    pair.client.send_stream_data(session_id, data, end_stream=True)
    (closed,) = pair.exchange()
    assert closed == SessionClosed("the page closed the session")


def _answer(boxes: int) -> bytes:
    box = Detection(0, 0.9, 1.0, 2.0, 3.0, 4.0)
    return Result(1, 0.0, 1.0, 2.0, 3.0, 1, (box,) * boxes).serialize()


def _datagrams(pair: Pair) -> list[bytes]:
    return [e.data for e in pair.client_events if isinstance(e, DatagramReceived)]


def test_a_small_answer_also_goes_as_a_datagram_in_a_packet_of_its_own() -> None:
    pair = Pair()
    session_id = pair.open()
    answer = _answer(3)
    assert pair.session.send_datagram_copy(answer)
    datagram_packets = pair.node.datagrams_to_send(now=pair.now_s)  # flushed first, alone
    pair.session.send(answer)
    stream_packets = pair.node.datagrams_to_send(now=pair.now_s)
    assert (len(datagram_packets), len(stream_packets)) == (1, 1)
    # The stream's packet is lost: the page has its answer all the same, no probe timeout.
    for data, _addr in datagram_packets:
        pair.client.receive_datagram(data, NODE, now=pair.now_s)
    while (event := pair.client.next_event()) is not None:
        pair.client_events += pair.client_h3.handle_event(event)
    got = [e for e in pair.client_events if isinstance(e, DatagramReceived)]
    assert [(e.stream_id, e.data) for e in got] == [(session_id, answer)]
    assert pair.session.datagram_copies == 1


def test_no_datagram_copy_when_too_large_turned_off_or_not_taken() -> None:
    pair = Pair()
    pair.open()
    large = next(a for n in range(1, 100) if len(a := _answer(n)) > DATAGRAM_ANSWER_MAX_BYTES)
    assert not pair.session.send_datagram_copy(large)  # its stream alone
    assert not pair.session.send_datagram_copy(Ping(1, 0.0).serialize())  # not an answer
    off = Pair(WtLimits(max_message_bytes=4096, answer_datagrams=False))
    off.open()
    assert not off.session.send_datagram_copy(_answer(1))
    small = Pair(client_datagram_bytes=64)  # the page's stack takes datagrams of 64 bytes
    small.open()
    assert not small.session.send_datagram_copy(_answer(3))
    for each in (pair, off, small):
        each.exchange()
        assert _datagrams(each) == []


def test_no_datagram_copy_before_the_session_is_open() -> None:
    pair = Pair()
    pair.connect()
    pair.exchange()
    assert not pair.session.send_datagram_copy(_answer(1))
