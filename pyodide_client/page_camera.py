"""The page's frame source, sans-I/O (issue 19): what the camera, a chosen file or a
kiosk's loop did, and when to ask for the camera again.

JavaScript reports each source event (``source``: starting, live, failed or ended, for the
camera, a file or the kiosk's URL, with the browser error's name and what plays now);
``SourceEdge`` tells the page core (``page_source.py`` words it) and decides what follows:
a camera that failed is asked for again after ``PageTiming``'s retry (a kiosk retries
even a refusal, and loops its configured source meanwhile), a chosen file stops the
retries until the user wants the camera again, and a new source clears what was drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .page_core import PageCore
from .page_json import JsonEvent
from .page_schedule import Job, PageSchedule

__all__ = ["SourceEdge"]

_REFUSALS = ("NotAllowedError", "SecurityError")  # a camera the user (or a policy) refused

Command = dict[str, Any]


class SourceEdge:
    def __init__(
        self, core: PageCore, schedule: PageSchedule, render: Callable[[float], Command]
    ) -> None:
        self.core = core
        self.schedule = schedule
        self._render = render  # the render command, after what the page shows changed
        self.wants_camera = True  # until the user picks a file

    def camera_due(self) -> list[Command]:
        """The camera's retry came due."""
        return [{"do": "camera"}] if self.wants_camera else []

    def report(self, event: JsonEvent) -> list[Command]:
        """What the source did: ``state`` starting | live | failed | ended, ``kind``
        camera | file | url, ``error`` the browser error's name, ``playing`` what the
        source plays now (none, camera, video, image)."""
        now, timing, config = event.now_ms, self.core.config.timing, self.core.config
        state, kind = event.text("state"), event.text("kind")
        error, playing = event.text("error", ""), event.text("playing", "none")
        out: list[Command] = []
        if kind == "camera" and not self.wants_camera:
            return []  # a file was chosen meanwhile
        if kind == "camera" and state == "live":
            self.schedule.cancel(Job.CAMERA)
            out = [*self._source_changed(now), {"do": "camera_button", "is_shown": False}]
        elif kind == "camera" and state == "failed":
            if config.kiosk:  # nobody is there to click: retry even a refusal
                if config.kiosk_source_url and playing == "none":
                    out.append({"do": "play", "url": config.kiosk_source_url})
                self.schedule.at(Job.CAMERA, now + timing.kiosk_camera_retry_ms)
            elif error not in _REFUSALS:
                self.schedule.at(Job.CAMERA, now + timing.camera_retry_ms)
        elif kind == "camera" and state == "ended":
            self.schedule.at(Job.CAMERA, now + timing.camera_ended_retry_ms)
        elif kind == "file":
            if state == "starting":
                self.wants_camera = False
                self.schedule.cancel(Job.CAMERA)
            else:  # drop boxes of frames grabbed while the file was loading
                out.append({"do": "camera_button", "is_shown": True})
            out = [*self._source_changed(now), *out]
        elif kind == "url":
            if state != "live":
                return [
                    {
                        "do": "warn",
                        "type": "source",
                        "text": "kiosk: the configured source cannot be played",
                    }
                ]
            out = self._source_changed(now)
        self._source_reported(state, kind, error, playing)
        return [*out, self._render(now)]

    def _source_reported(self, state: str, kind: str, error: str, playing: str) -> None:
        if kind == "camera" and state in ("starting", "failed") and playing != "none":
            return  # a kiosk's loop keeps playing: the badge stays on it
        self.core.source_update(state, kind, error)

    def _source_changed(self, now_ms: float) -> list[Command]:
        """Results of frames of the old source, still on their way, are never drawn."""
        self.core.source_changed(now_ms)
        return [{"do": "clear_overlay"}]

    def wanted(self) -> list[Command]:
        """The user asked for the camera again."""
        self.wants_camera = True
        self.schedule.cancel(Job.CAMERA)
        return [{"do": "camera"}]
