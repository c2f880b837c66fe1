"""pyodide_client.frames: the page's encoding settings, what the browser can encode, and
frames sent on the dashboard."""

from __future__ import annotations

from pyodide_client.dashboard import Dashboard
from pyodide_client.frames import Frames
from pyodide_client.page_config import PageConfig
from pyodide_client.protocol import FrameEncoding
from pyodide_client.stream import NodeStream


def test_the_config_sets_the_encoding_and_the_browser_what_it_can_encode() -> None:
    frames = Frames(PageConfig(frame_encoding="jpeg", target_fps=12.5), Dashboard())
    assert (frames.settings.mode, frames.settings.target_fps) == ("jpeg", 12.5)
    assert frames.can_encode == (FrameEncoding.JPEG,)
    frames.set_encoders("jpeg,webp,gif")
    assert frames.can_encode == (FrameEncoding.JPEG, FrameEncoding.WEBP)
    assert frames.traces is None  # no "trace" in the config


def test_frames_are_paced_only_at_the_links_lowest_quality() -> None:
    frames = Frames(PageConfig(), Dashboard())
    stream = NodeStream()
    frames.last_sent_ms = 1000.0
    stream.encoding.min_interval_ms = 0.0
    assert not frames.is_paced(stream, 1000.0)
    stream.encoding.min_interval_ms = 200.0
    assert frames.is_paced(stream, 1100.0)
    assert not frames.is_paced(stream, 1200.0)
    assert not frames.is_paced(stream, None)  # no time given: no pacing
