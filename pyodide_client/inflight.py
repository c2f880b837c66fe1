"""How many frames a page keeps in flight on one node link, and how large they may be on a
lossy link: sans-I/O, every call takes ``now_ms`` (issue 16).

One frame in flight caps a camera at one frame per round trip: 10 fps for a node 100 ms
away. More frames in flight hide the network, but on a near node they only queue behind
each other (on loopback K = 2 gave a few % more fps for twice the latency; docs/benchmarks.md).
So K follows the link:

- The link's **network time** is the fastest recent round trip less the node's own time
  (queue, decode, inference, post-processing), or a PONG's round trip: the minimum over
  ``window_ms``, so a retransmission's 200 ms stall never raises K, and frames queued
  behind each other cannot make K feed itself.
- A frame holds its slot for the page's own time on it (grab and encode, from the camera
  frame to the socket: a slot is taken when the page plans a frame), the network time and
  the node's time; ``K / that`` frames a second must reach the target rate:
  K = ceil((page + network x margin + node) / period), where the period is the frame
  interval, or the node's or the page's time when either is slower than the camera (then
  it is the limit itself, and more frames queued would add only latency; the page's time
  then counts for nothing). The page's time is the median of its last few frames (a
  browser takes 10-20 ms; without it, K = 1 at 20 ms of network time drew 21 fps, not
  30: docs/benchmarks.md (u4)). Within a tenth
  of a frame the smaller K is kept. It grows when
  ``grow_margin`` headroom has needed more frames for ``grow_after_ms`` (after
  ``min_samples`` round trips: a connection's slow start, or a machine stalling for a
  moment, is not a far link), and shrinks as soon as ``shrink_margin`` headroom fits in
  fewer (the gap is the hysteresis). At 30 fps with a node taking 2 ms and a page 15 ms:
  K = 1 up to about 18 ms of network time, 2 up to about 48 ms, 4 at 100 ms.
- K never exceeds ``limit``: the node's ``max_in_flight`` (its HELLO) and the page's own.

**Lossy links.** A frame is *late* when its network time is more than a round trip beyond
the fastest (a retransmission timeout, or a frame that took extra round trips because the
congestion window shrank after a loss). With ``lossy_late_frames`` late frames within the
last ``loss_window_ms`` the link counts as lossy until that long passes with none, and frames
should fit ``lossy_frame_bytes``: a few segments fewer than a 17 KB JPEG's 13, so that a
frame fits the congestion window a lossy link leaves (6-11 segments at 50 ms and 1 %;
issue 16) and each frame risks fewer losses. ``frame_cap_bytes`` says it; the encoding
policy lowers the JPEG quality to meet it (``EncodingPolicy.set_frame_cap``). A lossy
link's frames often take an extra round trip (a window that shrank after a loss, a
retransmission), so K there is sized for the ``lossy_quantile`` of recent network times
instead of the fastest, but never more than one frame beyond the fastest's K (more
frames queued at a congested sender would raise the quantile that raised K): at 50 ms
and 1 % loss, 3 frames instead of 2.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

__all__ = ["SEGMENT_BYTES", "InFlightPolicy", "InFlightSettings"]

SEGMENT_BYTES = 1448  # TCP payload per segment at MTU 1500 with timestamps
_MAX_SAMPLES = 512
_PAGE_SAMPLES = 9  # the page's own times the median is taken over
_MAX_PAGE_MS = 1000.0  # a page's time on a frame beyond this is not believed
_SLACK_FRAMES = 0.1


@dataclass(frozen=True)
class InFlightSettings:
    target_fps: float = 30.0
    window_ms: float = 1500.0  # network times the estimate is the minimum of
    min_samples: int = 3  # K grows only after this many round trips on the link
    # ... and only when it has wanted to for this long: a connection's slow start, or a
    # machine that stalls for a moment, is not a far link
    grow_after_ms: float = 1000.0
    grow_margin: float = 1.1  # network-time headroom K must cover
    shrink_margin: float = 1.3  # fewer frames only when they would cover this much
    # how far back late frames count: time, not a frame count, so that a page sending 2
    # frames a second (a slow link) is not held "lossy" for 30 s after the link recovered
    loss_window_ms: float = 2000.0
    lossy_late_frames: int = 2  # this many late frames there: the link is lossy
    late_floor_ms: float = 40.0  # "a round trip beyond the fastest", at least this
    lossy_frame_bytes: int = 8 * SEGMENT_BYTES  # a frame's size on a lossy link
    lossy_quantile: float = 0.75  # the network time K covers on a lossy link (+1 at most)

    def __post_init__(self) -> None:
        if self.target_fps <= 0:
            raise ValueError(f"target_fps: expected a positive number, got {self.target_fps}")
        if not 1.0 <= self.grow_margin <= self.shrink_margin:
            raise ValueError(
                "margins: expected 1 <= grow_margin <= shrink_margin, got "
                f"{self.grow_margin} and {self.shrink_margin}"
            )
        if not 0.0 <= self.lossy_quantile <= 1.0:
            raise ValueError(f"lossy_quantile: expected 0..1, got {self.lossy_quantile}")
        if self.lossy_late_frames < 1 or self.loss_window_ms <= 0:
            raise ValueError(
                "loss: expected lossy_late_frames >= 1 and loss_window_ms > 0, got "
                f"{self.lossy_late_frames} and {self.loss_window_ms}"
            )

    @property
    def interval_ms(self) -> float:
        return 1000.0 / self.target_fps


class InFlightPolicy:
    """K for one node link; see the module docstring."""

    def __init__(self, settings: InFlightSettings, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit: expected at least 1 frame in flight, got {limit}")
        self.settings = settings
        self.limit = limit
        self.window = 1  # K: frames the page may keep unanswered now
        self.is_lossy = False
        # (when, network ms) within window_ms; the maxlen bounds it whatever the rate
        self._network: deque[tuple[float, float]] = deque(maxlen=_MAX_SAMPLES)
        self._node_ms = 0.0  # the node's time for the latest frame
        # the page's own time on its latest frames (grab -> socket): the median is used
        self._page_ms: deque[float] = deque(maxlen=_PAGE_SAMPLES)
        # when late frames came back, within loss_window_ms (the maxlen bounds it)
        self._late: deque[float] = deque(maxlen=_MAX_SAMPLES)
        self._seen = 0  # round trips measured on this link
        self._wants_more_since_ms: float | None = None

    def set_limit(self, limit: int) -> None:
        """The node's and the page's bound (a HELLO came): K stays within it."""
        self.limit = max(1, limit)
        self.window = min(self.window, self.limit)

    @property
    def is_growing(self) -> bool:
        """Whether K is about to grow (the link needs more frames than it has, and the
        limit allows them): a camera frame waiting meanwhile waits for K, not the link."""
        return self._wants_more_since_ms is not None and self.window < self.limit

    def network_ms(self, now_ms: float) -> float | None:
        """The link's network round trip (fastest recent), None before any sample."""
        self._forget(now_ms)
        return min((ms for _, ms in self._network), default=None)

    @property
    def frame_cap_bytes(self) -> int | None:
        """The most bytes a frame should have now: a cap on a lossy link, else None."""
        return self.settings.lossy_frame_bytes if self.is_lossy else None

    # -- what the link did -------------------------------------------------------------------
    def on_pong(self, round_trip_ms: float, now_ms: float) -> None:
        """A PONG: a round trip with no frame and no node work in it."""
        self._add(max(0.0, round_trip_ms), now_ms)
        self._decide(now_ms)

    def on_result(
        self, round_trip_ms: float, node_ms: float, now_ms: float, page_ms: float = 0.0
    ) -> None:
        """A frame's RESULT after ``round_trip_ms``, ``node_ms`` of it on the node;
        ``page_ms``: the page's own time on the frame before it was sent."""
        # another clock's capture time (a client's own) would read as hours: not measured
        self._page_ms.append(page_ms if 0.0 <= page_ms <= _MAX_PAGE_MS else 0.0)
        network_ms = max(0.0, round_trip_ms - node_ms)
        fastest = self.network_ms(now_ms)
        if fastest is not None:
            late_after_ms = fastest + max(fastest, self.settings.late_floor_ms)
            if network_ms > late_after_ms:
                self._late.append(now_ms)
            while self._late and self._late[0] < now_ms - self.settings.loss_window_ms:
                self._late.popleft()
            if len(self._late) >= self.settings.lossy_late_frames:
                self.is_lossy = True
            elif not self._late:
                self.is_lossy = False
        self._node_ms = max(0.0, node_ms)
        self._add(network_ms, now_ms)
        self._decide(now_ms)

    # -- the rule ------------------------------------------------------------------------------
    def frames_needed(self, network_ms: float, margin: float) -> int:
        """Frames in flight that carry the target rate over ``network_ms`` with ``margin``."""
        # a node (or a page) slower than the camera sets the rate itself: frames come at
        # its pace
        page_ms = statistics.median(self._page_ms) if self._page_ms else 0.0
        period_ms = max(self.settings.interval_ms, self._node_ms, page_ms)
        # with a node slower than the camera, a frame the page readies meanwhile would only
        # wait at the node (grab to drawn: 50 -> 99 ms at K = 2 on loopback, docs/benchmarks.md)
        is_node_bound = self._node_ms >= self.settings.interval_ms
        held_ms = (0.0 if is_node_bound else page_ms) + network_ms * margin + self._node_ms
        # a frame's slot is held for held_ms, and one leaves every period_ms; within a
        # tenth of a frame of a whole number the smaller K is kept (0.5 ms of network time
        # is not worth a second frame queued at a slow node)
        return max(1, math.ceil(held_ms / period_ms - _SLACK_FRAMES))

    def _needed(self, network_ms: float, margin: float) -> int:
        """K for the fastest network time, or on a lossy link for its quantile (one
        frame more at most)."""
        needed = self.frames_needed(network_ms, margin)
        if not self.is_lossy:
            return needed
        times = sorted(ms for _, ms in self._network)
        slow_ms = times[min(len(times) - 1, int(self.settings.lossy_quantile * len(times)))]
        return min(needed + 1, self.frames_needed(slow_ms, margin))

    def _decide(self, now_ms: float) -> None:
        network_ms = self.network_ms(now_ms)
        if network_ms is None:
            return
        grow_to = self._needed(network_ms, self.settings.grow_margin)
        if grow_to > self.window:
            if self._wants_more_since_ms is None:
                self._wants_more_since_ms = now_ms
            waited_ms = now_ms - self._wants_more_since_ms
            if self._seen >= self.settings.min_samples and waited_ms >= self.settings.grow_after_ms:
                self.window = min(self.limit, grow_to)
                self._wants_more_since_ms = None
            return
        self._wants_more_since_ms = None
        shrink_to = self._needed(network_ms, self.settings.shrink_margin)
        if shrink_to < self.window:
            self.window = shrink_to

    def _add(self, network_ms: float, now_ms: float) -> None:
        self._seen += 1
        self._network.append((now_ms, network_ms))
        self._forget(now_ms)

    def _forget(self, now_ms: float) -> None:
        # the newest sample always stays: a link answering less often than the window
        # still has an estimate
        while len(self._network) > 1 and now_ms - self._network[0][0] > self.settings.window_ms:
            self._network.popleft()
