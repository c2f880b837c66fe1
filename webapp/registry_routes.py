"""The registry's HTTP API.

    POST   /api/nodes/register   a node's heartbeat (registers it, or refreshes it); auth
    DELETE /api/nodes/{node_id}  a node leaving; auth
    GET    /api/nodes            the best live nodes for a page to choose from (at most
                                 EDGESIGHT_LIST_NODES_MAX; ?site= puts that site first); public

Writes need ``Authorization: Bearer <EDGESIGHT_REGISTRY_SECRET>``. Without a configured
secret, registration is off (403) and only the static nodes are listed.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .registry import (
    MAX_TEXT_CHARS,
    NODE_ID_PATTERN,
    HeartbeatError,
    NodeEntry,
    NodeRegistry,
    RegistryFull,
    StoreUnavailable,
)

__all__ = ["MAX_HEARTBEAT_BYTES", "registry_routes"]

log = logging.getLogger(__name__)

MAX_HEARTBEAT_BYTES = 16 * 1024
MAX_HEARTBEAT_FIELDS = 64  # unknown fields are ignored (newer nodes), but not without end
MAX_JSON_DEPTH = 8  # a heartbeat is flat; room for a newer node's small nested fields
NO_STORE = {"Cache-Control": "no-store"}


class _BodyTooLarge(Exception):
    pass


class _BadBody(ValueError):
    """A body that is no usable JSON object; the message says what was expected."""


def _refuse_constant(name: str) -> object:
    raise _BadBody(f"expected finite numbers, got {name}")


def _depth_over(value: object, limit: int) -> bool:
    """True when ``value`` nests containers deeper than ``limit``; iterative, so that the
    check itself cannot overflow the stack."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if children and depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _decode(body: bytes) -> object:
    """The heartbeat's JSON, or ``_BadBody``: never an exception that becomes a 500."""
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise _BadBody(f"expected JSON nested at most {MAX_JSON_DEPTH} deep") from None
    except UnicodeDecodeError:
        raise _BadBody("expected UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise _BadBody(f"expected a JSON object: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # an integer of more than 4300 digits, or a NaN from above
        raise _BadBody(
            str(exc) if isinstance(exc, _BadBody) else "expected smaller numbers"
        ) from None
    if isinstance(data, dict) and len(data) > MAX_HEARTBEAT_FIELDS:
        raise _BadBody(f"expected at most {MAX_HEARTBEAT_FIELDS} fields, got {len(data)}")
    if _depth_over(data, MAX_JSON_DEPTH):
        raise _BadBody(f"expected JSON nested at most {MAX_JSON_DEPTH} deep")
    return data


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _unauthorised(request: Request, secret: str) -> Response | None:
    """None when the request carries the secret; else the response to send. The log names
    the source and what was wrong, never what was sent."""
    if not secret:
        return JSONResponse(
            {
                "error": "node registration is disabled: this web app has no "
                "EDGESIGHT_REGISTRY_SECRET configured"
            },
            status_code=403,
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), secret.encode()):
        return None
    reason = "no bearer token" if scheme.lower() != "bearer" else "wrong secret"
    log.warning(
        "registry: refused %s %s from %s: %s",
        request.method,
        request.url.path,
        _client_address(request),
        reason,
    )
    return JSONResponse(
        {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_HEARTBEAT_BYTES:
        raise _BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_HEARTBEAT_BYTES:
            raise _BodyTooLarge
    return bytes(body)


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"error": "invalid heartbeat", "errors": errors}, status_code=422)


def _unavailable() -> JSONResponse:
    return JSONResponse({"error": "the node registry is unavailable"}, status_code=503)


class _RefusalLog:
    """One warning when the registry starts refusing nodes, then one summary a minute at
    most: thousands of nodes beyond the limit heartbeat every 2 s each."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self._clock = clock
        self._last_s = -math.inf
        self._since: set[str] = set()

    def refused(self, node_id: str, why: RegistryFull) -> None:
        self._since.add(node_id)
        now_s = self._clock()
        if now_s - self._last_s >= self.every_s:
            count, example = len(self._since), node_id
            log.warning("registry: refused %d new node(s), e.g. %s: %s", count, example, why)
            self._last_s = now_s
            self._since.clear()


def registry_routes(registry: NodeRegistry, secret: str) -> list[Route]:
    refusals = _RefusalLog()

    async def register(request: Request) -> Response:
        refused = _unauthorised(request, secret)
        if refused is not None:
            return refused
        try:
            data = _decode(await _read_body(request))
        except _BodyTooLarge:
            return JSONResponse(
                {"error": f"heartbeat over {MAX_HEARTBEAT_BYTES} bytes"}, status_code=413
            )
        except ClientDisconnect:  # a node stopping mid-heartbeat; nobody reads an answer
            return Response(status_code=400)
        except _BadBody as exc:
            return _invalid([{"field": "body", "detail": str(exc)}])
        try:
            entry = NodeEntry.parse(data)
            is_new = await registry.heartbeat(entry)
        except HeartbeatError as exc:
            return _invalid([{"field": e.field, "detail": e.detail} for e in exc.errors])
        except StoreUnavailable:
            return _unavailable()
        except RegistryFull as exc:
            refusals.refused(entry.node_id, exc)
            return JSONResponse(
                {"error": str(exc)},
                status_code=503,
                headers={"Retry-After": str(math.ceil(registry.expiry_s))},
            )
        return JSONResponse(
            {
                "node_id": entry.node_id,
                "heartbeat_interval_s": registry.heartbeat_interval_s,
                "expires_in_s": registry.expiry_s,
            },
            status_code=201 if is_new else 200,
        )

    async def deregister(request: Request) -> Response:
        refused = _unauthorised(request, secret)
        if refused is not None:
            return refused
        node_id = request.path_params["node_id"]
        if not NODE_ID_PATTERN.fullmatch(node_id):
            return JSONResponse({"error": "no such node"}, status_code=404)
        try:
            removed = await registry.deregister(node_id)
        except StoreUnavailable:
            return _unavailable()
        if not removed:
            return JSONResponse({"error": "no such node"}, status_code=404)
        return Response(status_code=204)

    async def list_nodes(request: Request) -> Response:
        site = request.query_params.get("site")
        if site is not None and (len(site) > MAX_TEXT_CHARS or not site.isprintable()):
            return JSONResponse(
                {"error": f"site: expected at most {MAX_TEXT_CHARS} printable characters"},
                status_code=400,
            )
        try:
            nodes = await registry.listing(site)
        except StoreUnavailable:
            return _unavailable()
        return JSONResponse(
            {"nodes": nodes, "heartbeat_interval_s": registry.heartbeat_interval_s},
            headers=NO_STORE,
        )

    return [
        Route("/api/nodes", list_nodes, methods=["GET"]),
        Route("/api/nodes/register", register, methods=["POST"]),
        Route("/api/nodes/{node_id}", deregister, methods=["DELETE"]),
    ]
