"""The ACK delay a node promises its QUIC peers (issue 16).

A QUIC sender that loses the tail of what it sent (the last packets of a frame: nothing
follows to reveal the loss) waits one probe timeout before it sends again: the smoothed
round trip, four deviations, and the **peer's** ``max_ack_delay`` (RFC 9002, 6.2.1),
which the peer announces in its transport parameters. aioquic announces 25 ms whatever
it does, yet acknowledges within ``K_GRANULARITY`` (1 ms) of an ack-eliciting packet, a
loop turn later under load. A page uploading frames to a node therefore waited 25 ms
too long after every lost frame tail: on a LAN with 1 % loss that was most of the p99
(docs/benchmarks.md (u)). The node announces what it does instead, with room for a busy
event loop.

aioquic has no setting for it; the value is written into each connection's transport
parameters before its handshake (the only public seam is the connection object the
server hands the protocol). ``tests/gpu_backend/test_wt_server.py`` reads it back from a
real handshake, so an aioquic that changes this fails there, not silently.
"""

from __future__ import annotations

from aioquic._buffer import Buffer  # aioquic.buffer re-exports it without __all__
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_transport_parameters, push_quic_transport_parameters

__all__ = ["NODE_MAX_ACK_DELAY_MS", "announce_max_ack_delay"]

# aioquic acknowledges 1 ms after an ack-eliciting packet; the rest is for a loop that is
# busy with inference results (a late ACK past this costs a spurious retransmission).
NODE_MAX_ACK_DELAY_MS = 5


def announce_max_ack_delay(quic: QuicConnection, max_ack_delay_ms: int) -> None:
    """Make ``quic`` (before its handshake) announce ``max_ack_delay_ms``."""
    if not 0 < max_ack_delay_ms < 2**14:
        raise ValueError(f"max_ack_delay: expected 1..16383 ms, got {max_ack_delay_ms}")
    serialize = quic._serialize_transport_parameters

    def with_max_ack_delay() -> bytes:
        parameters = pull_quic_transport_parameters(Buffer(data=serialize()))
        parameters.max_ack_delay = max_ack_delay_ms
        buf = Buffer(capacity=4096)
        push_quic_transport_parameters(buf, parameters)
        return buf.data

    setattr(quic, "_serialize_transport_parameters", with_max_ack_delay)  # noqa: B010
