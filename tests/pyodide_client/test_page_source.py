"""The page's frame source (issue 18): what the browser reports -> one state, and a
retry that says nothing new does not make the badge flicker."""

from __future__ import annotations

import pytest

from pyodide_client.page_source import PageSource, SourceState, source_state


@pytest.mark.parametrize(
    ("error_name", "expected"),
    [
        ("NotAllowedError", SourceState.DENIED),
        ("NotFoundError", SourceState.NO_CAMERA),
        ("NotReadableError", SourceState.CAMERA_FAILED),
        ("OverconstrainedError", SourceState.CAMERA_FAILED),
        ("AbortError", SourceState.CAMERA_FAILED),
        ("SecurityError", SourceState.DENIED),  # a secure page blocked by a policy
        ("SomethingNew", SourceState.CAMERA_FAILED),
    ],
)
def test_camera_errors_on_a_secure_page(error_name: str, expected: SourceState) -> None:
    assert source_state("failed", "camera", error_name, is_secure_context=True) is expected


def test_an_insecure_page_has_no_camera_whatever_the_error() -> None:
    for name in ("SecurityError", "TypeError", ""):
        state = source_state("failed", "camera", name, is_secure_context=False)
        assert state is SourceState.NEEDS_HTTPS


def test_a_file_that_fails_is_a_bad_file() -> None:
    for kind in ("file", "url"):
        assert source_state("failed", kind, "EncodingError", is_secure_context=True) is (
            SourceState.BAD_FILE
        )


def test_a_camera_retry_keeps_the_failure_until_it_works() -> None:
    source = PageSource()
    assert source.state is SourceState.STARTING
    source.update("failed", "camera", "NotFoundError")
    source.update("starting", "camera", "")  # the kiosk retries every 5 s
    assert source.state is SourceState.NO_CAMERA
    source.update("live", "camera", "")
    assert source.state is SourceState.LIVE
    source.update("starting", "file", "")  # a new source starts afresh
    assert source.state is SourceState.STARTING
    source.update("ended", "camera", "")
    assert source.state is SourceState.ENDED


def test_unknown_events_and_kinds_are_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match="expected starting, live, failed or ended, got 'gone'"):
        PageSource().update("gone", "camera", "")
    with pytest.raises(ValueError, match="expected camera, file or url, got 'screen'"):
        PageSource().update("live", "screen", "")


def test_a_kiosk_loop_standing_in_for_the_camera_keeps_the_camera_s_failure() -> None:
    # given a kiosk whose camera is denied, looping its configured source instead
    source = PageSource()
    source.update("failed", "camera", "NotAllowedError")
    source.update("live", "url", "")
    assert source.state is SourceState.LIVE  # frames flow: detection runs on the loop
    assert source.camera_failure is SourceState.DENIED
    # when the camera is retried and fails again, the loop plays on
    source.update("failed", "camera", "NotFoundError")
    assert (source.state, source.kind) == (SourceState.LIVE, "url")
    assert source.camera_failure is SourceState.NO_CAMERA
    # when the camera works, the failure is gone
    source.update("live", "camera", "")
    assert (source.state, source.camera_failure) == (SourceState.LIVE, None)
