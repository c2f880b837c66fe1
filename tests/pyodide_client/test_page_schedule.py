"""pyodide_client.page_schedule: the page's periodic jobs, due by the page's clock."""

from __future__ import annotations

from pyodide_client.page_schedule import Job, PageSchedule


def test_jobs_come_due_in_order_once_and_the_next_deadline_is_the_earliest() -> None:
    schedule = PageSchedule()
    assert schedule.next_due_ms() is None
    schedule.at(Job.RENDER, 500.0)
    schedule.at(Job.NODES, 0.0)
    schedule.at(Job.CAMERA, 2000.0)
    assert schedule.next_due_ms() == 0.0
    assert schedule.take_due(600.0) == [Job.NODES, Job.RENDER]
    assert schedule.take_due(600.0) == []  # each taken once: the caller re-arms
    assert schedule.next_due_ms() == 2000.0
    schedule.cancel(Job.CAMERA)
    assert not schedule.is_pending(Job.CAMERA)
    assert schedule.next_due_ms() is None
