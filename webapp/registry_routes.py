"""The registry's HTTP API.

    POST   /api/nodes/register   a node's heartbeat (registers it, or refreshes it); auth
    DELETE /api/nodes/{node_id}  a node leaving; auth
    GET    /api/nodes            the live nodes, for the page to choose from; public

Writes need ``Authorization: Bearer <EDGESIGHT_REGISTRY_SECRET>``. Without a configured
secret, registration is off (403) and only the static nodes are listed.
"""

from __future__ import annotations

import hmac
import json
import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .registry import NODE_ID_PATTERN, HeartbeatError, NodeEntry, NodeRegistry, StoreUnavailable

__all__ = ["MAX_HEARTBEAT_BYTES", "registry_routes"]

log = logging.getLogger(__name__)

MAX_HEARTBEAT_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store"}


class _BodyTooLarge(Exception):
    pass


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


def registry_routes(registry: NodeRegistry, secret: str) -> list[Route]:
    async def register(request: Request) -> Response:
        refused = _unauthorised(request, secret)
        if refused is not None:
            return refused
        try:
            data = json.loads(await _read_body(request))
        except _BodyTooLarge:
            return JSONResponse(
                {"error": f"heartbeat over {MAX_HEARTBEAT_BYTES} bytes"}, status_code=413
            )
        except ClientDisconnect:  # a node stopping mid-heartbeat; nobody reads an answer
            return Response(status_code=400)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return _invalid([{"field": "body", "detail": "expected a JSON object"}])
        try:
            entry = NodeEntry.parse(data)
            is_new = await registry.heartbeat(entry)
        except HeartbeatError as exc:
            return _invalid([{"field": e.field, "detail": e.detail} for e in exc.errors])
        except StoreUnavailable:
            return _unavailable()
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
        try:
            nodes = await registry.nodes()
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
