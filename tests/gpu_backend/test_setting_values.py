"""Both services parse boolean settings with one strict parser (issue 19)."""

from __future__ import annotations

import pytest

from gpu_backend.setting_values import parse_boolean
from gpu_backend.settings import NodeSettings
from gpu_backend.settings import SettingsError as NodeSettingsError
from webapp.settings import SettingsError as WebappSettingsError
from webapp.settings import WebappSettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("TRUE", True), (" yes ", True), ("on", True)],
        *[("0", False), ("false", False), ("No", False), ("off", False), ("", False)],
    ],
)
def test_the_accepted_spellings(raw: str, expected: bool) -> None:
    assert parse_boolean(raw) is expected


@pytest.mark.parametrize("raw", ["ture", "2", "enabled", "y"])
def test_anything_else_is_refused_saying_what_was_expected(raw: str) -> None:
    with pytest.raises(ValueError, match=r"expected true or false .* got "):
        parse_boolean(raw)


def test_the_node_refuses_a_typo_naming_the_variable() -> None:
    # Given the typo that used to switch anonymous access silently off on a node
    with pytest.raises(
        NodeSettingsError, match="EDGESIGHT_ALLOW_ANONYMOUS: expected true or false"
    ):
        NodeSettings.from_env({"EDGESIGHT_ALLOW_ANONYMOUS": "ture"})
    assert NodeSettings.from_env({"EDGESIGHT_ALLOW_ANONYMOUS": "yes"}).allow_anonymous is True


def test_the_web_app_refuses_the_same_typo() -> None:
    env_key = WebappSettings.ENV["kiosk_in_view"]
    with pytest.raises(WebappSettingsError, match=f"{env_key}: expected true or false"):
        WebappSettings.from_env({env_key: "ture"})
