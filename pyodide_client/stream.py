"""The client side of one node connection, sans-I/O.

``NodeStream`` turns camera frames into FRAME messages and node messages into events the
page acts on. It never touches a socket: the browser's JavaScript (or a Python test client)
feeds it received bytes with ``receive`` and sends the bytes it returns.

    state CONNECTING --HELLO--> AUTHENTICATING --WELCOME--> READY --connection_lost()--> CLOSED

Authentication (issue 8): after the HELLO the stream queues an AUTH with its token (the
web app's stream token; empty for anonymous use; ``token=None`` makes it wait for
``set_token``) and sends frames only after the node's WELCOME. The driver sends what
``data_to_send()`` returns after every ``receive`` and ``set_token``. A node that predates
AUTH answers it with ERROR UNEXPECTED_MESSAGE: the stream then goes on as before, raw
frames only. A refused AUTH, or a token that expired mid-stream, is an ``AccessRefused``
event (the node closes the connection after it). ``set_token`` while streaming queues a
new AUTH; frames keep flowing while the node checks it (the refresh's WELCOME is a
``Welcomed`` event).

It keeps at most ``max_in_flight`` frames unanswered, and reports results only over the
frame they belong to or a newer one (a late result for an older frame is discarded). Given
``in_flight`` settings, ``max_in_flight`` is only the bound: how many go at once follows the
link's network time (``inflight.InFlightPolicy``, issue 16), within the node's HELLO limit,
and on a lossy link the encoding policy is asked for smaller frames.

Compressed frames (issue 9): a node that answers AUTH with a WELCOME names the encodings
it accepts; from then on ``plan_frame`` says how the next frame travels (an
``encoding.EncodingPolicy`` decides from the link's measured round trips). A raw frame
goes through ``encode_frame`` as before; for JPEG/WebP the caller encodes the letterboxed
picture (``plan.width_px`` x ``plan.height_px``, the browser with its native encoder) and
``encode_image`` wraps it in an IMAGE message.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass, replace

from .encoding import EncodingPlan, EncodingPolicy, EncodingSettings
from .inflight import InFlightPolicy, InFlightSettings
from .postprocess import FrameBox, to_frame
from .preprocess import Geometry, Letterbox, letterbox_geometry
from .protocol import (
    HEADER_SIZE,
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
    Message,
    MessageType,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Welcome,
    encodings_mask,
    parse,
    peek_type,
)

__all__ = [
    "MAX_INPUT_SIZE_PX",
    "AccessRefused",
    "Detections",
    "Event",
    "FrameDropped",
    "FramePlan",
    "NodeError",
    "NodeStream",
    "PongReceived",
    "Ready",
    "StreamError",
    "StreamState",
    "Welcomed",
]

FRAME_ID_LIMIT = 0xFFFFFFFF
_FRAME_ID = struct.Struct("<I")  # FRAME and IMAGE start with it, after the header
# The largest model input a page letterboxes to (pixels a side). A HELLO asking for more is
# refused before anything is allocated: 3 x 65535^2 bytes would be 12 GB (issue 10).
MAX_INPUT_SIZE_PX = 2048
# Abandoned frames whose late answers are still expected (a window is at most a few frames).
ABANDONED_MEMORY = 64


class StreamError(Exception):
    """Misuse of a NodeStream (sending before the hello, a node breaking the protocol)."""


class ModelMismatch(StreamError):
    """The node serves another model than the page's (its HELLO's sha256 differs)."""

    def __init__(self, model_name: str, model_sha256: str, expected_sha256: str) -> None:
        super().__init__(
            f"node serves model {model_name} with sha256 {model_sha256}, expected {expected_sha256}"
        )
        self.model_name = model_name


class StreamState(enum.Enum):
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True)
class Ready:
    """The node accepted the stream: frames may go. ``welcome`` is None for a node that
    predates AUTH (raw frames only, no identity)."""

    hello: Hello
    welcome: Welcome | None = None


@dataclass(frozen=True)
class Detections:
    frame_id: int
    boxes: tuple[FrameBox, ...]
    capture_ms: float
    round_trip_ms: float  # frame sent -> result received
    queue_ms: float
    inference_ms: float
    post_ms: float
    batch_size: int
    decode_ms: float = 0.0  # the node's decode time for a compressed frame
    encoding: str = "raw"
    size_bytes: int = 0  # the frame's message size on the wire


@dataclass(frozen=True)
class NodeError:
    code: int
    message: str
    frame_id: int | None


@dataclass(frozen=True)
class FrameDropped:
    frame_id: int
    reason: str


@dataclass(frozen=True)
class PongReceived:
    round_trip_ms: float


@dataclass(frozen=True)
class Welcomed:
    """A WELCOME after the first: the node accepted a refreshed token."""

    welcome: Welcome


@dataclass(frozen=True)
class AccessRefused:
    """The node refused the stream's token (AUTH_REQUIRED, AUTH_FAILED) or let it lapse
    (TOKEN_EXPIRED); ``message`` says why. The node closes the connection after it."""

    code: int
    message: str

    @property
    def is_expired(self) -> bool:
        return self.code == ErrorCode.TOKEN_EXPIRED


ACCESS_CODES = (ErrorCode.AUTH_REQUIRED, ErrorCode.AUTH_FAILED, ErrorCode.TOKEN_EXPIRED)

Event = Ready | Detections | NodeError | FrameDropped | PongReceived | Welcomed | AccessRefused


@dataclass(frozen=True)
class FramePlan:
    """How the next frame travels: ``encoding`` raw, jpeg or webp; for the two lossy ones
    the picture to encode is ``width_px`` x ``height_px`` (the letterbox's content area)
    at ``quality`` (0..1, as canvas.toBlob takes it)."""

    encoding: str
    quality: float
    width_px: int
    height_px: int


@dataclass(frozen=True)
class _InFlight:
    geometry: Geometry
    capture_ms: float  # the camera frame's; sent_ms less it: the page's own time on it
    sent_ms: float
    encoding: FrameEncoding = FrameEncoding.RAW
    size_bytes: int = 0
    is_probe: bool = False


class NodeStream:
    def __init__(
        self,
        max_in_flight: int = 1,
        expected_sha256: str | None = None,
        encoding: EncodingSettings | None = None,
        can_encode: tuple[FrameEncoding, ...] = (FrameEncoding.JPEG, FrameEncoding.WEBP),
        token: str | None = "",
        in_flight: InFlightSettings | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.state = StreamState.CONNECTING
        self.hello: Hello | None = None
        self._max_in_flight = max_in_flight
        self._expected_sha256 = expected_sha256
        self._letterbox: Letterbox | None = None
        self._in_flight: dict[int, _InFlight] = {}
        # Frames the page abandoned (their QUIC streams reset) that the node may still
        # answer: a reset races the frame's FIN, and the node answers a frame it had whole.
        self._abandoned: deque[int] = deque(maxlen=ABANDONED_MEMORY)
        # Slots of frames the node superseded: kept closed until the next RESULT, or a
        # client whose frames keep getting replaced would upload a frame per camera tick
        # only for the node to discard it (seen in bench/load.py with K=2).
        self._held_slots = 0
        self._next_frame_id = 1
        self._newest_shown_id = 0
        self._next_nonce = 1
        self._can_encode = (FrameEncoding.RAW, *can_encode)
        # Until a WELCOME names what the node accepts, frames are raw (an older node).
        self.encoding = EncodingPolicy(encoding or EncodingSettings())
        self._plan: EncodingPlan | None = None
        self.welcome: Welcome | None = None
        self._token = token
        self._is_auth_sent = False
        self._outbox: list[bytes] = []
        # None: max_in_flight is K itself (fixed); else K adapts up to it (issue 16)
        self.in_flight_policy = (
            InFlightPolicy(in_flight, max_in_flight) if in_flight is not None else None
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def oldest_in_flight_ms(self) -> float | None:
        """When the longest-waiting frame was sent, or None with nothing in flight."""
        return min((f.sent_ms for f in self._in_flight.values()), default=None)

    def can_send(self) -> bool:
        # Held slots wait for a RESULT, so they hold only while a frame is still in flight.
        held = self._held_slots if self._in_flight else 0
        used = len(self._in_flight) + held
        return self.state is StreamState.READY and used < self._max_window()

    def _max_window(self) -> int:
        node_limit = self.hello.max_in_flight if self.hello else 1
        bound = max(1, min(self._max_in_flight, node_limit))
        if self.in_flight_policy is None:
            return bound
        return min(bound, self.in_flight_policy.window)

    @property
    def window(self) -> int:
        """Frames this stream may keep unanswered now (K)."""
        return self._max_window()

    def _input_size(self) -> tuple[int, int]:
        """The node's model input as (width, height); its HELLO shape is [3, H, W]."""
        if self.hello is None:
            raise StreamError("no HELLO from the node yet: wait for the Ready event")
        return self.hello.frame_shape[2], self.hello.frame_shape[1]

    def letterbox_for(self, width_px: int, height_px: int) -> Letterbox:
        self._letterbox = Letterbox.reuse(self._letterbox, width_px, height_px, *self._input_size())
        return self._letterbox

    def encode_frame(
        self,
        rgba: bytes | bytearray | memoryview,
        width_px: int,
        height_px: int,
        capture_ms: float,
        now_ms: float,
    ) -> bytes:
        """Preprocess an RGBA frame and return the FRAME message to send."""
        if not self.can_send():
            raise StreamError(
                f"cannot send a frame in state {self.state.value} with "
                f"{len(self._in_flight)} of {self._max_window()} frames in flight"
            )
        letterbox = self.letterbox_for(width_px, height_px)
        tensor = letterbox.fill(rgba)
        frame_id = self._take_frame_id()
        head = Frame.header_bytes(frame_id, capture_ms, Dtype.UINT8, letterbox.shape)
        plan, self._plan = self._plan, None
        is_probe = plan is not None and plan.is_probe
        size = len(head) + len(tensor)
        self._in_flight[frame_id] = _InFlight(
            letterbox.geometry, capture_ms, now_ms, FrameEncoding.RAW, size, is_probe
        )
        return head + tensor

    def _take_frame_id(self) -> int:
        frame_id = self._next_frame_id
        self._next_frame_id = frame_id % FRAME_ID_LIMIT + 1
        return frame_id

    # -- compressed frames (issue 9) -----------------------------------------------------
    @property
    def encodings_mask(self) -> int:
        """What this client can send, for its AUTH (FrameEncoding bitmask)."""
        return encodings_mask(self._can_encode)

    def auth(self, token: str = "") -> bytes:
        """The AUTH message: ``token`` (empty: anonymous) and the encodings it can send."""
        return Auth(token, self.encodings_mask).serialize()

    # -- authentication (issue 8) ----------------------------------------------------------
    def data_to_send(self) -> list[bytes]:
        """Messages the stream wants sent (AUTH), in order; each is returned once."""
        out, self._outbox = self._outbox, []
        return out

    @property
    def is_waiting_for_token(self) -> bool:
        """Its AUTH waits for a token (it was made with ``token=None``)."""
        return self._token is None and self.state in (
            StreamState.CONNECTING,
            StreamState.AUTHENTICATING,
        )

    def set_token(self, token: str) -> None:
        """A (new) token: sent at once when the node's HELLO came, else with the AUTH that
        follows it. While streaming this is the refresh: frames go on meanwhile."""
        self._token = token
        if self.state is StreamState.READY or (
            self.state is StreamState.AUTHENTICATING and not self._is_auth_sent
        ):
            self._send_auth()

    def _send_auth(self) -> None:
        assert self._token is not None
        self._outbox.append(self.auth(self._token))
        self._is_auth_sent = True

    def _on_error_while_authenticating(self, error: Error) -> list[Event]:
        if error.code == ErrorCode.UNEXPECTED_MESSAGE and error.frame_id is None:
            # A node from before AUTH: it refuses the message and streams as it always did.
            assert self.hello is not None
            self.state = StreamState.READY
            return [Ready(self.hello)]
        if error.code in ACCESS_CODES:
            return [AccessRefused(int(error.code), error.message)]
        return [NodeError(int(error.code), error.message, error.frame_id)]

    def plan_frame(self, width_px: int, height_px: int, now_ms: float) -> FramePlan:
        """How the next frame of this size travels; call before encoding it."""
        if not self.can_send():
            raise StreamError(
                f"cannot plan a frame in state {self.state.value} with "
                f"{len(self._in_flight)} of {self._max_window()} frames in flight"
            )
        raw_bytes = 3 * self._input_size()[0] * self._input_size()[1]
        plan = self._plan = self.encoding.plan(now_ms, raw_bytes)
        g = letterbox_geometry(width_px, height_px, *self._input_size())
        return FramePlan(plan.name, plan.quality, g.scaled_width_px, g.scaled_height_px)

    def encode_image(
        self,
        payload: bytes | bytearray | memoryview,
        width_px: int,
        height_px: int,
        capture_ms: float,
        now_ms: float,
    ) -> bytes:
        """The IMAGE message for a picture encoded as ``plan_frame`` said; ``width_px`` and
        ``height_px`` are the camera frame's size, as given to ``plan_frame``."""
        plan, self._plan = self._plan, None
        if plan is None or plan.encoding is FrameEncoding.RAW:
            raise StreamError("encode_image needs a plan_frame() that chose jpeg or webp")
        if not self.can_send():
            raise StreamError(
                f"cannot send a frame in state {self.state.value} with "
                f"{len(self._in_flight)} of {self._max_window()} frames in flight"
            )
        g = letterbox_geometry(width_px, height_px, *self._input_size())
        frame_id = self._take_frame_id()
        head = Image.header_bytes(
            frame_id,
            capture_ms,
            plan.encoding,
            g.scaled_width_px,
            g.scaled_height_px,
            g.left_px,
            g.top_px,
        )
        size = len(head) + len(payload)
        self._in_flight[frame_id] = _InFlight(g, capture_ms, now_ms, plan.encoding, size)
        return head + bytes(payload)

    def note_waiting(self, now_ms: float) -> None:
        """A camera frame waits because the window is full (``can_send`` said no): the
        encoding policy may lower the quality only while the link holds frames back so,
        not while K is still growing to the link's round trip."""
        policy = self.in_flight_policy
        if self.state is StreamState.READY and (policy is None or not policy.is_growing):
            self.encoding.on_window_full(now_ms)

    def mark_sent(self, now_ms: float) -> None:
        """The last frame built actually left at ``now_ms`` (after the caller's own work on
        it, e.g. the page's letterbox): its round trip, and the link's measured rate,
        count from here."""
        frame_id = (self._next_frame_id - 2) % FRAME_ID_LIMIT + 1
        sent = self._in_flight.get(frame_id)
        if sent is not None and now_ms > sent.sent_ms:
            self._in_flight[frame_id] = replace(sent, sent_ms=now_ms)

    def ping_due(self, now_ms: float) -> bool:
        """Whether the encoding policy wants a PING for its base round trip now."""
        return self.state is StreamState.READY and self.encoding.ping_due(now_ms)

    def ping(self, now_ms: float) -> bytes:
        nonce = self._next_nonce
        self._next_nonce = nonce % FRAME_ID_LIMIT + 1
        return Ping(nonce, now_ms).serialize()

    def abandon(self, head: bytes | bytearray | memoryview, now_ms: float) -> int | None:
        """The page gave up on a frame before the node had all of it (its QUIC stream was
        reset: a newer frame superseded it, issue 16); ``head`` is the frame message's
        start. It will never be answered: it leaves the window now. Its id, or None."""
        try:
            is_frame = peek_type(head) in (MessageType.FRAME, MessageType.IMAGE)
        except ProtocolError:
            return None
        if not is_frame or len(head) < HEADER_SIZE + _FRAME_ID.size:
            return None
        (frame_id,) = _FRAME_ID.unpack_from(head, HEADER_SIZE)
        frame = self._in_flight.pop(frame_id, None)
        self._lost(frame, now_ms)
        if frame is None:
            return None
        self._abandoned.append(int(frame_id))
        return int(frame_id)

    def connection_lost(self) -> list[int]:
        """The socket closed: forget in-flight frames and return their ids."""
        lost = list(self._in_flight)
        self._in_flight.clear()
        self.state = StreamState.CLOSED
        return lost

    def receive(self, data: bytes | bytearray | memoryview, now_ms: float) -> list[Event]:
        try:
            message = parse(data)
        except ProtocolError as exc:
            raise StreamError(f"node sent an invalid message: {exc.message}") from exc
        return self._handle(message, now_ms)

    def _handle(self, message: Message, now_ms: float) -> list[Event]:
        if isinstance(message, Hello):
            return self._on_hello(message)
        if self.state is StreamState.CONNECTING:
            raise StreamError(
                f"expected HELLO as the node's first message, got {type(message).__name__}"
            )
        if self.state is StreamState.AUTHENTICATING:
            if isinstance(message, Welcome):
                return self._on_welcome(message)
            if isinstance(message, Error):
                return self._on_error_while_authenticating(message)
            if not isinstance(message, Pong):  # probes' PINGs need no AUTH
                raise StreamError(
                    f"expected WELCOME in answer to AUTH, got {type(message).__name__}"
                )
        if isinstance(message, Result):
            return self._on_result(message, now_ms)
        if isinstance(message, Error):
            if message.code in ACCESS_CODES:
                return [AccessRefused(int(message.code), message.message)]
            if message.frame_id is not None:
                self._lost(self._in_flight.pop(message.frame_id, None), now_ms)
            return [NodeError(int(message.code), message.message, message.frame_id)]
        if isinstance(message, Dropped):
            dropped = self._in_flight.pop(message.frame_id, None)
            self._lost(dropped, now_ms)
            if dropped is not None and message.reason is DropReason.SUPERSEDED:
                self._held_slots += 1
            return [FrameDropped(message.frame_id, message.reason_name)]
        if isinstance(message, Pong):
            round_trip_ms = now_ms - message.sent_ms
            self.encoding.on_pong(round_trip_ms)
            if self.in_flight_policy is not None:
                self.in_flight_policy.on_pong(round_trip_ms, now_ms)
            return [PongReceived(round_trip_ms)]
        if isinstance(message, Welcome):
            return self._on_welcome(message)
        raise StreamError(f"a node does not send {type(message).__name__} messages")

    def _on_hello(self, hello: Hello) -> list[Event]:
        if self.state is not StreamState.CONNECTING:
            raise StreamError(f"unexpected second HELLO in state {self.state.value}")
        # Letterbox makes RGB [3, H, W] tensors (any H and W); accepting another shape would
        # have the node refuse every frame with WRONG_SHAPE instead of failing once, here.
        shape = hello.frame_shape
        is_rgb = len(shape) == 3 and shape[0] == 3 and shape[1] > 0 and shape[2] > 0
        if hello.dtype is not Dtype.UINT8 or not is_rgb:
            raise StreamError(
                f"node wants {hello.dtype.label} frames of shape {list(hello.frame_shape)}; "
                "this client sends uint8 [3, H, W]"
            )
        if shape[1] > MAX_INPUT_SIZE_PX:
            raise StreamError(
                f"node wants frames of {shape[1]}x{shape[2]} pixels; this client sends at "
                f"most {MAX_INPUT_SIZE_PX}x{MAX_INPUT_SIZE_PX}"
            )
        if self._expected_sha256 and hello.model_sha256 != self._expected_sha256:
            raise ModelMismatch(hello.model_name, hello.model_sha256, self._expected_sha256)
        self.hello = hello
        if self.in_flight_policy is not None:
            self.in_flight_policy.set_limit(min(self._max_in_flight, hello.max_in_flight))
        self.state = StreamState.AUTHENTICATING
        if self._token is not None:
            self._send_auth()
        return []

    def _on_welcome(self, welcome: Welcome) -> list[Event]:
        accepted = tuple(e for e in welcome.accepted_encodings if e in self._can_encode)
        if accepted != self.encoding.accepted:  # a token refresh's WELCOME changes nothing
            self.encoding = EncodingPolicy(self.encoding.settings, accepted)
        self.welcome = welcome
        if self.state is StreamState.AUTHENTICATING:
            assert self.hello is not None
            self.state = StreamState.READY
            return [Ready(self.hello, welcome)]
        return [Welcomed(welcome)]

    def _lost(self, frame: _InFlight | None, now_ms: float) -> None:
        if frame is not None:
            self.encoding.on_lost(frame.is_probe, now_ms)

    def _on_result(self, result: Result, now_ms: float) -> list[Event]:
        self._held_slots = 0
        sent = self._in_flight.pop(result.frame_id, None)
        if sent is None and result.frame_id in self._abandoned:
            # its stream was reset after the node had it whole: the answer of a frame the
            # page already gave up on (and a newer one superseded) is not drawn
            self._abandoned.remove(result.frame_id)
            return []
        if sent is None:
            raise StreamError(f"node answered frame {result.frame_id}, which is not in flight")
        decode_ms = result.decode_ms or 0.0
        node_ms = result.queue_ms + decode_ms + result.inference_ms + result.post_ms
        self.encoding.on_result(
            sent.encoding,
            sent.size_bytes,
            now_ms - sent.sent_ms,
            node_ms,
            now_ms,
            is_probe=sent.is_probe,
        )
        if self.in_flight_policy is not None:
            page_ms = sent.sent_ms - sent.capture_ms
            self.in_flight_policy.on_result(now_ms - sent.sent_ms, node_ms, now_ms, page_ms)
            self.encoding.set_frame_cap(self.in_flight_policy.frame_cap_bytes)
        if self._is_older(result.frame_id):
            return []  # a newer frame is already on screen; never draw backwards in time
        self._newest_shown_id = result.frame_id
        assert self.hello is not None
        boxes = to_frame(result.detections, sent.geometry, self.hello.class_names)
        return [
            Detections(
                frame_id=result.frame_id,
                boxes=tuple(boxes),
                capture_ms=result.capture_ms,
                round_trip_ms=now_ms - sent.sent_ms,
                queue_ms=result.queue_ms,
                inference_ms=result.inference_ms,
                post_ms=result.post_ms,
                batch_size=result.batch_size,
                decode_ms=decode_ms,
                encoding=sent.encoding.name.lower(),
                size_bytes=sent.size_bytes,
            )
        ]

    def _is_older(self, frame_id: int) -> bool:
        # Frame ids wrap at 2**32; compare in serial-number arithmetic (RFC 1982).
        newest = self._newest_shown_id
        if newest == 0:
            return False
        delta = (frame_id - newest) % (FRAME_ID_LIMIT + 1)
        return delta == 0 or delta > FRAME_ID_LIMIT // 2
