"""Where the page's frames come from, and whether they come, sans-I/O (issue 18).

The page's JavaScript reports what its frame source does (``starting``, ``live``,
``failed`` with the browser's error name, ``ended``); this module turns that into one
``SourceState`` the view words (``view.py``). The badge may say that detection runs only
while frames flow: a denied camera, no camera, a file that cannot be played or an http
page without a camera mean nothing is detected, whatever node is connected.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["PageSource", "SourceState", "source_state"]


class SourceState(enum.Enum):
    STARTING = "starting"  # asking for the camera, or opening a file
    LIVE = "live"  # frames flow
    DENIED = "denied"  # the user (or the browser's settings) refused the camera
    NO_CAMERA = "no camera"
    NEEDS_HTTPS = "needs https"  # an insecure page gets no camera at all
    CAMERA_FAILED = "camera failed"  # in use elsewhere, aborted, no usable size
    BAD_FILE = "bad file"  # a chosen file that cannot be played
    ENDED = "ended"  # the camera stopped (unplugged)


_CAMERA_ERRORS = {
    "NotAllowedError": SourceState.DENIED,
    "NotFoundError": SourceState.NO_CAMERA,
    "OverconstrainedError": SourceState.CAMERA_FAILED,
    "NotReadableError": SourceState.CAMERA_FAILED,
    "AbortError": SourceState.CAMERA_FAILED,
}


def source_state(event: str, kind: str, error_name: str, *, is_secure_context: bool) -> SourceState:
    """The state after the page's source reported ``event`` ("starting" | "live" |
    "failed" | "ended") for a ``kind`` ("camera" | "file" | "url") of source."""
    if event == "starting":
        return SourceState.STARTING
    if event == "live":
        return SourceState.LIVE
    if event == "ended":
        return SourceState.ENDED
    if event != "failed":
        raise ValueError(f"source event: expected starting, live, failed or ended, got {event!r}")
    if kind != "camera":
        return SourceState.BAD_FILE
    if error_name == "SecurityError" or not is_secure_context:
        # An insecure page has no navigator.mediaDevices; a secure one raising
        # SecurityError is blocked by a policy: both need the page served differently.
        return SourceState.NEEDS_HTTPS if not is_secure_context else SourceState.DENIED
    return _CAMERA_ERRORS.get(error_name, SourceState.CAMERA_FAILED)


_UNDECIDED = (SourceState.STARTING, SourceState.LIVE)


@dataclass
class PageSource:
    """The page's frame source as it last reported."""

    is_secure_context: bool = True
    state: SourceState = SourceState.STARTING
    kind: str = "camera"
    # Why the camera is not used while a kiosk loops its configured source instead; None
    # when it is, or when nothing stands in for it.
    camera_failure: SourceState | None = None

    def update(self, event: str, kind: str, error_name: str) -> None:
        if kind not in ("camera", "file", "url"):
            raise ValueError(f"source kind: expected camera, file or url, got {kind!r}")
        if event == "starting" and kind == self.kind and self.state not in _UNDECIDED:
            return  # a retry of a failed camera says nothing new: no flicker every few s
        state = source_state(event, kind, error_name, is_secure_context=self.is_secure_context)
        if kind == "url" and state is SourceState.LIVE and self.kind == "camera":
            self.camera_failure = None if self.state in _UNDECIDED else self.state
        elif kind == "camera" and self.kind == "url" and self.state is SourceState.LIVE:
            if state is not SourceState.LIVE:
                self.camera_failure = state  # still failing: the loop plays on
                return
            self.camera_failure = None
        elif kind != "url":
            self.camera_failure = None
        self.state, self.kind = state, kind
