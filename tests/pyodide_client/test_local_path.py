"""pyodide_client.local_path: the local engine as the page config describes it."""

from __future__ import annotations

from pyodide_client.local_path import LocalPath
from pyodide_client.page_config import PageConfig

from .test_browser import CARD, OTHER_SHA


def test_a_fixed_thread_count_needs_an_isolated_page_unless_it_is_one() -> None:
    assert LocalPath(CARD, PageConfig(local_threads=4)).start(True, 8) == 4
    assert LocalPath(CARD, PageConfig(local_threads=4)).start(False, 8) == 1
    assert LocalPath(CARD, PageConfig(local_threads=1)).start(False, 8) == 1


def test_another_model_may_not_run() -> None:
    path = LocalPath(CARD, PageConfig())
    path.start(False, 4)
    assert path.check_model(CARD.sha256) == ""
    assert path.check_model(OTHER_SHA) != ""
