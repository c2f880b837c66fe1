"""How the next frame travels on one node link: raw, or JPEG/WebP at which quality (issue 9).

A raw 416 frame is 519,168 bytes: 125 Mbit/s at 30 fps, more than most Wi-Fi and any
uplink between sites carries. A JPEG of the picture alone at the default quality is about
a thirtieth of that. ``EncodingPolicy`` picks per frame, sans-I/O (every call takes
``now_ms``; tests drive it with a fake clock):

- It measures the link from round trips: a frame's *transfer time* is its round trip less
  the node's own time (queue, decode, inference, post-processing) less the link's base round
  trip (the fastest recent PONG; ``ping_due`` asks for a PING about once a second, and
  without any the base counts as 0, which underestimates the link). A frame sent while the
  previous one was still on its way (frames in flight; on an uplink shared with other
  cameras, their frames fall between the two) counts from that one's delivery instead,
  so its queueing is not read as a slow link, nor a PING queued behind frames (an
  overstated base) as a fast one. Bytes over transfer time is one throughput sample; the
  estimate is the median of the last few, so one hiccup moves nothing. With one frame in
  flight (the page's default near a node) and no other camera, it is the link's own rate.
- ``auto`` starts compressed (cheap on any link), and stays raw only where the link carries
  raw frames at the target frame rate with room to spare: it goes raw when a probe finds
  raw would use at most ``raw_share`` of the link, and leaves raw when raw would need more
  than ``leave_raw_share`` of it. The gap between the two is the hysteresis. While
  compressed it sends one raw frame as a probe every ``probe_interval_ms``, doubling the
  interval after each probe that finds the link too slow (up to ``max_probe_interval_ms``),
  and skips probes while its compressed frames already measure the link at under a quarter
  of what raw would need (a raw probe would stall a 10 Mbit/s link for 0.4 s).
- Compressed, it keeps each frame within ``frame_share`` of what the link carries in one
  frame interval: quality steps down while frames are over that budget and back up (never
  above the default, where parity with raw was measured) while they are well under it.
  At the quality floor it lowers the frame rate instead (``min_interval_ms``). It steps
  down only while the link is seen to hold the camera back (``on_window_full``: a camera
  frame waited for a slot in the window within ``link_bound_ms``): a frame's transfer
  time is also the sender's pacing and congestion window, and the page's own busy time,
  so a distant link that keeps up with the camera reads slow (100 ms away over TCP the
  page read "5.4 Mbit/s", went to quality 0.3 and 17 fps; docs/benchmarks.md (u4)).
  While nothing waits, the quality climbs back a step per ``link_bound_ms``, and frames
  paced at the floor try the full rate again after ``PACED_RETRY_LINK_BOUNDS`` of them.
  On a lossy link (a frame cap, below) none of this applies: there frames wait for
  retransmissions, and the rule is the plain one.
- On a lossy link (``set_frame_cap``, from ``inflight.InFlightPolicy``; issue 16) frames
  should fit a few TCP segments: the quality steps down until they do (never the frame
  rate: the cap is about loss, not the link's rate), raw frames are left for compressed
  ones and no raw probe goes out while the cap holds. Its ``note`` says the goal while the
  quality steps down, or that the lowest quality still makes larger frames, and goes when
  the cap does (a page beside "14.6 KB each" must not claim frames of at most 11.6 KB).
- ``allow_raw=False`` and ``follow_rate=False`` (a QUIC link's frames): ``auto`` without
  raw frames or probes, and blind to the measured rate; only a lossy link's cap lowers the
  quality (docs/benchmarks.md (u4): on QUIC the rate read 1.4-7.8 Mbit/s on links carrying
  more, and following it paced 50 ms + 1 % to 10 fps; the cap alone drew 27 fps there).
- ``raw``, ``jpeg`` and ``webp`` pin the encoding at its default quality (an operator's
  ``EDGESIGHT_FRAME_ENCODING``); a node that does not accept the pinned one gets raw frames.

JPEG is preferred over WebP in ``auto``: a node decodes it about three times faster
(simplejpeg; docs/benchmarks.md) for a few kilobytes more.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from .protocol import FrameEncoding

__all__ = ["MODES", "EncodingPlan", "EncodingPolicy", "EncodingSettings"]

MODES = ("auto", "raw", "jpeg", "webp")
_PINNED = {"raw": FrameEncoding.RAW, "jpeg": FrameEncoding.JPEG, "webp": FrameEncoding.WEBP}
_NOISE_FLOOR_MS = 0.5  # a transfer faster than this is measured as this (timer noise)
HOPELESS_SHARE = 0.25  # no probe while compressed frames measure under this share of need
PACED_RETRY_LINK_BOUNDS = 5  # frames paced at the floor try the full rate after 5 x link_bound_ms


@dataclass(frozen=True)
class EncodingSettings:
    mode: str = "auto"  # auto | raw | jpeg | webp
    target_fps: float = 30.0
    # 0..1 as canvas.toBlob takes it: the lowest qualities that keep parity with raw frames
    # on the test photos, webcam-framed too (tests/gpu_backend/test_parity.py,
    # bench/frame_bytes.py: JPEG 0.5 and WebP 0.6 each lost chelsea's cat)
    jpeg_quality: float = 0.6
    webp_quality: float = 0.75
    min_quality: float = 0.3  # below this, lower the frame rate instead
    quality_step: float = 0.05
    raw_share: float = 0.5  # go raw when raw would use at most this share of the link
    leave_raw_share: float = 0.8  # leave raw when it would need more than this share
    frame_share: float = 0.5  # a compressed frame's share of one frame interval's bytes
    samples: int = 5  # throughput samples the median is taken over
    base_samples: int = 20  # round trips the base round trip is the minimum of
    probe_interval_ms: float = 2000.0
    ping_interval_ms: float = 1000.0  # PINGs that keep the base round trip current
    max_probe_interval_ms: float = 30000.0
    # a camera frame that waited for a slot this recently: the link holds the camera back
    link_bound_ms: float = 1000.0
    # auto only; both False on a QUIC link (page_core):
    allow_raw: bool = True  # raw frames, and raw probes, may go
    # the quality and the frame rate follow the measured link rate (a lossy link's frame
    # cap holds either way)
    follow_rate: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"frame encoding mode: expected one of {', '.join(MODES)}, got {self.mode!r}"
            )
        for name in ("jpeg_quality", "webp_quality"):
            default = getattr(self, name)
            if not 0 < self.min_quality <= default <= 1:
                raise ValueError(
                    f"qualities: expected 0 < min_quality <= {name} <= 1, got "
                    f"{self.min_quality} and {default}"
                )
        if not 0 < self.raw_share <= self.leave_raw_share <= 1:
            raise ValueError(
                "link shares: expected 0 < raw_share <= leave_raw_share <= 1, got "
                f"{self.raw_share} and {self.leave_raw_share}"
            )
        if self.target_fps <= 0:
            raise ValueError(f"target_fps: expected a positive number, got {self.target_fps}")

    def default_quality(self, encoding: FrameEncoding) -> float:
        """The quality a lossy encoding starts at and never exceeds."""
        return self.webp_quality if encoding is FrameEncoding.WEBP else self.jpeg_quality


@dataclass(frozen=True)
class EncodingPlan:
    """What the next frame should be: the page encodes it so."""

    encoding: FrameEncoding
    quality: float  # meaningful for JPEG/WebP only
    is_probe: bool = False  # a raw frame sent to measure the link while compressed

    @property
    def name(self) -> str:
        return self.encoding.name.lower()


class EncodingPolicy:
    """The encoding decision for one node link; see the module docstring."""

    def __init__(
        self,
        settings: EncodingSettings,
        accepted: tuple[FrameEncoding, ...] = (FrameEncoding.RAW,),
    ) -> None:
        self.settings = settings
        self.accepted = accepted
        self.min_interval_ms = 0.0  # frame pacing: > 0 only at the quality floor
        self.note = ""  # why the encoding is what it is, in words
        self._lossy = self._pick_lossy(settings.mode, accepted)
        self._top_quality = settings.default_quality(self._lossy or FrameEncoding.JPEG)
        self.quality = self._top_quality
        self._is_raw = self._lossy is None
        if self._is_raw and settings.mode in ("jpeg", "webp"):
            self.note = f"node does not accept {settings.mode}: raw frames"
        self._throughput: deque[float] = deque(maxlen=settings.samples)  # bytes per ms
        self._raw_throughput: deque[float] = deque(maxlen=3)
        self._base: deque[float] = deque(maxlen=settings.base_samples)
        self._probe_interval_ms = settings.probe_interval_ms
        self._next_probe_ms: float | None = None
        self._probe_in_flight = False
        self._ping_sent_ms: float | None = None
        self._ping_is_out = False
        self.frame_cap_bytes: int | None = None  # a lossy link's frame size; None: no cap
        self._is_note_lossy = False
        self._window_full_ms: float | None = None  # when a camera frame last waited for a slot
        self._raised_ms = 0.0  # when the quality last climbed while nothing waited
        self._delivered_ms: float | None = None  # the latest frame's arrival, less node time

    @staticmethod
    def _pick_lossy(mode: str, accepted: tuple[FrameEncoding, ...]) -> FrameEncoding | None:
        if mode == "raw":
            return None
        if mode in _PINNED:
            wanted = _PINNED[mode]
            return wanted if wanted in accepted else None
        for choice in (FrameEncoding.JPEG, FrameEncoding.WEBP):
            if choice in accepted:
                return choice
        return None

    @property
    def is_adaptive(self) -> bool:
        return self.settings.mode == "auto" and self._lossy is not None

    @property
    def encoding(self) -> FrameEncoding:
        """The encoding frames currently travel in (a probe aside)."""
        return FrameEncoding.RAW if self._is_raw or self._lossy is None else self._lossy

    # -- the decision ------------------------------------------------------------------------
    def plan(self, now_ms: float, raw_bytes: int | None = None) -> EncodingPlan:
        """The next frame's encoding; ``raw_bytes``, the size a raw frame would have,
        lets a slow link skip probes that could not succeed."""
        if self._lossy is None or self._is_raw:
            return EncodingPlan(FrameEncoding.RAW, self.quality)
        if (
            self.is_adaptive
            and self.settings.allow_raw
            and not self._probe_in_flight
            and self.frame_cap_bytes is None
        ):
            if self._next_probe_ms is None:
                self._next_probe_ms = now_ms + self._probe_interval_ms
            elif now_ms >= self._next_probe_ms:
                if self._is_hopeless(raw_bytes):
                    self._next_probe_ms = now_ms + self._probe_interval_ms
                else:
                    self._probe_in_flight = True
                    return EncodingPlan(FrameEncoding.RAW, self.quality, is_probe=True)
        return EncodingPlan(self._lossy, self.quality)

    def _is_hopeless(self, raw_bytes: int | None) -> bool:
        """Whether the compressed frames already show the link far too slow for raw: a
        probe there would only stall it (a raw frame takes 0.4 s at 10 Mbit/s). Small
        frames measure a fast link poorly (their transfer is within the timer's noise,
        which caps their samples near 250 Mbit/s), so only a clear shortfall counts."""
        rate = self.throughput_bytes_per_ms()
        if raw_bytes is None or rate is None:
            return False
        need = self.raw_need_bytes_per_ms(raw_bytes) / self.settings.raw_share
        return rate < need * HOPELESS_SHARE

    def throughput_bytes_per_ms(self) -> float | None:
        """The link's estimated rate (median of recent samples), None before any sample."""
        return statistics.median(self._throughput) if self._throughput else None

    def raw_need_bytes_per_ms(self, raw_bytes: int) -> float:
        return raw_bytes * self.settings.target_fps / 1000.0

    def set_frame_cap(self, cap_bytes: int | None) -> None:
        """Frames should have at most ``cap_bytes`` (a lossy link), or no cap (None)."""
        if cap_bytes == self.frame_cap_bytes:
            return
        self.frame_cap_bytes = cap_bytes
        if cap_bytes is None and self._is_note_lossy:
            self._set_note("")  # the link recovered: a lossy link's note would be stale
        if cap_bytes is not None and self.is_adaptive and self._is_raw:
            self._is_raw = False
            self.quality = self._top_quality
            self._next_probe_ms = None
            self._probe_interval_ms = self.settings.probe_interval_ms
            self._set_note("lossy link: compressed frames, fewer segments each", is_lossy=True)

    def _below_parity(self) -> str:
        """Below the default quality, detections were not checked against raw frames (and
        differ: seen in WebKit, chelsea's cat read as two clocks at about 11 KB a frame)."""
        if self.quality >= self._top_quality - 1e-9:
            return ""
        # no parentheses: the page shows the note in parentheses already
        return f"; quality {self.quality:.2f}, under {self._top_quality:.2f}: boxes may differ"

    def _set_note(self, note: str, is_lossy: bool = False) -> None:
        self.note = note
        self._is_note_lossy = is_lossy  # said because of the cap: it goes with the cap

    # -- what the link did -------------------------------------------------------------------
    def ping_due(self, now_ms: float) -> bool:
        """Whether to PING the node now (then send it: this counts it as sent)."""
        if not self.is_adaptive:
            return False
        last = self._ping_sent_ms
        # a PING whose PONG never came is given up after five intervals
        patience_ms = self.settings.ping_interval_ms * (5 if self._ping_is_out else 1)
        if last is not None and now_ms - last < patience_ms:
            return False
        self._ping_sent_ms = now_ms
        self._ping_is_out = True
        return True

    def on_pong(self, round_trip_ms: float) -> None:
        self._ping_is_out = False
        self._base.append(round_trip_ms)

    def on_result(
        self,
        encoding: FrameEncoding,
        size_bytes: int,
        round_trip_ms: float,
        node_ms: float,
        now_ms: float,
        is_probe: bool = False,
    ) -> None:
        """A frame of ``size_bytes`` came back after ``round_trip_ms``, ``node_ms`` of it
        spent on the node."""
        base_ms = min(self._base) if self._base else 0.0
        # when it would have come back had the node taken no time, and when its transfer
        # began: a base round trip after it was sent, or, if the previous frame was still
        # on its way then (frames in flight; other cameras' frames on a shared link fall
        # between the two), when that one was through: then the transfer is the gap between
        # the two deliveries, whatever the base (a PING queued behind frames overstates it)
        delivered_ms = now_ms - node_ms
        start_ms = now_ms - round_trip_ms + base_ms
        last = self._delivered_ms
        if last is not None and last > start_ms:
            start_ms = last
        self._delivered_ms = delivered_ms if last is None else max(last, delivered_ms)
        transfer_ms = max(_NOISE_FLOOR_MS, delivered_ms - start_ms)
        sample = size_bytes / transfer_ms
        self._throughput.append(sample)
        if encoding is FrameEncoding.RAW:
            self._raw_throughput.append(sample)
        if not self.is_adaptive:
            return
        if is_probe:
            self._after_probe(sample, size_bytes, now_ms)
        elif self._is_raw:
            self._check_raw(size_bytes)
        else:
            self._adjust_quality(size_bytes, now_ms)

    def on_window_full(self, now_ms: float) -> None:
        """A camera frame is waiting because every slot of the window is taken."""
        self._window_full_ms = now_ms

    def is_link_bound(self, now_ms: float) -> bool:
        """Whether a camera frame waited for a slot within ``link_bound_ms``."""
        full = self._window_full_ms
        return full is not None and now_ms - full <= self.settings.link_bound_ms

    def on_lost(self, is_probe: bool, now_ms: float) -> None:
        """A frame got no RESULT (dropped, refused, the connection lost)."""
        if is_probe:
            self._probe_in_flight = False
            self._next_probe_ms = now_ms + self._probe_interval_ms

    def _after_probe(self, sample: float, raw_bytes: int, now_ms: float) -> None:
        self._probe_in_flight = False
        if sample * self.settings.raw_share >= self.raw_need_bytes_per_ms(raw_bytes):
            self._is_raw = True
            self.min_interval_ms = 0.0
            self._probe_interval_ms = self.settings.probe_interval_ms
            self._next_probe_ms = None
            self._raw_throughput.clear()
            self._raw_throughput.append(sample)
            # no parentheses: the page shows the note in parentheses already
            self._set_note(f"link carries raw frames: {_mbit(sample)} Mbit/s measured")
            return
        self._probe_interval_ms = min(
            self.settings.max_probe_interval_ms, self._probe_interval_ms * 2
        )
        self._next_probe_ms = now_ms + self._probe_interval_ms

    def _check_raw(self, raw_bytes: int) -> None:
        if len(self._raw_throughput) < self._raw_throughput.maxlen:  # type: ignore[operator]
            return
        rate = statistics.median(self._raw_throughput)
        if rate * self.settings.leave_raw_share < self.raw_need_bytes_per_ms(raw_bytes):
            self._is_raw = False
            self.quality = self._top_quality
            self._next_probe_ms = None
            self._probe_interval_ms = self.settings.probe_interval_ms
            self._set_note(f"link too slow for raw frames: {_mbit(rate)} Mbit/s measured")

    def _adjust_quality(self, size_bytes: int, now_ms: float) -> None:
        s = self.settings
        rate = self.throughput_bytes_per_ms()
        if rate is None:
            return
        interval_ms = 1000.0 / s.target_fps
        rate_budget = rate * interval_ms * s.frame_share if s.follow_rate else float("inf")
        cap = self.frame_cap_bytes
        budget = rate_budget if cap is None else min(rate_budget, cap)
        is_bound = self.is_link_bound(now_ms)
        # over the link's share only counts while the link holds the camera back; on a
        # lossy link (a cap) the frames wait for retransmissions, not the link's rate, and
        # the rule stays as it was (gated there, the page's TCP fell to 2-5 fps at 1-5 %)
        over_rate = size_bytes > rate_budget and (is_bound or cap is not None)
        over_cap = cap is not None and size_bytes > cap
        if over_rate or over_cap:
            self._raised_ms = now_ms  # climbing back waits link_bound_ms from here
            is_lowered = self.quality - s.quality_step >= s.min_quality - 1e-9
            if is_lowered:
                self.quality = round(self.quality - s.quality_step, 3)
            elif over_rate:  # at the floor: fewer frames, each within the link's share
                self.min_interval_ms = size_bytes / (rate * s.frame_share)
            if over_rate:
                self._set_note(f"link carries {_mbit(rate)} Mbit/s{self._below_parity()}")
            elif is_lowered:  # a goal, not a claim: the frames are not that small yet
                self._set_note(
                    f"lossy link: quality lowered toward {_kb(cap)} KB a frame"
                    f"{self._below_parity()}",
                    is_lossy=True,
                )
            else:
                self._set_note(
                    f"lossy link: frames stay above {_kb(cap)} KB at the lowest quality"
                    f"{self._below_parity()}",
                    is_lossy=True,
                )
        elif size_bytes < budget / 2:
            if self.min_interval_ms > 0:
                self.min_interval_ms = 0.0
            elif self.quality + s.quality_step <= self._top_quality + 1e-9:
                self.quality = round(self.quality + s.quality_step, 3)
        elif cap is None and not is_bound:
            # nothing waited for a while: the link may keep up with the camera (a frame
            # cap holds). Paced frames never wait, so pacing is let go now and then, to
            # see: a link that is slow indeed fills the window again within a few frames.
            waited_ms = now_ms - self._raised_ms
            if self.min_interval_ms > 0 and waited_ms >= PACED_RETRY_LINK_BOUNDS * s.link_bound_ms:
                self._raised_ms = now_ms
                self.min_interval_ms = 0.0
            elif self.min_interval_ms == 0 and waited_ms >= s.link_bound_ms:
                self._raised_ms = now_ms
                if self.quality + s.quality_step <= self._top_quality + 1e-9:
                    self.quality = round(self.quality + s.quality_step, 3)
        if cap is not None and not over_cap and self._is_note_lossy:
            # within the cap now: a note saying otherwise, left from a larger frame, goes
            note = f"lossy link: frames within {_kb(cap)} KB{self._below_parity()}"
            self._set_note(note, is_lossy=True)


def _kb(size_bytes: int | None) -> str:
    return f"{(size_bytes or 0) / 1000:.1f}"  # as the page's "14.2 KB each"


def _mbit(bytes_per_ms: float) -> str:
    return f"{bytes_per_ms * 8 / 1000:.1f}"
