"""The registry's HTTP API.

    POST   /api/nodes/register   a node's heartbeat (registers it, or refreshes it); auth
    DELETE /api/nodes/{node_id}  a node leaving; auth
    GET    /api/nodes            the best live nodes for a page to choose from (at most
                                 EDGESIGHT_LIST_NODES_MAX; ?site= puts that site first); public

Writes need ``Authorization: Bearer <credential>``: the node's own credential
(``node_identity.py``, issued by ``edgesight enrol NODE_ID``), which lets it write only the
entry of the id it was enrolled as (another id: 403), or, legacy, the shared
``EDGESIGHT_REGISTRY_SECRET``, which lets its holder write any entry. Without a configured
secret, only enrolled nodes can register (a bearer that is no credential: 403).
A node id equal to the cluster name is refused: pages' tokens for that node would be
tokens for the whole cluster (issue 17).
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

from .headers import NO_STORE_HEADERS
from .node_identity import CredentialError, NodeCredentials
from .registry import NodeRegistry
from .registry_store import (
    MAX_TEXT_CHARS,
    NODE_ID_PATTERN,
    HeartbeatError,
    NodeEntry,
    RegistryFull,
    StoreUnavailable,
)
from .request_body import declares_over, read_bounded

__all__ = ["MAX_HEARTBEAT_BYTES", "registry_routes"]

log = logging.getLogger(__name__)

MAX_HEARTBEAT_BYTES = 16 * 1024
MAX_HEARTBEAT_FIELDS = 64  # unknown fields are ignored (newer nodes), but not without end
MAX_JSON_DEPTH = 8  # a heartbeat is flat; room for a newer node's small nested fields


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


ANY_NODE = ""  # the caller holds the legacy shared secret: it may write any entry


def _refused(request: Request, reason: str) -> JSONResponse:
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


def _caller(
    request: Request,
    secret: str,
    credentials: NodeCredentials | None,
    revoked: frozenset[str] = frozenset(),
) -> str | Response:
    """The node id the request's credential was issued for (``ANY_NODE`` for the legacy
    shared secret), or the response to send. The log names the source and what was
    wrong, never what was sent."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    bearer = bearer.strip()
    if scheme.lower() != "bearer":
        return _refused(request, "no bearer token")
    if credentials is not None and credentials.looks_like_one(bearer):
        try:
            node_id = credentials.node_id(bearer)
        except CredentialError as exc:
            return _refused(request, str(exc))
        if node_id in revoked:
            return _refused(request, f"node {node_id}'s credential is revoked")
        return node_id
    if not secret:
        return JSONResponse(
            {
                "error": "this web app registers enrolled nodes only (no legacy "
                "EDGESIGHT_REGISTRY_SECRET is configured): give the node the credential "
                "`edgesight enrol NODE_ID` prints, in EDGESIGHT_NODE_CREDENTIAL"
            },
            status_code=403,
        )
    if hmac.compare_digest(bearer.encode(), secret.encode()):
        return ANY_NODE
    return _refused(request, "wrong secret")


def _not_yours(request: Request, caller: str, node_id: str) -> Response | None:
    """None when ``caller`` may write ``node_id``'s entry; else the 403 to send."""
    if caller in (ANY_NODE, node_id):
        return None
    log.warning(
        "registry: refused %s %s from %s: node %s's credential used for node %.128s",
        request.method,
        request.url.path,
        _client_address(request),
        caller,
        node_id,
    )
    return JSONResponse(
        {"error": f"this credential is node {caller}'s; it cannot write another node's entry"},
        status_code=403,
    )


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


def registry_routes(
    registry: NodeRegistry,
    secret: str,
    credentials: NodeCredentials | None = None,
    cluster_name: str = "",
    revoked: frozenset[str] = frozenset(),
) -> list[Route]:
    """``secret``: the legacy shared secret ("" : none); ``credentials``: how enrolled
    nodes' credentials are checked (None: not at all); ``cluster_name``: the one id no
    node may take; ``revoked``: ids whose credentials are refused (401)."""
    refusals = _RefusalLog()

    async def register(request: Request) -> Response:
        caller = _caller(request, secret, credentials, revoked)
        if isinstance(caller, Response):
            return caller
        try:
            is_over = declares_over(request, MAX_HEARTBEAT_BYTES)
            body = None if is_over else await read_bounded(request, MAX_HEARTBEAT_BYTES)
        except ClientDisconnect:  # a node stopping mid-heartbeat; nobody reads an answer
            return Response(status_code=400)
        if body is None:
            return JSONResponse(
                {"error": f"heartbeat over {MAX_HEARTBEAT_BYTES} bytes"}, status_code=413
            )
        try:
            data = _decode(body)
        except _BadBody as exc:
            return _invalid([{"field": "body", "detail": str(exc)}])
        try:
            entry = NodeEntry.parse(data)
            refused = _not_yours(request, caller, entry.node_id)
            if refused is not None:
                return refused
            if cluster_name and entry.node_id == cluster_name:
                detail = "expected an id other than the cluster name (EDGESIGHT_CLUSTER)"
                return _invalid([{"field": "node_id", "detail": detail}])
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
        caller = _caller(request, secret, credentials, revoked)
        if isinstance(caller, Response):
            return caller
        node_id = request.path_params["node_id"]
        if not NODE_ID_PATTERN.fullmatch(node_id):
            return JSONResponse({"error": "no such node"}, status_code=404)
        refused = _not_yours(request, caller, node_id)
        if refused is not None:
            return refused
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
            headers=NO_STORE_HEADERS,
        )

    return [
        Route("/api/nodes", list_nodes, methods=["GET"]),
        Route("/api/nodes/register", register, methods=["POST"]),
        Route("/api/nodes/{node_id}", deregister, methods=["DELETE"]),
    ]
