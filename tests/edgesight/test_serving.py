"""edgesight.serving: what every server's uvicorn is configured with."""

from __future__ import annotations

import logging

from edgesight.serving import RedactSecrets, make_server


def _access_record(path: str) -> logging.LogRecord:
    # the shape of uvicorn's access-log records: (client, method, path, version, status)
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 303),
        None,
    )


def test_secrets_in_query_strings_are_redacted_from_the_access_log() -> None:
    redact = RedactSecrets()
    cases = {
        "/kiosk?key=abc-DEF_123": "/kiosk?key=[redacted]",
        "/kiosk?camera=2&KEY=abc&x=1": "/kiosk?camera=2&KEY=[redacted]&x=1",
        "/api/x?token=eyJ.a.b": "/api/x?token=[redacted]",
        "/kiosk?monkey=1": "/kiosk?monkey=1",  # a name that only ends in "key"
        "/static/key=1.js": "/static/key=1.js",  # not a query parameter
    }
    for given, expected in cases.items():
        record = _access_record(given)
        assert redact.filter(record)
        assert record.getMessage() == f'127.0.0.1:5000 - "GET {expected} HTTP/1.1" 303'


def test_uvicorn_believes_no_forwarded_headers_and_the_filter_is_installed_once() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    for _ in range(2):
        server = make_server(app, "127.0.0.1", 0, 1024)
    assert server.config.proxy_headers is False
    access = logging.getLogger("uvicorn.access")
    assert sum(isinstance(f, RedactSecrets) for f in access.filters) == 1
