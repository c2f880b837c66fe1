"""The Firefox driver forgives exactly one browser-made error, in its two wordings: a node's
WebSocket that never opened (issue 18). Everything else the page reports stays a failure."""

from __future__ import annotations

import pytest
from browsers.sessions import FirefoxSession, is_firefox_socket_not_opened

NOT_OPENED = (
    "pageerror: Firefox can\u2019t establish a connection to the server at ws://127.0.0.1:52085/ws."
)
# The same failure while the document still loads (seen after a service-worker reload in CI).
INTERRUPTED = (
    "pageerror: The connection to ws://127.0.0.1:42045/ws was interrupted while the page was"
    " loading."
)


@pytest.mark.parametrize(
    "text",
    [
        NOT_OPENED,
        NOT_OPENED.replace("ws://", "wss://").replace("127.0.0.1:52085", "gpu0:8443"),
        INTERRUPTED,
        INTERRUPTED.replace("ws://", "wss://").replace("127.0.0.1:42045", "gpu0:8443"),
    ],
)
def test_a_socket_that_never_opened_is_the_browsers_report(text: str) -> None:
    assert is_firefox_socket_not_opened(text)


@pytest.mark.parametrize(
    "text",
    [
        "pageerror: TypeError: client is undefined",
        NOT_OPENED + " Something else went wrong.",  # more than that message
        NOT_OPENED.removeprefix("pageerror: "),  # a console message, not the page error
        NOT_OPENED.replace("/ws.", "/other."),  # not a node's socket
        INTERRUPTED.replace("/ws ", "/other "),  # not a node's socket
        INTERRUPTED.replace("ws://", "https://"),  # a page load, not a socket
        INTERRUPTED + " Something else went wrong.",
        "CSP violation: script-src refused inline code",
    ],
)
def test_every_other_error_is_the_products(text: str) -> None:
    assert not is_firefox_socket_not_opened(text)
    session = FirefoxSession()
    session.errors.append(text)
    assert session.product_errors() == [text]
