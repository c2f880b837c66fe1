"""What a page's origin allows: the "needs https" message on an insecure context and no
ws:// nodes from an https page, decided in Python from what the page reports."""

from __future__ import annotations

import pytest

from pyodide_client.page_origin import README_SECTION, PageOrigin

HTTPS = PageOrigin("https:", "kiosk.lan", "8443", is_secure_context=True)
LAN_HTTP = PageOrigin("http:", "kiosk.lan", "8000", is_secure_context=False)
LOCAL_HTTP = PageOrigin("http:", "127.0.0.1", "8000", is_secure_context=True)


def test_an_insecure_page_says_it_needs_https_and_what_to_do() -> None:
    problem = LAN_HTTP.insecure_context_problem()
    assert problem is not None
    assert problem.startswith("This page needs https.")
    assert "http://kiosk.lan:8000" in problem
    assert "https://kiosk.lan:8000/" in problem
    assert "http://localhost:8000/" in problem
    assert "--tls-cert" in problem
    assert README_SECTION in problem
    assert "no camera" in problem


@pytest.mark.parametrize("origin", [HTTPS, LOCAL_HTTP])
def test_a_secure_context_has_no_problem(origin: PageOrigin) -> None:
    assert origin.insecure_context_problem() is None


def test_an_ipv6_host_is_shown_in_brackets() -> None:
    origin = PageOrigin("http:", "fd00::7", "8000", is_secure_context=False)
    problem = origin.insecure_context_problem()
    assert problem is not None
    assert "https://[fd00::7]:8000/" in problem


def test_an_https_page_refuses_ws_nodes_only() -> None:
    problem = HTTPS.node_url_problem("ws://gpu1.lan:8001/ws")
    assert problem is not None
    assert "ws://gpu1.lan:8001/ws" in problem
    assert "only wss://" in problem
    assert HTTPS.node_url_problem("wss://gpu1.lan:8001/ws") is None
    assert HTTPS.node_url_problem("wss://{hostname}:8001/ws") is None


@pytest.mark.parametrize("origin", [LAN_HTTP, LOCAL_HTTP])
def test_an_http_page_may_use_both(origin: PageOrigin) -> None:
    assert origin.node_url_problem("ws://gpu1.lan:8001/ws") is None
    assert origin.node_url_problem("wss://gpu1.lan:8001/ws") is None


@pytest.mark.parametrize("data", [None, "https:", {"protocol": 5, "is_secure_context": "no"}])
def test_a_missing_or_odd_report_restricts_nothing(data: object) -> None:
    origin = PageOrigin.from_mapping(data)
    assert origin.insecure_context_problem() is None
    assert origin.node_url_problem("ws://a:1/ws") is None


def test_the_report_from_the_page() -> None:
    origin = PageOrigin.from_mapping(
        {"protocol": "https:", "hostname": "k", "port": "", "is_secure_context": True}
    )
    assert origin == PageOrigin("https:", "k", "", is_secure_context=True)


def test_a_listed_node_url_is_filled_with_the_pages_host() -> None:
    named = PageOrigin.from_mapping({"protocol": "https:", "hostname": "edge.test", "port": ""})
    assert named.fill_host("wss://{hostname}:8001/ws") == "wss://edge.test:8001/ws"
    ipv6 = PageOrigin.from_mapping({"protocol": "https:", "hostname": "::1", "port": ""})
    assert ipv6.fill_host("https://{hostname}:8001/wt") == "https://[::1]:8001/wt"
    # a browser's location.hostname brackets an IPv6 address itself: not twice
    browser = PageOrigin.from_mapping({"protocol": "http:", "hostname": "[::1]", "port": "8000"})
    assert browser.fill_host("ws://{hostname}:8001/ws") == "ws://[::1]:8001/ws"
    assert browser.origin == "http://[::1]:8000"
    assert named.fill_host("wss://gpu0.lan:8001/ws") == "wss://gpu0.lan:8001/ws"
