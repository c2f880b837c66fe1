"""The node's connection policy, driven with bytes and a fake clock (no socket)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gpu_backend.access import ANONYMOUS, AccessDenied, AnonymousAccess, Grant
from gpu_backend.admission import Admission
from gpu_backend.connection import (
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN_LATER,
    Action,
    Close,
    Connection,
    ConnectionLimits,
    ConnectionState,
    Send,
    Submit,
    TraceNext,
)
from pyodide_client.protocol import (
    TRACE_FEATURE,
    Auth,
    Dropped,
    DropReason,
    Dtype,
    Error,
    ErrorCode,
    Frame,
    FrameEncoding,
    Hello,
    Image,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Trace,
    Welcome,
    encodings_mask,
    parse,
)

HELLO = Hello("n", "m", "ab" * 32, Dtype.UINT8, (3, 4, 4), ("cat",), 2).serialize()
SHAPE = (3, 4, 4)
LIMITS = ConnectionLimits(
    max_in_flight=2,
    handshake_timeout_s=5.0,
    idle_timeout_s=30.0,
    max_refused_messages=3,
    max_outbox_bytes=64 * 1024,
)


def frame(frame_id: int = 1, shape: tuple[int, ...] = SHAPE) -> bytes:
    size = 1
    for dim in shape:
        size *= dim
    return Frame(frame_id, 0.0, Dtype.UINT8, shape, bytes(size)).serialize()


def decode(message: Frame | Image) -> str:
    if isinstance(message, Image):
        message.check(SHAPE[2], SHAPE[1])
        return f"picture-{message.frame_id}"
    message.check(Dtype.UINT8, SHAPE)
    return f"image-{message.frame_id}"


@dataclass
class Tokens:
    """An authenticator: known tokens -> grants; the empty token only if anonymous."""

    grants: dict[str, Grant] = field(default_factory=dict)
    anonymous: bool = False
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    def authenticate(self, token: str, origin: str | None) -> Grant:
        self.seen.append((token, origin))
        if token in self.grants:
            return self.grants[token]
        if not token and self.anonymous:
            return Grant.anonymous()
        if not token:
            raise AccessDenied(ErrorCode.AUTH_REQUIRED, "a token is required")
        raise AccessDenied(ErrorCode.AUTH_FAILED, "forged token")


def admission(max_streams: int = 4, per_identity: int = 2, per_address: int = 3) -> Admission:
    return Admission("n", max_streams, per_identity, per_address)


def connect(
    authenticator: object | None = None,
    limits: ConnectionLimits = LIMITS,
    slots: Admission | None = None,
    address: str = "10.0.0.1",
    now_s: float = 0.0,
) -> tuple[Connection[str], list[Action[str]]]:
    conn: Connection[str] = Connection(
        hello=HELLO,
        limits=limits,
        admission=slots if slots is not None else admission(),
        authenticator=authenticator or AnonymousAccess(),  # type: ignore[arg-type]
        decode=decode,
        address=address,
        origin="https://app.example",
    )
    return conn, conn.open(now_s)


def sent(actions: list[Action[str]]) -> list[object]:
    """The messages among the actions, parsed, and the close, if any."""
    out: list[object] = []
    for action in actions:
        out.append(parse(action.data) if isinstance(action, Send) else action)
    return out


def streaming(
    authenticator: object | None = None, token: str = "", **kwargs: object
) -> Connection[str]:
    conn, _ = connect(authenticator, **kwargs)  # type: ignore[arg-type]
    actions = conn.receive(Auth(token).serialize(), 0.0)
    assert isinstance(parse(actions[0].data), Welcome)  # type: ignore[union-attr]
    return conn


def error_of(actions: list[Action[str]]) -> Error:
    message = sent(actions)[0]
    assert isinstance(message, Error), actions
    return message


# -- handshake -----------------------------------------------------------------------------
def test_the_node_speaks_first_and_the_socket_holds_no_slot() -> None:
    slots = admission()
    conn, actions = connect(slots=slots)
    assert actions == [Send(HELLO)]
    assert conn.state is ConnectionState.HANDSHAKE
    assert slots.streams_open == 0


def test_auth_is_answered_with_welcome_and_takes_a_slot() -> None:
    slots = admission()
    tokens = Tokens({"good": Grant("alice", expires_in_s=60.0)})
    conn, _ = connect(tokens, slots=slots)
    auth = Auth("good", encodings_mask([FrameEncoding.RAW, FrameEncoding.JPEG]))
    welcome = sent(conn.receive(auth.serialize(), 1.0))
    assert welcome == [Welcome(encodings_mask([FrameEncoding.RAW]), 60_000, "alice")]
    assert conn.state is ConnectionState.STREAMING
    assert conn.identity == "alice"
    assert slots.streams_open == 1
    assert tokens.seen == [("good", "https://app.example")]


def test_an_anonymous_welcome_never_expires() -> None:
    conn, _ = connect()
    assert sent(conn.receive(Auth("").serialize(), 0.0)) == [Welcome(1, 0, ANONYMOUS)]


@pytest.mark.parametrize(
    ("token", "code"), [("forged", ErrorCode.AUTH_FAILED), ("", ErrorCode.AUTH_REQUIRED)]
)
def test_a_refused_token_closes_with_its_reason(token: str, code: ErrorCode) -> None:
    slots = admission()
    conn, _ = connect(Tokens(), slots=slots)
    actions = conn.receive(Auth(token).serialize(), 0.0)
    assert error_of(actions).code is code
    assert actions[-1] == Close(CLOSE_POLICY, "access denied", code)
    assert conn.state is ConnectionState.CLOSED
    assert slots.streams_open == 0
    assert conn.receive(Ping(1, 0.0).serialize(), 0.1) == []  # nothing after the close


def test_an_old_client_is_served_anonymously_where_anonymous_is_allowed() -> None:
    slots = admission()
    conn, _ = connect(Tokens(anonymous=True), slots=slots)
    actions = conn.receive(frame(7), 0.0)
    assert len(actions) == 1
    assert isinstance(actions[0], Submit)
    assert actions[0].frame.frame_id == 7
    assert actions[0].image == "image-7"
    assert conn.identity == ANONYMOUS
    assert slots.streams_open == 1


def test_an_old_client_needs_auth_where_tokens_are_required() -> None:
    slots = admission()
    conn, _ = connect(Tokens(), slots=slots)
    actions = conn.receive(frame(7), 0.0)
    assert error_of(actions).code is ErrorCode.AUTH_REQUIRED
    assert actions[-1] == Close(CLOSE_POLICY, "auth required", ErrorCode.AUTH_REQUIRED)
    assert slots.streams_open == 0


def test_a_bad_first_frame_is_refused_without_taking_a_slot() -> None:
    slots = admission()
    conn, _ = connect(slots=slots)
    error = error_of(conn.receive(frame(3, shape=(3, 8, 8)), 0.0))
    assert error.code is ErrorCode.WRONG_SHAPE
    assert error.frame_id == 3
    assert conn.state is ConnectionState.HANDSHAKE
    assert slots.streams_open == 0


def test_pings_are_answered_without_auth_and_without_a_slot() -> None:
    slots = admission()
    conn, _ = connect(Tokens(), slots=slots)
    assert sent(conn.receive(Ping(9, 1.5).serialize(), 0.0)) == [Pong(9, 1.5)]
    assert slots.streams_open == 0


def test_a_socket_without_auth_is_closed_at_the_handshake_deadline() -> None:
    conn, _ = connect(Tokens())
    assert conn.next_deadline_s == 5.0
    assert conn.timer(4.9) == []
    conn.receive(Ping(1, 0.0).serialize(), 4.0)  # pings do not extend it
    actions = conn.timer(5.0)
    assert error_of(actions).code is ErrorCode.IDLE_TIMEOUT
    assert actions[-1] == Close(CLOSE_POLICY, "handshake timeout", ErrorCode.IDLE_TIMEOUT)
    assert conn.next_deadline_s is None


def test_a_full_node_says_so_instead_of_hello() -> None:
    slots = admission(max_streams=1)
    streaming(slots=slots)
    _, actions = connect(slots=slots)
    assert error_of(actions).code is ErrorCode.OVERLOADED
    assert actions[-1] == Close(CLOSE_TRY_AGAIN_LATER, "at capacity", ErrorCode.OVERLOADED)


def test_the_last_slot_going_during_the_handshake_is_a_refusal_at_auth() -> None:
    slots = admission(max_streams=1)
    waiting, _ = connect(slots=slots)
    streaming(slots=slots)
    actions = waiting.receive(Auth("").serialize(), 1.0)
    assert error_of(actions).code is ErrorCode.OVERLOADED
    assert isinstance(actions[-1], Close)
    assert actions[-1].code == CLOSE_TRY_AGAIN_LATER


# -- streaming -----------------------------------------------------------------------------
def test_frames_beyond_the_window_are_refused_with_their_id() -> None:
    conn = streaming()
    assert all(
        isinstance(a, Submit) for a in conn.receive(frame(1), 1.0) + conn.receive(frame(2), 1.0)
    )
    error = error_of(conn.receive(frame(3), 1.0))
    assert error.code is ErrorCode.TOO_MANY_IN_FLIGHT
    assert error.frame_id == 3
    assert "at most 2" in error.message
    # an outcome (a superseded frame's DROPPED included) frees its place
    dropped = Dropped(1, DropReason.SUPERSEDED)
    assert sent(conn.outcome(dropped, 1.1)) == [dropped]
    assert isinstance(conn.receive(frame(4), 1.2)[0], Submit)
    assert conn.in_flight == 2


def test_outcomes_are_sent_and_nothing_after_close() -> None:
    conn = streaming()
    conn.receive(frame(1), 0.0)
    result = Result(1, 0.0, 1.0, 2.0, 3.0, 1, ())
    assert sent(conn.outcome(result, 0.5)) == [result]
    conn.connection_lost()
    assert conn.outcome(result, 0.6) == []


def test_a_stream_without_frames_is_closed_when_idle() -> None:
    conn = streaming()
    conn.receive(frame(1), 10.0)
    assert conn.next_deadline_s == 40.0
    conn.outcome(Result(1, 0.0, 1.0, 2.0, 3.0, 1, ()), 12.0)
    assert conn.next_deadline_s == 42.0
    assert conn.timer(41.0) == []
    actions = conn.timer(42.0)
    assert error_of(actions).code is ErrorCode.IDLE_TIMEOUT
    assert actions[-1] == Close(CLOSE_POLICY, "idle", ErrorCode.IDLE_TIMEOUT)


def test_the_slot_is_released_once_whatever_closes_the_stream() -> None:
    slots = admission()
    conn = streaming(slots=slots)
    assert slots.streams_open == 1
    conn.timer(1000.0)
    conn.connection_lost()
    assert slots.streams_open == 0


def test_auth_again_refreshes_the_token() -> None:
    tokens = Tokens({"t1": Grant("alice", 10.0), "t2": Grant("alice", 20.0)})
    conn, _ = connect(tokens)
    conn.receive(Auth("t1").serialize(), 0.0)
    assert conn.next_deadline_s == 10.0
    assert sent(conn.receive(Auth("t2").serialize(), 8.0)) == [Welcome(1, 20_000, "alice")]
    assert conn.next_deadline_s == 28.0
    conn.receive(frame(1), 27.0)
    assert conn.timer(27.5) == []


def test_an_unrefreshed_token_ends_the_stream() -> None:
    conn, _ = connect(Tokens({"t1": Grant("alice", 10.0)}))
    conn.receive(Auth("t1").serialize(), 0.0)
    conn.receive(frame(1), 9.0)
    actions = conn.timer(10.0)
    assert error_of(actions).code is ErrorCode.TOKEN_EXPIRED
    assert actions[-1] == Close(CLOSE_POLICY, "token expired", ErrorCode.TOKEN_EXPIRED)


def test_a_refresh_for_someone_else_is_refused() -> None:
    tokens = Tokens({"t1": Grant("alice", 10.0), "t2": Grant("mallory", 10.0)})
    conn, _ = connect(tokens)
    conn.receive(Auth("t1").serialize(), 0.0)
    actions = conn.receive(Auth("t2").serialize(), 1.0)
    error = error_of(actions)
    assert error.code is ErrorCode.AUTH_FAILED
    assert "alice" in error.message
    assert conn.state is ConnectionState.CLOSED


def test_streams_are_capped_per_identity_and_per_address() -> None:
    slots = admission(max_streams=10, per_identity=2, per_address=3)
    tokens = Tokens({"a": Grant("alice")}, anonymous=True)
    for _ in range(2):
        streaming(tokens, "a", slots=slots, address="10.0.0.1")
    conn, _ = connect(tokens, slots=slots, address="10.0.0.2")
    error = error_of(conn.receive(Auth("a").serialize(), 0.0))
    assert error.code is ErrorCode.OVERLOADED
    assert "alice" in error.message
    # anonymous clients share no identity cap, but their address's
    streaming(tokens, slots=slots, address="10.0.0.1")
    conn, _ = connect(tokens, slots=slots, address="10.0.0.1")
    error = error_of(conn.receive(Auth("").serialize(), 0.0))
    assert error.code is ErrorCode.OVERLOADED
    assert "address" in error.message
    streaming(tokens, slots=slots, address="10.0.0.3")  # other addresses still get in
    assert slots.streams_open == 4


# -- refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hello", "result", "welcome", "pong", "dropped"])
def test_messages_only_a_node_sends_are_refused_from_the_header(kind: str) -> None:
    # A body that would not even parse: the header alone decides.
    data = {
        "hello": HELLO[:4] + b"\xff" * 1000,
        "result": Result(1, 0.0, 0.0, 0.0, 0.0, 1, ()).serialize()[:4] + b"\xff" * 1000,
        "welcome": Welcome(1, 0, "x").serialize()[:4],
        "pong": Pong(1, 0.0).serialize(),
        "dropped": Dropped(1, DropReason.SUPERSEDED).serialize(),
    }[kind]
    conn, _ = connect()
    error = error_of(conn.receive(data, 0.0))
    assert error.code is ErrorCode.UNEXPECTED_MESSAGE
    assert error.message.endswith(f"got {kind.upper()}")


def test_text_messages_are_refused() -> None:
    conn, _ = connect()
    assert error_of(conn.receive_text(0.0)).code is ErrorCode.NOT_BINARY


def test_too_many_refused_messages_close_the_connection() -> None:
    conn, _ = connect()
    for _ in range(3):
        assert error_of(conn.receive(b"XY\x01\x02", 0.0)).code is ErrorCode.MALFORMED
    assert conn.receive(Ping(1, 0.0).serialize(), 0.0)  # a good message costs nothing
    actions = conn.receive(b"junk", 0.0)
    error = error_of(actions)
    assert error.code is ErrorCode.TOO_MANY_ERRORS
    assert "4 refused messages" in error.message
    assert "bad magic" in error.message
    assert actions[-1] == Close(CLOSE_POLICY, "too many errors", ErrorCode.TOO_MANY_ERRORS)
    assert conn.refused == 4


# -- the outbox ----------------------------------------------------------------------------
def test_a_client_that_does_not_read_is_closed_at_the_outbox_limit() -> None:
    limits = ConnectionLimits(
        max_outbox_bytes=4096, max_refused_messages=0, max_messages_per_s=100_000
    )
    conn, actions = connect(limits=limits)
    queued = len(HELLO)
    ping = Ping(1, 0.0).serialize()
    while True:
        actions = conn.receive(ping, 0.0)
        if not actions or not isinstance(actions[0], Send):
            break
        queued += len(actions[0].data)
        assert conn.queued_bytes == queued <= 4096
    assert actions == [Close(CLOSE_POLICY, "slow reader", ErrorCode.SLOW_READER)]
    assert conn.peak_queued_bytes <= 4096
    assert conn.state is ConnectionState.CLOSED


def test_written_bytes_leave_the_outbox() -> None:
    limits = ConnectionLimits(max_outbox_bytes=4096)
    conn, _ = connect(limits=limits)
    conn.sent(len(HELLO))
    ping = Ping(1, 0.0).serialize()
    for i in range(1000):  # far more than 4096 bytes of pongs, each one written
        (action,) = conn.receive(ping, i * 0.01)
        assert isinstance(action, Send)
        conn.sent(len(action.data))
    assert conn.queued_bytes == 0
    assert conn.state is ConnectionState.HANDSHAKE


def test_decode_failures_are_refusals() -> None:
    def failing(message: Frame | Image) -> str:
        raise ProtocolError(ErrorCode.IMAGE_INVALID, "not a JPEG", message.frame_id)

    conn: Connection[str] = Connection(
        hello=HELLO,
        limits=LIMITS,
        admission=admission(),
        authenticator=AnonymousAccess(),
        decode=failing,
        address="a",
    )
    conn.open(0.0)
    error = error_of(conn.receive(frame(5), 0.0))
    assert (error.code, error.frame_id) == (ErrorCode.IMAGE_INVALID, 5)
    assert conn.in_flight == 0


def test_trace_contexts_pass_through_and_welcome_announces_them() -> None:
    conn: Connection[str] = Connection(
        hello=HELLO,
        limits=LIMITS,
        admission=admission(),
        authenticator=AnonymousAccess(),
        decode=decode,
        address="a",
        features=TRACE_FEATURE,
    )
    conn.open(0.0)
    (welcome,) = sent(conn.receive(Auth("").serialize(), 0.0))
    assert isinstance(welcome, Welcome)
    assert welcome.takes_traces
    trace = Trace(b"\x01" * 16, b"\x02" * 8, 1, 7)
    assert conn.receive(trace.serialize(), 0.1) == [TraceNext(trace)]
    assert conn.refused == 0


# -- compressed frames (issue 9) -----------------------------------------------------------
JPEG_WEBP = encodings_mask([FrameEncoding.RAW, FrameEncoding.JPEG, FrameEncoding.WEBP])


def image(frame_id: int = 1, encoding: FrameEncoding = FrameEncoding.JPEG, top: int = 1) -> bytes:
    return Image(frame_id, 0.5, encoding, 4, 2, 0, top, b"\xff\xd8").serialize()


def compressed(encodings: int = JPEG_WEBP) -> Connection[str]:
    conn: Connection[str] = Connection(
        hello=HELLO,
        limits=LIMITS,
        admission=admission(),
        authenticator=AnonymousAccess(),
        decode=decode,
        address="a",
        encodings=encodings,
    )
    conn.open(0.0)
    (welcome,) = sent(conn.receive(Auth("", JPEG_WEBP).serialize(), 0.0))
    assert welcome == Welcome(encodings, 0, ANONYMOUS)
    return conn


def test_an_image_in_an_offered_encoding_is_submitted_for_decoding() -> None:
    conn = compressed()
    (submit,) = conn.receive(image(3), 0.1)
    assert isinstance(submit, Submit)
    assert isinstance(submit.frame, Image)
    assert (submit.frame.frame_id, submit.image) == (3, "picture-3")
    assert conn.in_flight == 1
    (result,) = conn.outcome(Result(3, 0.5, 0, 1, 0, 1, (), decode_ms=0.5), 0.2)
    assert parse(result.data) == Result(3, 0.5, 0, 1, 0, 1, (), decode_ms=0.5)  # type: ignore[union-attr]


def test_an_image_in_an_encoding_not_offered_is_refused_and_the_stream_goes_on() -> None:
    conn = compressed(encodings_mask([FrameEncoding.RAW, FrameEncoding.JPEG]))
    error = error_of(conn.receive(image(4, FrameEncoding.WEBP), 0.1))
    assert (error.code, error.frame_id) == (ErrorCode.IMAGE_INVALID, 4)
    assert error.message == "frame 4: this node accepts RAW, JPEG frames, got WEBP"
    assert conn.in_flight == 0
    assert conn.refused == 1
    assert isinstance(conn.receive(image(5), 0.2)[0], Submit)


def test_an_image_outside_the_model_input_is_refused_before_decoding() -> None:
    conn = compressed()
    error = error_of(conn.receive(image(6, top=3), 0.1))  # 2 rows at 3 in a 4-row input
    assert (error.code, error.frame_id) == (ErrorCode.IMAGE_TOO_LARGE, 6)
    assert conn.state is ConnectionState.STREAMING


def test_a_message_flood_closes_the_connection() -> None:
    limits = ConnectionLimits(max_messages_per_s=10)
    conn, _ = connect(limits=limits)
    ping = Ping(1, 0.0).serialize()
    for _ in range(10):  # a second's worth at once is fine
        assert isinstance(conn.receive(ping, 0.0)[0], Send)
    for i in range(1, 20):  # and then ten a second
        assert isinstance(conn.receive(ping, i * 0.1)[0], Send)
    assert isinstance(conn.receive(ping, 2.0)[0], Send)  # the token of 1.9 -> 2.0
    actions = conn.receive(ping, 2.0)
    assert error_of(actions).code is ErrorCode.TOO_MANY_ERRORS
    assert actions[-1] == Close(CLOSE_POLICY, "too many messages", ErrorCode.TOO_MANY_ERRORS)


def test_anonymous_streams_are_capped_per_address_like_an_identity() -> None:
    # issue 17: anonymous clients skipped the per-identity cap; 2 addresses filled a node
    slots = admission(max_streams=10, per_identity=2, per_address=5)
    for _ in range(2):
        streaming(slots=slots, address="10.0.0.1")
    conn, _ = connect(slots=slots, address="10.0.0.1")
    error = error_of(conn.receive(Auth("").serialize(), 0.0))
    assert error.code is ErrorCode.OVERLOADED
    assert "anonymous clients of your address" in error.message
    streaming(slots=slots, address="10.0.0.2")  # another address has a cap of its own
    assert slots.streams_open == 3


def test_a_user_named_anonymous_neither_shares_nor_refreshes_the_anonymous_stream() -> None:
    slots = admission(max_streams=10, per_identity=1, per_address=5)
    tokens = Tokens({"t": Grant(ANONYMOUS, 10.0)}, anonymous=True)
    anonymous = streaming(tokens, slots=slots, address="10.0.0.1")
    assert anonymous.is_anonymous
    user = streaming(tokens, "t", slots=slots, address="10.0.0.1")  # not the pool's slot
    assert not user.is_anonymous
    assert user.identity == ANONYMOUS
    # the anonymous stream cannot turn into the user's with a refresh
    error = error_of(anonymous.receive(Auth("t").serialize(), 1.0))
    assert error.code is ErrorCode.AUTH_FAILED
    assert "without a token" in error.message


def test_a_close_flushes_its_error_first_except_to_a_client_that_does_not_read() -> None:
    assert Close(CLOSE_POLICY, "idle", ErrorCode.IDLE_TIMEOUT).is_flush_first
    assert not Close(CLOSE_POLICY, "slow reader", ErrorCode.SLOW_READER).is_flush_first
