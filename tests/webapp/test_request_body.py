"""The one bounded body reader of the web app's POST routes (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from webapp.request_body import declares_over, read_bounded

MAX_BYTES = 8


async def _echo(request: Request) -> PlainTextResponse:
    body = await read_bounded(request, MAX_BYTES)
    if body is None:
        return PlainTextResponse("too large", status_code=413)
    return PlainTextResponse(body.decode())


def _client() -> TestClient:
    return TestClient(Starlette(routes=[Route("/", _echo, methods=["POST"])]))


def test_a_body_up_to_the_ceiling_is_read_whole() -> None:
    assert _client().post("/", content=b"12345678").text == "12345678"


def test_a_body_over_the_ceiling_is_refused() -> None:
    assert _client().post("/", content=b"123456789").status_code == 413


def test_a_streamed_body_over_the_ceiling_is_refused_without_a_length() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"12345"
        yield b"67890"

    assert _client().post("/", content=chunks()).status_code == 413


def test_read_bounded_goes_by_the_bytes_that_come_not_the_header() -> None:
    # one byte sent under a header that says nine
    response = _client().post("/", content=iter([b"1"]), headers={"Content-Length": "9"})

    assert response.status_code == 200
    assert response.text == "1"


def test_declares_over_reads_the_header_alone() -> None:
    def request(headers: list[tuple[bytes, bytes]]) -> Request:
        return Request({"type": "http", "method": "POST", "headers": headers})

    assert declares_over(request([(b"content-length", b"9")]), MAX_BYTES)
    assert not declares_over(request([(b"content-length", b"8")]), MAX_BYTES)
    assert not declares_over(request([]), MAX_BYTES)
    assert not declares_over(request([(b"content-length", b"-1")]), MAX_BYTES)
