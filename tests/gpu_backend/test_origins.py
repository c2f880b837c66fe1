"""The Origin allow-list a node checks at the WebSocket handshake."""

from __future__ import annotations

import pytest

from gpu_backend.origins import OriginPolicy, default_origins
from gpu_backend.settings import NodeSettings, SettingsError


@pytest.mark.parametrize(
    ("entries", "origin", "allowed"),
    [
        (("https://app.example",), "https://app.example", True),
        (("https://app.example",), "https://app.example:443", True),
        (("https://app.example",), "http://app.example", False),
        (("https://app.example",), "https://evil.example", False),
        (("https://app.example",), "https://app.example.evil.example", False),
        (("http://*:8000",), "http://10.1.2.3:8000", True),
        (("http://*:8000",), "http://10.1.2.3:8001", False),
        (("http://localhost:*",), "http://localhost:5173", True),
        (("http://[::1]:8000",), "http://[::1]:8000", True),
        (("https://app.example",), "null", False),
        (("*",), "null", True),
        ((), "https://app.example", False),
        (("https://app.example",), None, True),  # not a browser: tokens guard it
    ],
)
def test_origins_match_scheme_host_and_port(
    entries: tuple[str, ...], origin: str | None, allowed: bool
) -> None:
    assert OriginPolicy(entries).allows(origin) is allowed


def test_a_node_allows_the_web_app_it_registers_with() -> None:
    policy = OriginPolicy(default_origins("https://app.example:8443"))
    assert policy.allows("https://app.example:8443")
    assert not policy.allows("https://app.example")


def test_a_loopback_registry_stands_for_all_loopback_names() -> None:
    policy = OriginPolicy(default_origins("http://127.0.0.1:8000"))
    assert policy.allows("http://localhost:8000")
    assert policy.allows("http://[::1]:8000")
    assert not policy.allows("http://localhost:9000")


def test_without_registry_only_pages_from_this_machine() -> None:
    policy = OriginPolicy(default_origins(""))
    assert policy.allows("http://127.0.0.1:41234")
    assert policy.allows("https://localhost:8443")
    assert not policy.allows("http://192.168.1.20:8000")


def test_settings_read_origins_from_the_environment() -> None:
    environ = {"EDGESIGHT_ALLOWED_ORIGINS": "https://a.example, http://*:8000"}
    settings = NodeSettings.from_env(environ)
    assert settings.allowed_origins == ("https://a.example", "http://*:8000")
    assert settings.origin_policy.allows("http://10.0.0.9:8000")


def test_a_bad_origin_setting_names_the_key() -> None:
    with pytest.raises(SettingsError, match=r"EDGESIGHT_ALLOWED_ORIGINS.*'app\.example'"):
        NodeSettings.from_env({"EDGESIGHT_ALLOWED_ORIGINS": "app.example"})
