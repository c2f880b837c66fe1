"""The one bounded body reader of the web app's POST routes (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from webapp.request_body import read_bounded

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


def test_a_declared_length_over_the_ceiling_is_refused_on_the_header_alone() -> None:
    # one byte sent: only the header can have refused it
    response = _client().post("/", content=iter([b"1"]), headers={"Content-Length": "9"})

    assert response.status_code == 413
