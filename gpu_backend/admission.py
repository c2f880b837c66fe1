"""Who gets one of a node's stream slots: the node-wide cap and the caps per identity and
per client address, shared by every connection of the node (sans-I/O, no clock).

A slot is what a camera stream holds while it streams. Probes and sockets that have not
authenticated yet hold none (issue 8: 32 idle sockets used to lock every real user out).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pyodide_client.protocol import Error, ErrorCode

from .access import ANONYMOUS

__all__ = ["Admission", "Slot"]


@dataclass(frozen=True)
class Slot:
    """A granted stream slot; give it back with ``Admission.release``."""

    identity: str
    address: str


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
        self._by_identity: Counter[str] = Counter()
        self._by_address: Counter[str] = Counter()

    @property
    def is_full(self) -> bool:
        return self.streams_open >= self.max_streams

    def full_error(self) -> Error:
        return Error(
            ErrorCode.OVERLOADED,
            f"node {self._node_name} is at capacity ({self.max_streams} streams); try another node",
        )

    def acquire(self, identity: str, address: str) -> Slot | Error:
        """A slot for a stream of ``identity`` from ``address``, or the OVERLOADED error
        that says which cap refused it. Anonymous clients share one identity, so only
        the address cap applies to them."""
        if self.is_full:
            return self.full_error()
        if self._by_address[address] >= self.max_streams_per_address:
            return Error(
                ErrorCode.OVERLOADED,
                f"node {self._node_name} already serves {self.max_streams_per_address} "
                "streams to your address; close one or try another node",
            )
        if identity != ANONYMOUS and self._by_identity[identity] >= self.max_streams_per_identity:
            return Error(
                ErrorCode.OVERLOADED,
                f"node {self._node_name} already serves {self.max_streams_per_identity} "
                f"streams to {identity}; close one or try another node",
            )
        self.streams_open += 1
        self._by_identity[identity] += 1
        self._by_address[address] += 1
        return Slot(identity, address)

    def release(self, slot: Slot) -> None:
        self.streams_open -= 1
        for counter, key in ((self._by_identity, slot.identity), (self._by_address, slot.address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
