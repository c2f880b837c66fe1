"""The page's periodic jobs and retries, sans-I/O (issue 19: no timer decided in JS).

The page has one timer, re-armed to each reply's ``next_tick_ms``; when it fires, the jobs
due here run: fetch the node list (``registry_poll_ms``), post the user's report
(``report_period_ms``), render the status line and stats (``view_poll_ms``), check whether
in-browser detection should start (``local_start_check_ms``) and retry the camera (one
of ``PageTiming``'s camera retries). Every period is ``page_config.PageTiming``'s.
"""

from __future__ import annotations

import enum

__all__ = ["Job", "PageSchedule"]


class Job(enum.Enum):
    NODES = "nodes"  # GET the registry's node list
    REPORT = "report"  # POST what the user sees
    RENDER = "render"  # redraw the status line, Details and Timings
    LOCAL_CHECK = "local_check"  # no node connection: start in-browser detection
    CAMERA = "camera"  # ask for the camera again


class PageSchedule:
    """When each job is next due (ms, the page's clock); a job not here is not due."""

    def __init__(self) -> None:
        self._due_ms: dict[Job, float] = {}

    def at(self, job: Job, due_ms: float) -> None:
        self._due_ms[job] = due_ms

    def cancel(self, job: Job) -> None:
        self._due_ms.pop(job, None)

    def is_pending(self, job: Job) -> bool:
        return job in self._due_ms

    def take_due(self, now_ms: float) -> list[Job]:
        """The jobs due at ``now_ms``, in ``Job``'s order; each is removed (the caller
        re-arms a periodic one)."""
        due = [job for job in Job if self._due_ms.get(job, now_ms + 1) <= now_ms]
        for job in due:
            del self._due_ms[job]
        return due

    def next_due_ms(self) -> float | None:
        return min(self._due_ms.values(), default=None)
