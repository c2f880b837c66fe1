"""One client connection of a node, sans-I/O: bytes and time in, actions out.

The mirror of the page's ``NodeStream`` (and shaped like websockets' ``ServerProtocol`` or
h11's ``Connection``): the WebSocket endpoint feeds it what the socket delivers
(``receive``, ``receive_text``), each frame's outcome from the batcher (``outcome``), the
bytes it managed to write (``sent``) and the time (``timer`` at ``next_deadline_s``), and
executes the actions it gets back: ``Send`` bytes, ``Submit`` a frame to the batcher,
``Close`` the socket with a code. Every policy of issue 8's "a node that no single client
can take down" lives here, testable with bytes and a fake clock:

    HANDSHAKE --AUTH accepted / first FRAME (anonymous)--> STREAMING --> CLOSED
        |  (HELLO sent, no stream slot; PINGs answered)       (holds a slot)
        +-- no AUTH within handshake_timeout_s --> CLOSED (IDLE_TIMEOUT)

- HELLO first, then AUTH (``access.Authenticator`` decides; a refused token closes 1008).
  A FRAME without AUTH is served as anonymous only if the authenticator grants an empty
  token, else ERROR AUTH_REQUIRED and close 1008. AUTH again while streaming refreshes
  the token (answered with WELCOME); a token that expires unrefreshed closes the stream
  (TOKEN_EXPIRED).
- A stream slot (``admission.Admission``) is taken only on WELCOME or an anonymous first
  frame; probes and unauthenticated sockets never hold one.
- A stream that sends no frame for ``idle_timeout_s`` is closed (IDLE_TIMEOUT).
- At most ``max_in_flight`` frames unanswered: one more gets ERROR TOO_MANY_IN_FLIGHT.
- Message types a client never sends (HELLO, RESULT, ...) are refused from the four-byte
  header, before any parsing. Each refused message counts; after ``max_refused_messages``
  the connection closes (TOO_MANY_ERRORS).
- More than ``max_messages_per_s`` messages a second (beyond a one-second burst) close
  the connection (TOO_MANY_ERRORS): a page sends a few dozen; a flood of valid PINGs
  would otherwise cost the node's event loop as much as it likes.
- Bytes handed out in ``Send`` and not yet reported ``sent`` are the outbox; one that
  would grow past ``max_outbox_bytes`` closes the connection (SLOW_READER) instead.

Close codes: 1008 (policy) for refused tokens, deadlines, errors and slow readers; 1013
(try again later) when the node or a per-identity/per-address cap is full.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pyodide_client.protocol import (
    CLOSE_TRY_AGAIN_LATER,
    Auth,
    Dropped,
    Error,
    ErrorCode,
    Frame,
    FrameEncoding,
    Image,
    MessageType,
    Ping,
    ProtocolError,
    Result,
    Trace,
    Welcome,
    encodings_mask,
    mask_encodings,
    parse,
    peek_type,
)

from .access import AccessDenied, Authenticator, Grant
from .admission import Admission, Slot

__all__ = [
    "CLOSE_POLICY",
    "CLOSE_TRY_AGAIN_LATER",
    "Action",
    "Close",
    "Connection",
    "ConnectionLimits",
    "ConnectionObserver",
    "ConnectionState",
    "Send",
    "Submit",
    "TraceNext",
]

CLOSE_POLICY = 1008

ImageT = TypeVar("ImageT")

# What a client may send at all; anything else is refused from its header alone.
CLIENT_MESSAGE_TYPES = frozenset(
    {MessageType.FRAME, MessageType.IMAGE, MessageType.PING, MessageType.AUTH, MessageType.TRACE}
)
FRAME_TYPES = frozenset({MessageType.FRAME, MessageType.IMAGE})
_FIRST_REFUSAL_CHARS = 160


class ConnectionState(enum.Enum):
    HANDSHAKE = "handshake"  # HELLO sent; waiting for AUTH (or a first anonymous frame)
    STREAMING = "streaming"  # authenticated; holds a stream slot
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectionLimits:
    max_in_flight: int = 2
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_refused_messages: int = 20
    max_outbox_bytes: int = 1024 * 1024
    max_messages_per_s: float = 100.0  # sustained; a second's worth may come at once


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Submit(Generic[ImageT]):
    """Hand this frame (and its decoded image) to the batcher; report its outcome back.
    For an IMAGE (issue 9) ``image`` is what ``decode`` made of it: the node decodes the
    picture off the event loop before the batcher sees it."""

    frame: Frame | Image
    image: ImageT


@dataclass(frozen=True)
class TraceNext:
    """The client samples its next frame for tracing (issue 12): record its spans."""

    trace: Trace


@dataclass(frozen=True)
class Close:
    """Close the socket with ``code``; ``why`` says which policy closed it (for logs)."""

    code: int
    reason: str
    why: ErrorCode | None = None

    @property
    def is_flush_first(self) -> bool:
        """Write what is queued (the last ERROR) before the close frame; not for a client
        that does not read (SLOW_READER): waiting on it would be waiting for ever."""
        return self.why is not ErrorCode.SLOW_READER


Action = Send | Submit[ImageT] | TraceNext | Close
Outcome = Result | Dropped | Error


class ConnectionObserver(Protocol):
    """What a connection reports as it goes (the node's metrics implement it)."""

    def stream_opened(self) -> None: ...
    def stream_closed(self) -> None: ...
    def stream_refused(self, code: int) -> None: ...
    def frame_received(self) -> None: ...
    def refused(self, code: int) -> None: ...
    def outcome(self, outcome: Outcome) -> None: ...


class _Unobserved:
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

    def outcome(self, outcome: Outcome) -> None:
        pass


class Connection(Generic[ImageT]):
    """``decode`` turns a checked FRAME or IMAGE into what the batcher runs, or raises
    ProtocolError (wrong shape or dtype, a picture that does not fit); it is the seam for
    compressed frames. An IMAGE in an encoding the node does not accept (``encodings``,
    as its WELCOME says) is refused with IMAGE_INVALID."""

    def __init__(
        self,
        *,
        hello: bytes,
        limits: ConnectionLimits,
        admission: Admission,
        authenticator: Authenticator,
        decode: Callable[[Frame | Image], ImageT],
        address: str,
        origin: str | None = None,
        encodings: int = encodings_mask([FrameEncoding.RAW]),
        features: int = 0,
        observer: ConnectionObserver | None = None,
        is_reporting_outcomes: bool = False,
        wt_offer: tuple[int, str] = (0, ""),
    ) -> None:
        self.state = ConnectionState.HANDSHAKE
        self.limits = limits
        self.address = address
        self.origin = origin
        self.identity: str | None = None
        self.is_anonymous = False  # streaming without a token (identity is only a name)
        self.in_flight = 0
        self.refused = 0
        self.first_refusal: str | None = None
        self.queued_bytes = 0  # handed out in Send, not yet reported sent
        self.peak_queued_bytes = 0
        self.closed_by: Close | None = None
        self._hello = hello
        self._admission = admission
        self._authenticator = authenticator
        self._decode = decode
        self._encodings = encodings
        self._features = features  # WELCOME's features bits (TRACE_FEATURE)
        self._wt_offer = wt_offer  # WELCOME's WebTransport port and certificate hash
        self._observer: ConnectionObserver = observer or _Unobserved()
        # Each frame's outcome to the observer too (the node's metrics): a driver then
        # reports nothing itself. Off by default for drivers that still do.
        self._is_reporting_outcomes = is_reporting_outcomes
        self._slot: Slot | None = None
        self._opened_s = 0.0
        self._last_active_s = 0.0
        self._expires_at_s: float | None = None
        self._message_tokens = limits.max_messages_per_s  # a token bucket, one per message
        self._tokens_at_s: float | None = None

    # -- inputs --------------------------------------------------------------------------
    def open(self, now_s: float) -> list[Action[ImageT]]:
        """The socket was accepted: the node speaks first. A node that is already full says
        so at once instead of its HELLO (a probe then skips it)."""
        self._opened_s = now_s
        if self._admission.is_full:
            self._observer.stream_refused(ErrorCode.OVERLOADED)
            return self._close_with(
                self._admission.full_error(), CLOSE_TRY_AGAIN_LATER, "at capacity"
            )
        return self._queue(self._hello)

    def receive(self, data: bytes | bytearray | memoryview, now_s: float) -> list[Action[ImageT]]:
        if self.state is ConnectionState.CLOSED:
            return []
        if not self._take_token(now_s):
            return self._flooded()
        try:
            kind = peek_type(data)
            if kind not in CLIENT_MESSAGE_TYPES:
                raise ProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    f"expected a FRAME, IMAGE, PING, AUTH or TRACE from a client, got {kind.name}",
                )
            if kind in FRAME_TYPES:
                self._observer.frame_received()
                return self._on_frame(data, now_s)
            message = parse(data)
            if isinstance(message, Ping):
                return self._queue(message.answer().serialize())
            if isinstance(message, Trace):
                return [TraceNext(message)]
            assert isinstance(message, Auth), message
            return self._on_auth(message, now_s)
        except ProtocolError as exc:
            return self._refuse(exc)

    def receive_text(self, now_s: float) -> list[Action[ImageT]]:
        if self.state is ConnectionState.CLOSED:
            return []
        if not self._take_token(now_s):
            return self._flooded()
        return self._refuse(
            ProtocolError(
                ErrorCode.NOT_BINARY, "expected a binary protocol message, got a text message"
            )
        )

    def outcome(self, outcome: Outcome, now_s: float) -> list[Action[ImageT]]:
        """A submitted frame's one outcome (RESULT, DROPPED or ERROR) from the batcher,
        or the ERROR of a picture that did not decode; reported to the observer when the
        connection was made ``is_reporting_outcomes``."""
        if self._is_reporting_outcomes:
            self._observer.outcome(outcome)
        if self.state is ConnectionState.CLOSED:
            return []
        self.in_flight = max(0, self.in_flight - 1)
        self._last_active_s = now_s
        return self._queue(outcome.serialize())

    def sent(self, nbytes: int) -> None:
        """``nbytes`` of earlier ``Send`` actions were written to the socket."""
        self.queued_bytes = max(0, self.queued_bytes - nbytes)

    def timer(self, now_s: float) -> list[Action[ImageT]]:
        """Apply the deadlines due at ``now_s``; calling it early does nothing."""
        if self.state is ConnectionState.HANDSHAKE:
            if now_s >= self._opened_s + self.limits.handshake_timeout_s:
                return self._close_with(
                    Error(
                        ErrorCode.IDLE_TIMEOUT,
                        f"no AUTH or frame within {self.limits.handshake_timeout_s:g} s "
                        "of the HELLO",
                    ),
                    CLOSE_POLICY,
                    "handshake timeout",
                )
        elif self.state is ConnectionState.STREAMING:
            if self._expires_at_s is not None and now_s >= self._expires_at_s:
                return self._close_with(
                    Error(
                        ErrorCode.TOKEN_EXPIRED,
                        "the stream token expired; send AUTH with a fresh token before "
                        "the old one expires",
                    ),
                    CLOSE_POLICY,
                    "token expired",
                )
            if now_s >= self._last_active_s + self.limits.idle_timeout_s:
                return self._close_with(
                    Error(
                        ErrorCode.IDLE_TIMEOUT,
                        f"no frame for {self.limits.idle_timeout_s:g} s; the stream's slot "
                        "goes to someone else",
                    ),
                    CLOSE_POLICY,
                    "idle",
                )
        return []

    @property
    def next_deadline_s(self) -> float | None:
        """When ``timer`` next has something to do; None once closed. Deadlines move only
        later except through ``receive``, so a driver re-reads this after each input."""
        if self.state is ConnectionState.HANDSHAKE:
            return self._opened_s + self.limits.handshake_timeout_s
        if self.state is ConnectionState.STREAMING:
            idle = self._last_active_s + self.limits.idle_timeout_s
            return idle if self._expires_at_s is None else min(idle, self._expires_at_s)
        return None

    def connection_lost(self) -> None:
        """The socket is gone (either side closed it): give the stream slot back."""
        self.state = ConnectionState.CLOSED
        self._release()

    # -- handlers ------------------------------------------------------------------------
    def _on_frame(self, data: bytes | bytearray | memoryview, now_s: float) -> list[Action[ImageT]]:
        grant: Grant | None = None
        if self.state is ConnectionState.HANDSHAKE:
            # A client that predates AUTH: anonymous, if this node lets anyone stream.
            try:
                grant = self._authenticator.authenticate("", self.origin)
            except AccessDenied:
                self._observer.stream_refused(ErrorCode.AUTH_REQUIRED)
                return self._close_with(
                    Error(
                        ErrorCode.AUTH_REQUIRED,
                        "this node needs a stream token: send AUTH with the web app's "
                        "token before any frame",
                    ),
                    CLOSE_POLICY,
                    "auth required",
                )
        frame = parse(data)
        assert isinstance(frame, Frame | Image), frame
        if isinstance(frame, Image) and not self._encodings & (1 << frame.encoding):
            accepted = ", ".join(e.name for e in mask_encodings(self._encodings))
            raise ProtocolError(
                ErrorCode.IMAGE_INVALID,
                f"frame {frame.frame_id}: this node accepts {accepted} frames, "
                f"got {frame.encoding.name}",
                frame.frame_id,
            )
        if self.in_flight >= self.limits.max_in_flight:
            raise ProtocolError(
                ErrorCode.TOO_MANY_IN_FLIGHT,
                f"frame {frame.frame_id}: expected at most {self.limits.max_in_flight} "
                f"frames in flight, got {self.in_flight + 1}; wait for a RESULT",
                frame.frame_id,
            )
        image = self._decode(frame)
        actions: list[Action[ImageT]] = []
        if grant is not None:  # a well-formed first frame takes the slot, a bad one none
            actions = self._admit(grant, now_s)
            if self._slot is None:
                return actions
        self.in_flight += 1
        self._last_active_s = now_s
        actions.append(Submit(frame, image))
        return actions

    def _on_auth(self, auth: Auth, now_s: float) -> list[Action[ImageT]]:
        try:
            grant = self._authenticator.authenticate(auth.token, self.origin)
        except AccessDenied as denied:
            self._observer.stream_refused(denied.code)
            return self._close_with(
                Error(denied.code, denied.message), CLOSE_POLICY, "access denied"
            )
        if self.state is ConnectionState.STREAMING:
            if (grant.identity, grant.is_anonymous) != (self.identity, self.is_anonymous):
                return self._close_with(
                    Error(
                        ErrorCode.AUTH_FAILED,
                        f"a refreshed token must be for the stream's identity: expected "
                        f"{_who(self.identity, self.is_anonymous)}, "
                        f"got {_who(grant.identity, grant.is_anonymous)}",
                    ),
                    CLOSE_POLICY,
                    "access denied",
                )
            self._set_expiry(grant, now_s)
            return self._queue(self._welcome(grant))
        actions = self._admit(grant, now_s)
        if self._slot is not None:
            actions.extend(self._queue(self._welcome(grant)))
        return actions

    def _admit(self, grant: Grant, now_s: float) -> list[Action[ImageT]]:
        slot = self._admission.acquire(grant.identity, self.address, grant.is_anonymous)
        if isinstance(slot, Error):
            self._observer.stream_refused(slot.code)
            return self._close_with(slot, CLOSE_TRY_AGAIN_LATER, "at capacity")
        self._slot = slot
        self._observer.stream_opened()
        self.identity = grant.identity
        self.is_anonymous = grant.is_anonymous
        self.state = ConnectionState.STREAMING
        self._last_active_s = now_s
        self._set_expiry(grant, now_s)
        return []

    def _set_expiry(self, grant: Grant, now_s: float) -> None:
        self._expires_at_s = None if grant.expires_in_s is None else now_s + grant.expires_in_s

    def _welcome(self, grant: Grant) -> bytes:
        expires_in_ms = 0
        if grant.expires_in_s is not None:  # 0 means 'never' on the wire: at least 1 ms
            expires_in_ms = max(1, min(0xFFFFFFFF, int(grant.expires_in_s * 1000.0)))
        wt_port, wt_cert_sha256 = self._wt_offer
        return Welcome(
            self._encodings,
            expires_in_ms,
            grant.identity,
            self._features,
            wt_port,
            wt_cert_sha256,
        ).serialize()

    def _take_token(self, now_s: float) -> bool:
        rate = self.limits.max_messages_per_s
        if self._tokens_at_s is not None:
            elapsed_s = max(0.0, now_s - self._tokens_at_s)
            self._message_tokens = min(rate, self._message_tokens + elapsed_s * rate)
        self._tokens_at_s = now_s
        if self._message_tokens < 1.0:
            return False
        self._message_tokens -= 1.0
        return True

    def _flooded(self) -> list[Action[ImageT]]:
        return self._close_with(
            Error(
                ErrorCode.TOO_MANY_ERRORS,
                f"expected at most {self.limits.max_messages_per_s:g} messages a second, got more",
            ),
            CLOSE_POLICY,
            "too many messages",
        )

    # -- outputs -------------------------------------------------------------------------
    def _queue(self, data: bytes) -> list[Action[ImageT]]:
        if self.queued_bytes + len(data) > self.limits.max_outbox_bytes:
            # The client does not read: closing costs nothing, queueing costs memory.
            return self._close(
                Close(CLOSE_POLICY, "slow reader", ErrorCode.SLOW_READER), error=None
            )
        self.queued_bytes += len(data)
        self.peak_queued_bytes = max(self.peak_queued_bytes, self.queued_bytes)
        return [Send(data)]

    def _refuse(self, exc: ProtocolError) -> list[Action[ImageT]]:
        self.refused += 1
        self._observer.refused(exc.code)
        if self.first_refusal is None:
            self.first_refusal = exc.message[:_FIRST_REFUSAL_CHARS]
        if self.refused > self.limits.max_refused_messages:
            return self._close_with(
                Error(
                    ErrorCode.TOO_MANY_ERRORS,
                    f"closed after {self.refused} refused messages; the first: "
                    f"{self.first_refusal}",
                ),
                CLOSE_POLICY,
                "too many errors",
            )
        return self._queue(exc.to_error().serialize())

    def _close_with(self, error: Error, code: int, reason: str) -> list[Action[ImageT]]:
        why = error.code if isinstance(error.code, ErrorCode) else None
        return self._close(Close(code, reason, why), error)

    def _close(self, close: Close, error: Error | None) -> list[Action[ImageT]]:
        actions: list[Action[ImageT]] = []
        if error is not None:
            actions.extend(self._queue(error.serialize()))
            if self.state is ConnectionState.CLOSED:  # the outbox was full: closed already
                return actions
        self.state = ConnectionState.CLOSED
        self.closed_by = close
        self._release()
        actions.append(close)
        return actions

    def _release(self) -> None:
        if self._slot is not None:
            self._admission.release(self._slot)
            self._slot = None
            self._observer.stream_closed()


def _who(identity: str | None, is_anonymous: bool) -> str:
    return "a client without a token" if is_anonymous else f"user {identity}"
