"""Frames in flight adapted to the link (issue 16), driven by a fake clock: K grows with the
network round trip, shrinks back when it falls, stays within the node's limit, and a lossy
link asks for frames of fewer segments."""

from __future__ import annotations

import pytest

from pyodide_client.encoding import EncodingPolicy, EncodingSettings
from pyodide_client.inflight import InFlightPolicy, InFlightSettings
from pyodide_client.protocol import Frame, FrameEncoding, Result, Welcome, parse
from pyodide_client.stream import NodeStream

from .test_stream import HEIGHT, WIDTH, hello, rgba

NODE_MS = 2.0  # a fast node


class Link:
    """A fake link: frames come back after ``network_ms`` + the node's time, one per
    camera tick (33.3 ms at 30 fps) on a fake clock."""

    def __init__(self, policy: InFlightPolicy) -> None:
        self.policy = policy
        self.now_ms = 0.0

    def run(
        self, network_ms: float, seconds: float, node_ms: float = NODE_MS, page_ms: float = 0.0
    ) -> list[int]:
        windows = []
        for _ in range(round(seconds * 30)):
            self.now_ms += 1000 / 30
            self.policy.on_result(network_ms + node_ms, node_ms, self.now_ms, page_ms)
            windows.append(self.policy.window)
        return windows

    def run_late(self, network_ms: float, frames: int, every: int, late_ms: float) -> None:
        """``frames`` frames, every ``every``-th of them ``late_ms`` later than the rest."""
        for i in range(frames):
            self.now_ms += 1000 / 30
            extra_ms = late_ms if i % every == 0 else 0.0
            self.policy.on_result(network_ms + extra_ms + NODE_MS, NODE_MS, self.now_ms)


def policy(limit: int = 8) -> InFlightPolicy:
    return InFlightPolicy(InFlightSettings(target_fps=30.0), limit)


def test_one_frame_in_flight_before_anything_is_measured() -> None:
    assert policy().window == 1


@pytest.mark.parametrize(
    ("network_ms", "k"),
    [(0.5, 1), (20.0, 1), (50.0, 2), (100.0, 4), (200.0, 7)],
)
def test_k_carries_the_target_rate_over_the_network_time(network_ms: float, k: int) -> None:
    link = Link(policy())
    assert link.run(network_ms, 2.0)[-1] == k
    # and K frames per (network + node) time is at least the target rate
    assert k / ((network_ms + NODE_MS) / 1000) >= 30.0


def test_k_grows_with_the_round_trip_and_shrinks_back() -> None:
    link = Link(policy())
    assert set(link.run(0.5, 2.0)) == {1}
    # the fast samples leave the window after 1.5 s; then K waits 1 s more to be sure
    assert link.run(100.0, 3.0)[-1] == 4
    # shrinking takes one fast round trip; the jump to 100 ms made its first frames late
    # (a round trip that grows looks like loss for loss_window_ms), so one frame more is
    # kept until those are 2 s old
    assert link.run(0.5, 0.1)[-1] == 2
    assert link.run(0.5, 1.0)[-1] == 1


def test_k_never_exceeds_the_limit_the_node_announced() -> None:
    p = policy(limit=8)
    p.set_limit(3)
    assert max(Link(p).run(300.0, 2.0)) == 3


def test_a_slow_node_alone_does_not_raise_k() -> None:
    """A node slower than the camera is the bottleneck: frames queued there add latency."""
    assert set(Link(policy()).run(0.5, 2.0, node_ms=80.0)) == {1}


def test_the_pages_own_time_on_a_frame_holds_its_slot_too() -> None:
    """A browser grabs and encodes a frame for 10-20 ms before it is sent, and its slot is
    taken meanwhile: at 20 ms of network time K = 1 drew 21 fps in Chromium, not 30."""
    assert Link(policy()).run(20.0, 3.0, page_ms=15.0)[-1] == 2
    assert Link(policy()).run(20.0, 3.0, page_ms=0.0)[-1] == 1
    # a page slower than the camera is the limit itself: no frame more to queue
    assert set(Link(policy()).run(0.5, 3.0, page_ms=50.0)) == {1}
    # so is a node slower than the camera: a frame readied meanwhile would wait there
    assert set(Link(policy()).run(0.5, 3.0, node_ms=60.0, page_ms=15.0)) == {1}
    # a capture time from another clock is not the page's time
    assert set(Link(policy()).run(20.0, 3.0, page_ms=-5e6)) == {1}


def test_retransmission_stalls_do_not_raise_k() -> None:
    """A 200 ms timeout now and then is not the link's round trip: the minimum is."""
    p = policy()
    link = Link(p)
    for i in range(120):
        link.now_ms += 1000 / 30
        stall = 200.0 if i % 10 == 0 else 0.0
        p.on_result(0.5 + stall + NODE_MS, NODE_MS, link.now_ms)
        assert p.window == 1


def test_between_the_margins_k_holds() -> None:
    """Hysteresis: at 28 ms, 1.1 x 28 + 2 ms fits one interval but 1.3 x 28 + 2 does not:
    K = 1 stays 1 there, and K = 2 stays 2."""
    link = Link(policy())
    assert set(link.run(28.0, 1.0)) == {1}
    assert link.run(40.0, 3.0)[-1] == 2
    assert link.run(28.0, 2.0)[-1] == 2
    assert link.run(20.0, 2.0)[-1] == 1


def test_pongs_count_as_network_round_trips() -> None:
    p = policy()
    for now_ms in (0.0, 500.0, 1000.0):
        p.on_pong(100.0, now_ms=now_ms)
    assert p.window == 4


def test_a_slow_start_or_a_short_stall_does_not_raise_k() -> None:
    """The first round trips of a connection (slow start, TLS) or a machine that stalls
    for most of a second: slow, but not a far link."""
    p = policy()
    link = Link(p)
    assert set(link.run(150.0, 0.9)) == {1}
    assert set(link.run(0.5, 2.0)) == {1}
    assert set(link.run(150.0, 0.9)) == {1}


def test_late_frames_make_the_link_lossy_and_a_clean_window_undoes_it() -> None:
    p = policy()
    link = Link(p)
    link.run(50.0, 1.0)
    assert p.frame_cap_bytes is None
    for _ in range(2):  # two frames a timeout late within the last 2 s
        link.now_ms += 1000 / 30
        p.on_result(50.0 + 250.0 + NODE_MS, NODE_MS, link.now_ms)
    assert p.is_lossy
    assert p.frame_cap_bytes == InFlightSettings().lossy_frame_bytes
    link.run(50.0, 1.0)  # 1 s of clean frames: the late ones are still in the window
    assert p.is_lossy
    link.run(50.0, 1.1)  # 2 s clean
    assert not p.is_lossy
    assert p.frame_cap_bytes is None


def test_a_lossy_distant_link_gets_one_frame_more_in_flight() -> None:
    """At 50 ms, K = 2 carries 30 fps while every frame takes one round trip; with loss,
    frames that take an extra round trip hold their slot longer: K = 3, back to 2 once
    the link is clean again."""
    p = policy()
    link = Link(p)
    assert link.run(50.0, 3.0)[-1] == 2
    link.run_late(50.0, frames=90, every=3, late_ms=60.0)  # an extra round trip
    assert p.is_lossy
    assert p.window == 3
    assert max(link.run(50.0, 3.0)) == 3
    assert not p.is_lossy
    assert p.window == 2


def test_a_lossy_link_never_gets_more_than_one_frame_extra() -> None:
    """However slow its slow frames, a lossy link's K is the fastest's K plus one."""
    p = policy()
    link = Link(p)
    link.run_late(50.0, frames=120, every=2, late_ms=400.0)
    assert p.is_lossy
    assert p.window == 3


def test_a_slow_page_is_not_held_lossy_for_long_after_the_link_recovers() -> None:
    # Given a page sending 2 frames a second (a slow link) whose frames were late (a queue)
    p = InFlightPolicy(InFlightSettings(target_fps=2.0), 8)
    now_ms = 0.0
    for network_ms in (5.0, 5.0, 5.0, 900.0, 900.0):
        now_ms += 500.0
        p.on_result(network_ms + NODE_MS, NODE_MS, now_ms)
    assert p.is_lossy
    # when the link carries frames on time again, then within the window's 2 s (4 frames,
    # not the 60 frames a count-based window needed: 30 s) it is no longer lossy
    for _ in range(5):
        now_ms += 500.0
        p.on_result(5.0 + NODE_MS, NODE_MS, now_ms)
    assert not p.is_lossy


@pytest.mark.parametrize(
    "changes",
    [
        {"target_fps": 0.0},
        {"grow_margin": 1.5, "shrink_margin": 1.2},
        {"lossy_late_frames": 0},
        {"loss_window_ms": 0.0},
        {"lossy_quantile": 1.5},
    ],
)
def test_bad_settings_say_what_was_expected(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="expected"):
        InFlightSettings(**changes)  # type: ignore[arg-type]


# --- in the stream ------------------------------------------------------------------------


def adaptive_stream(page_limit: int = 8, node_limit: int = 3) -> NodeStream:
    stream = NodeStream(max_in_flight=page_limit, in_flight=InFlightSettings())
    stream.receive(hello(node_limit).serialize(), now_ms=0.0)
    stream.data_to_send()
    stream.receive(Welcome(0b001, 0, "anonymous").serialize(), now_ms=0.0)
    return stream


def test_a_stream_opens_up_as_round_trips_come_back_slow_within_the_node_limit() -> None:
    stream = adaptive_stream(node_limit=3)
    now = 0.0
    sent: list[tuple[int, float]] = []
    for _tick in range(60):  # 2 s of camera ticks; every answer takes 100 ms
        now += 1000 / 30
        while sent and now - sent[0][1] >= 100.0:
            frame_id, _ = sent.pop(0)
            reply = Result(frame_id, 0.0, 0.5, 1.0, 0.5, 1, ()).serialize()
            stream.receive(reply, now_ms=now)
        if stream.can_send():
            frame = parse(stream.encode_frame(rgba(), WIDTH, HEIGHT, now, now))
            assert isinstance(frame, Frame)
            sent.append((frame.frame_id, now))
        assert stream.in_flight <= 3
    assert stream.window == 3  # 4 wanted, the node allows 3


def test_a_stream_counts_the_pages_time_from_capture_to_sent() -> None:
    """encode_frame's capture time to the frame's sending (mark_sent) is the page's own."""
    stream = adaptive_stream(node_limit=4)
    now = 0.0
    for _tick in range(90):  # 3 s; each frame: 15 ms on the page, 20 ms away, 2 on the node
        now += 1000 / 30
        if not stream.can_send():
            continue
        frame = parse(stream.encode_frame(rgba(), WIDTH, HEIGHT, now - 15.0, now - 10.0))
        assert isinstance(frame, Frame)
        stream.mark_sent(now)
        reply = Result(frame.frame_id, now - 15.0, 0.5, 1.0, 0.5, 1, ()).serialize()
        stream.receive(reply, now_ms=now + 22.0)
    assert stream.window == 2


def test_a_fixed_stream_keeps_its_k() -> None:
    stream = NodeStream(max_in_flight=2)
    stream.receive(hello(4).serialize(), now_ms=0.0)
    assert stream.in_flight_policy is None
    assert stream.window == 2


# --- smaller frames on a lossy link -------------------------------------------------------


def test_a_frame_cap_lowers_quality_not_the_frame_rate() -> None:
    enc = EncodingPolicy(EncodingSettings(), (FrameEncoding.RAW, FrameEncoding.JPEG))
    enc.set_frame_cap(11_000)
    now = 0.0
    for _ in range(20):  # a fast link: the rate budget is far above the cap
        now += 33.3
        enc.on_result(FrameEncoding.JPEG, 17_000, 5.0, 2.0, now)
    assert enc.quality == pytest.approx(EncodingSettings().min_quality)
    assert enc.min_interval_ms == 0.0
    assert enc.plan(now).encoding is FrameEncoding.JPEG


def test_the_lossy_note_claims_no_frame_size_the_frames_do_not_have() -> None:
    # Seen in WebKit: "14.6 KB each ... (lossy link: frames of at most 11584 bytes)".
    enc = EncodingPolicy(EncodingSettings(), (FrameEncoding.RAW, FrameEncoding.JPEG))
    enc.set_frame_cap(11_584)
    now = 0.0
    now += 33.3
    enc.on_result(FrameEncoding.JPEG, 14_600, 5.0, 2.0, now)
    assert enc.note == (
        "lossy link: quality lowered toward 11.6 KB a frame; quality 0.55, under 0.60: boxes"
        " may differ"
    )
    for _ in range(20):  # the lowest quality still makes 14.6 KB frames
        now += 33.3
        enc.on_result(FrameEncoding.JPEG, 14_600, 5.0, 2.0, now)
    assert enc.quality == pytest.approx(EncodingSettings().min_quality)
    assert enc.note == (
        "lossy link: frames stay above 11.6 KB at the lowest quality; quality 0.30, under"
        " 0.60: boxes may differ"
    )


def test_the_lossy_note_says_when_the_frames_fit_the_cap() -> None:
    # Seen through the lab: "11.4 KB each ... (lossy link: frames stay above 11.6 KB at
    # the lowest quality ...)", left from a larger frame before
    enc = EncodingPolicy(EncodingSettings(), (FrameEncoding.RAW, FrameEncoding.JPEG))
    enc.set_frame_cap(11_584)
    now = 0.0
    for _ in range(20):
        now += 33.3
        enc.on_result(FrameEncoding.JPEG, 12_200, 5.0, 2.0, now)
    assert enc.note.startswith("lossy link: frames stay above 11.6 KB")
    enc.on_result(FrameEncoding.JPEG, 11_400, 5.0, 2.0, now + 33.3)
    assert enc.note == (
        "lossy link: frames within 11.6 KB; quality 0.30, under 0.60: boxes may differ"
    )


def test_the_lossy_note_goes_with_the_cap() -> None:
    enc = EncodingPolicy(EncodingSettings(), (FrameEncoding.RAW, FrameEncoding.JPEG))
    enc.set_frame_cap(11_000)
    enc.on_result(FrameEncoding.JPEG, 17_000, 5.0, 2.0, 33.3)
    assert enc.note.startswith("lossy link")
    enc.set_frame_cap(None)  # the link recovered
    assert enc.note == ""


def test_a_frame_cap_leaves_raw_and_stops_raw_probes() -> None:
    enc = EncodingPolicy(EncodingSettings(), (FrameEncoding.RAW, FrameEncoding.JPEG))
    enc._is_raw = True  # a LAN where raw frames fit
    enc.set_frame_cap(11_000)
    assert enc.encoding is FrameEncoding.JPEG
    assert all(not enc.plan(t * 1000.0).is_probe for t in range(60))
    enc.set_frame_cap(None)
    assert any(enc.plan(t * 1000.0).is_probe for t in range(60, 120))


def test_a_frame_waiting_while_k_grows_is_not_the_link_holding_it_back() -> None:
    """K starts at 1 and grows after a second of far round trips: the frames that wait
    meanwhile wait for K, and must not lower the quality (encoding.on_window_full)."""
    stream = adaptive_stream(node_limit=2)
    assert stream.in_flight_policy is not None
    now = 0.0
    for _tick in range(20):  # 100 ms round trips: K wants 4, the node allows 2
        now += 1000 / 30
        stream.in_flight_policy.on_result(102.0, 2.0, now)
    assert stream.in_flight_policy.is_growing
    stream.note_waiting(now)
    assert not stream.encoding.is_link_bound(now)
    for _tick in range(40):  # K reaches the node's limit: a wait now is the link's
        now += 1000 / 30
        stream.in_flight_policy.on_result(102.0, 2.0, now)
    assert stream.window == 2
    assert not stream.in_flight_policy.is_growing
    stream.note_waiting(now)
    assert stream.encoding.is_link_bound(now)
