"""A node's live connections, sans-I/O: who may open a socket at all, the policy object
each accepted socket gets, and what closed ones leave behind.

The endpoint (``endpoint.py``, and any other transport's driver) asks ``open`` at the
handshake: a page from an origin the node does not serve is refused there (the WebSocket
handshake answers 403), with one sampled log line, never one per attempt. Otherwise it gets
a ``connection.Connection`` built with the node's limits, slots, authenticator and frame
check, registers it with ``add`` once the socket is accepted and hands it back to
``closed`` when the socket is gone: that counts the policy that closed it, keeps the
largest outbox any connection held and logs one sampled summary line for a connection
that was closed by policy or refused messages. Stream ids are numbered per node.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator

from pyodide_client.protocol import Image

from .access import Authenticator
from .admission import Admission
from .connection import Connection, ConnectionLimits, ConnectionObserver
from .engine import UInt8Array
from .frame_input import frame_input
from .log_sampler import LogSampler
from .origins import OriginPolicy

__all__ = ["Connections", "NodeConnection"]

log = logging.getLogger(__name__)

NodeConnection = Connection[UInt8Array | Image]


class Connections:
    def __init__(
        self,
        *,
        origins: OriginPolicy,
        hello: bytes,
        limits: ConnectionLimits,
        admission: Admission,
        authenticator: Authenticator,
        frame_shape: tuple[int, int, int],
        encodings: int,
        features: int,
        observer: ConnectionObserver,
        wt_offer: Callable[[], tuple[int, str]] = lambda: (0, ""),
    ) -> None:
        self.origins = origins
        self._hello = hello
        self._limits = limits
        self._admission = admission
        self._authenticator = authenticator
        self._frame_input = functools.partial(frame_input, shape=frame_shape)
        self._encodings = encodings
        self._features = features
        self._observer = observer
        self._wt_offer = wt_offer  # WELCOME's WebTransport port and hash (issue 16)
        self._live: set[NodeConnection] = set()
        self._stream_ids = itertools.count(1)
        self._refused_origins = LogSampler(logger=log)
        self._closes = LogSampler(logger=log)
        self._closed_peak_bytes = 0  # the largest outbox of a connection now closed
        # Connections the node closed, by the policy that closed them (ErrorCode names).
        self.policy_closes: Counter[str] = Counter()

    def open(self, origin: str | None, address: str, now_s: float) -> NodeConnection | None:
        """The policy for a socket from ``address`` opened by a page of ``origin`` (the
        handshake's Origin header, None without one), or None: refuse the handshake."""
        if not self.origins.allows(origin):
            self._refused_origins.log(
                now_s, logging.INFO, "refused a WebSocket from %s: origin %r", address, origin
            )
            return None
        return Connection(
            hello=self._hello,
            limits=self._limits,
            admission=self._admission,
            authenticator=self._authenticator,
            decode=self._frame_input,
            address=address,
            origin=origin,
            encodings=self._encodings,
            features=self._features,
            observer=self._observer,
            is_reporting_outcomes=True,
            wt_offer=self._wt_offer(),
        )

    def next_stream_id(self) -> int:
        return next(self._stream_ids)

    def add(self, conn: NodeConnection) -> None:
        self._live.add(conn)

    def discard(self, conn: NodeConnection) -> None:
        """Forget ``conn`` without ``closed``'s accounting (what a plain set offered)."""
        self._live.discard(conn)
        self._closed_peak_bytes = max(self._closed_peak_bytes, conn.peak_queued_bytes)

    def note_outbox(self, queued_bytes: int) -> None:
        """A driver's own report of a connection's outbox (``closed`` reads it itself)."""
        self._closed_peak_bytes = max(self._closed_peak_bytes, queued_bytes)

    def closed(self, conn: NodeConnection, stream_id: int, now_s: float) -> None:
        """The socket of ``conn`` is gone: its slot goes back, and what it cost is kept."""
        conn.connection_lost()
        self._live.discard(conn)
        self._closed_peak_bytes = max(self._closed_peak_bytes, conn.peak_queued_bytes)
        close = conn.closed_by
        why = close.why.name if close is not None and close.why is not None else "client left"
        if close is not None:
            self.policy_closes[why] += 1
        if close is None and not conn.refused:
            return
        self._closes.log(
            now_s,
            logging.INFO,
            "connection %d from %s closed (%s) after %d refused messages%s",
            stream_id,
            conn.address,
            why,
            conn.refused,
            f"; the first: {conn.first_refusal}" if conn.first_refusal else "",
        )

    @property
    def peak_outbox_bytes(self) -> int:
        """The most unsent bytes one connection ever held, live or closed."""
        live = max((conn.peak_queued_bytes for conn in self._live), default=0)
        return max(self._closed_peak_bytes, live)

    @property
    def outbox_bytes(self) -> int:
        """Bytes queued for clients and not yet written to their sockets."""
        return sum(conn.queued_bytes for conn in self._live)

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[NodeConnection]:
        return iter(list(self._live))

    def __contains__(self, conn: object) -> bool:
        return conn in self._live
