"""Who gets a node's stream slots (``gpu_backend/admission.py``), sans-I/O."""

from __future__ import annotations

from gpu_backend.access import ANONYMOUS
from gpu_backend.admission import Admission, Slot
from pyodide_client.protocol import Error, ErrorCode


def shipped() -> Admission:
    """The shipped caps: 32 streams, 8 per identity, 16 per address."""
    return Admission("n", max_streams=32, max_streams_per_identity=8, max_streams_per_address=16)


def fill(slots: Admission, address: str, identity: str = ANONYMOUS, anonymous: bool = True) -> int:
    """Take slots for ``identity`` from ``address`` until refused; how many were granted."""
    granted = 0
    while isinstance(slots.acquire(identity, address, is_anonymous=anonymous), Slot):
        granted += 1
    return granted


def test_two_addresses_of_anonymous_clients_cannot_fill_the_node() -> None:
    # issue 17: 32 anonymous streams from 2 addresses took all 32 slots
    slots = shipped()
    assert fill(slots, "10.0.0.1") == 8
    assert fill(slots, "10.0.0.2") == 8
    assert slots.streams_open == 16
    refused = slots.acquire(ANONYMOUS, "10.0.0.1", is_anonymous=True)
    assert isinstance(refused, Error)
    assert refused.code is ErrorCode.OVERLOADED
    assert "anonymous clients of your address" in refused.message
    # a signed-in user from the same address still gets in (the address holds 8 of 16)
    assert isinstance(slots.acquire("alice", "10.0.0.1"), Slot)


def test_a_user_named_anonymous_is_not_the_anonymous_pool() -> None:
    slots = shipped()
    assert fill(slots, "10.0.0.1") == 8  # the anonymous clients of this address: full
    # a token identity that happens to be called "anonymous" has a cap of its own
    granted = fill(slots, "10.0.0.1", identity=ANONYMOUS, anonymous=False)
    assert granted == 8
    assert slots.streams_open == 16  # the address cap (16) stopped it, not the pool's
    refused = slots.acquire(ANONYMOUS, "10.0.0.2", is_anonymous=False)
    assert isinstance(refused, Error)
    assert f"streams to {ANONYMOUS};" in refused.message  # the user's own cap


def test_the_user_anonymous_does_not_use_up_the_anonymous_cap() -> None:
    slots = shipped()
    assert fill(slots, "10.0.0.9", identity=ANONYMOUS, anonymous=False) == 8
    assert fill(slots, "10.0.0.1") == 8  # anonymous clients elsewhere: their full cap


def test_released_slots_are_counted_back_per_kind() -> None:
    slots = shipped()
    anonymous = slots.acquire(ANONYMOUS, "10.0.0.1", is_anonymous=True)
    user = slots.acquire(ANONYMOUS, "10.0.0.1")
    assert isinstance(anonymous, Slot)
    assert isinstance(user, Slot)
    slots.release(anonymous)
    assert fill(slots, "10.0.0.1") == 8  # one anonymous slot came back: 8 again
    slots.release(user)
    assert slots.streams_open == 8
