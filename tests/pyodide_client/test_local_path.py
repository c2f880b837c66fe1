"""pyodide_client.local_path: the local engine as the page config describes it."""

from __future__ import annotations

import pytest

from pyodide_client.local_path import LocalPath, postprocess_settings
from pyodide_client.postprocess import PostprocessSettings

from .test_browser import CARD, OTHER_SHA


def test_postprocess_settings_keep_defaults_and_ignore_unknown_keys() -> None:
    assert postprocess_settings(None) == PostprocessSettings()
    given = postprocess_settings({"score_threshold": 0.8, "colour": "red"})
    assert given.score_threshold == 0.8
    assert given.cross_class_iou_threshold == PostprocessSettings().cross_class_iou_threshold
    assert postprocess_settings({"cross_class_iou_threshold": 0.9}).cross_class_iou_threshold == 0.9
    with pytest.raises(ValueError, match="expected an object"):
        postprocess_settings([1])


def test_a_fixed_thread_count_needs_an_isolated_page_unless_it_is_one() -> None:
    assert LocalPath(CARD, {"local_threads": 4}).start(True, 8) == 4
    assert LocalPath(CARD, {"local_threads": 4}).start(False, 8) == 1
    assert LocalPath(CARD, {"local_threads": 1}).start(False, 8) == 1


def test_another_model_may_not_run() -> None:
    path = LocalPath(CARD, {})
    path.start(False, 4)
    assert path.check_model(CARD.sha256) == ""
    assert path.check_model(OTHER_SHA) != ""
