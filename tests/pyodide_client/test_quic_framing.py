"""How protocol messages ride a WebTransport session: bytes in, messages out."""

from __future__ import annotations

import pytest

from pyodide_client.protocol import (
    Auth,
    Detection,
    Dropped,
    DropReason,
    Dtype,
    Frame,
    Hello,
    Ping,
    ProtocolError,
    Result,
    Welcome,
)
from pyodide_client.quic_framing import (
    DATAGRAM_ANSWER_MAX_BYTES,
    AnswerCopies,
    ControlReader,
    FrameAssembler,
    FramingError,
    frame_control,
    has_datagram_copy,
    rides_own_stream,
)

PING = Ping(7, 1.5).serialize()


def test_control_messages_carry_a_little_endian_length() -> None:
    assert frame_control(PING) == len(PING).to_bytes(4, "little") + PING
    assert frame_control(b"") == b"\x00\x00\x00\x00"


def test_the_control_reader_cuts_messages_at_any_chunk_boundary() -> None:
    auth = Auth("token", 3).serialize()
    wire = frame_control(PING) + frame_control(auth) + frame_control(PING)
    for step in (1, 3, 5, len(wire)):
        reader = ControlReader(1024)
        messages = []
        for start in range(0, len(wire), step):
            messages += reader.feed(wire[start : start + step])
        assert messages == [PING, auth, PING]
        reader.finish()  # nothing left over


def test_a_message_announced_too_large_is_refused_before_it_is_buffered() -> None:
    reader = ControlReader(100)
    with pytest.raises(FramingError, match="at most 100 bytes, got one announced at 101"):
        reader.feed((101).to_bytes(4, "little"))
    assert ControlReader(101).feed((101).to_bytes(4, "little")) == []


def test_a_control_stream_ending_inside_a_message_is_an_error() -> None:
    reader = ControlReader(1024)
    reader.feed(frame_control(PING)[:-1])
    with pytest.raises(FramingError, match="inside a message"):
        reader.finish()


def test_a_frame_is_whole_only_at_its_fin_and_bounded() -> None:
    assembler = FrameAssembler(10)
    assert assembler.feed(b"abcd", is_end=False) is None
    assert assembler.feed(b"efgh", is_end=False) is None
    assert assembler.feed(b"ij", is_end=True) == b"abcdefghij"
    with pytest.raises(FramingError, match="at most 10 bytes, got 11"):
        FrameAssembler(10).feed(bytes(11), is_end=False)


def test_frames_and_their_answers_ride_their_own_streams_the_rest_the_control_one() -> None:
    frame = Frame(1, 0.0, Dtype.UINT8, (1,), b"\x00").serialize()
    result = Result(1, 0.0, 1.0, 2.0, 3.0, 1, ()).serialize()
    dropped = Dropped(1, DropReason.SUPERSEDED).serialize()
    hello = Hello("n", "m", "0" * 64, Dtype.UINT8, (3, 4, 4), ("a",), 2).serialize()
    assert [rides_own_stream(m) for m in (frame, result, dropped)] == [True] * 3
    control = (hello, PING, Auth("", 1).serialize(), Welcome(1, 0, "x").serialize())
    assert [rides_own_stream(m) for m in control] == [False] * 4
    with pytest.raises(ProtocolError):
        rides_own_stream(b"no")


def _result(frame_id: int, boxes: int = 1) -> bytes:
    box = Detection(15, 0.9, 0.1, 0.2, 0.3, 0.4)
    return Result(frame_id, 1.0, 2.0, 3.0, 4.0, 1, (box,) * boxes).serialize()


def test_small_answers_have_a_datagram_copy_frames_controls_and_large_answers_not() -> None:
    assert has_datagram_copy(_result(1))
    assert has_datagram_copy(Dropped(2, DropReason.SUPERSEDED).serialize())
    large = next(r for n in range(1, 200) if len(r := _result(1, n)) > DATAGRAM_ANSWER_MAX_BYTES)
    assert not has_datagram_copy(large)
    assert not has_datagram_copy(PING)


def test_each_answer_is_taken_once_whichever_copy_comes_first() -> None:
    copies = AnswerCopies()
    one, two = _result(1), _result(2)
    assert copies.is_first(one)  # its datagram
    assert copies.is_first(two)  # another frame's answer is not a copy
    assert not copies.is_first(one)  # its stream copy
    assert not copies.is_first(two)
    assert copies.duplicates == 2
    assert [copies.is_first(PING), copies.is_first(PING)] == [True, True]  # not answers
    assert [copies.is_first(b"junk"), copies.is_first(b"junk")] == [True, True]  # protocol's


def test_answers_without_a_datagram_copy_and_lost_datagrams_cost_no_memory() -> None:
    copies = AnswerCopies(remembered=4)
    large = next(r for n in range(1, 200) if len(r := _result(9, n)) > DATAGRAM_ANSWER_MAX_BYTES)
    assert [copies.is_first(large), copies.is_first(large)] == [True, True]  # stream only
    for frame_id in range(100):  # datagrams lost: each answer seen once, on its stream
        assert copies.is_first(_result(frame_id))
    assert len(copies._seen) == 4
    assert copies.is_first(_result(0))  # long forgotten: taken (its twin never came)
