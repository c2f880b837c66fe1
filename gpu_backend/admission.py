"""Who gets one of a node's stream slots: the node-wide cap and the caps per identity and
per client address, shared by every connection of the node (sans-I/O, no clock).

A slot is what a camera stream holds while it streams. Probes and sockets that have not
authenticated yet hold none (issue 8: 32 idle sockets used to lock every real user out).

Clients without a token (anonymous) have no identity to cap, so each client address counts
as one anonymous identity: the per-identity cap applies to the anonymous streams of each
address, below the address's own cap (issue 17: 32 anonymous streams from 2 addresses
filled all 32 slots). They are counted apart from every token identity, so a user who
happens to be named ``anonymous`` neither shares nor uses up their cap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pyodide_client.protocol import Error, ErrorCode

__all__ = ["Admission", "Slot"]


@dataclass(frozen=True)
class Slot:
    """A granted stream slot; give it back with ``Admission.release``."""

    identity: str
    address: str
    is_anonymous: bool = False

    @property
    def identity_key(self) -> tuple[str, str]:
        """What the per-identity cap counts: a user, or the anonymous clients of one address."""
        return ("anonymous", self.address) if self.is_anonymous else ("user", self.identity)


class Admission:
    def __init__(
        self,
        node_name: str,
        max_streams: int,
        max_streams_per_identity: int,
        max_streams_per_address: int,
    ) -> None:
        self._node_name = node_name
        self.max_streams = max_streams
        self.max_streams_per_identity = max_streams_per_identity
        self.max_streams_per_address = max_streams_per_address
        self.streams_open = 0
        self._by_identity: Counter[tuple[str, str]] = Counter()
        self._by_address: Counter[str] = Counter()

    @property
    def is_full(self) -> bool:
        return self.streams_open >= self.max_streams

    def full_error(self) -> Error:
        return Error(
            ErrorCode.OVERLOADED,
            f"node {self._node_name} is at capacity ({self.max_streams} streams); try another node",
        )

    def acquire(self, identity: str, address: str, is_anonymous: bool = False) -> Slot | Error:
        """A slot for a stream of ``identity`` from ``address``, or the OVERLOADED error
        that says which cap refused it. The anonymous streams of one address count as
        one identity."""
        slot = Slot(identity, address, is_anonymous)
        if self.is_full:
            return self.full_error()
        if self._by_address[address] >= self.max_streams_per_address:
            return Error(
                ErrorCode.OVERLOADED,
                f"node {self._node_name} already serves {self.max_streams_per_address} "
                "streams to your address; close one or try another node",
            )
        if self._by_identity[slot.identity_key] >= self.max_streams_per_identity:
            whom = "anonymous clients of your address" if is_anonymous else identity
            return Error(
                ErrorCode.OVERLOADED,
                f"node {self._node_name} already serves {self.max_streams_per_identity} "
                f"streams to {whom}; close one or try another node",
            )
        self.streams_open += 1
        self._by_identity[slot.identity_key] += 1
        self._by_address[address] += 1
        return slot

    def release(self, slot: Slot) -> None:
        self.streams_open -= 1
        self._by_identity[slot.identity_key] -= 1
        if self._by_identity[slot.identity_key] <= 0:
            del self._by_identity[slot.identity_key]
        self._by_address[slot.address] -= 1
        if self._by_address[slot.address] <= 0:
            del self._by_address[slot.address]
