"""The one list of loopback hosts and the one loopback test, shared by the node, the web
app and the CLI (issue 19)."""

from __future__ import annotations

import pytest

from gpu_backend.loopback import LOOPBACK_HOSTS, LOOPBACK_NAMES, is_loopback_host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("kiosk.localhost", True),
        ("localhost.example", False),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("node.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_the_bind_hosts_are_loopback_and_named_as_urls_name_them() -> None:
    assert all(is_loopback_host(host) for host in LOOPBACK_HOSTS)
    assert LOOPBACK_NAMES == ("127.0.0.1", "localhost", "[::1]")
