"""The node's app factory: ``create_app(settings)`` builds the Starlette app; the engine is
loaded in the lifespan so that importing this module is cheap and tests can pass a fake."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from .access import AccessDenied, Authenticator
from .endpoint import inference_endpoint
from .engine import Engine, LoadedModel, OnnxEngine, load_model
from .heartbeat import node_id, registry_ssl_context, start_heartbeat
from .loopback import LOOPBACK_HOSTS, is_loopback_host
from .metrics import CONTENT_TYPE_LATEST, is_authorised
from .node import Node
from .settings import NodeSettings
from .tokens import TokenKeyError, fetch_public_key, node_authenticator, read_public_key
from .wt_server import start_webtransport

__all__ = ["EngineFactory", "create_app"]

log = logging.getLogger(__name__)

EngineFactory = Callable[[NodeSettings, LoadedModel], Engine]


def onnx_engine(settings: NodeSettings, model: LoadedModel) -> Engine:
    return OnnxEngine(
        model.path,
        provider=settings.provider,
        device_id=settings.device_id,
        intra_op_threads=settings.intra_op_threads,
    )


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _may_see_private(request: Request, node: Node) -> bool:
    """Requests from this machine, or with a stream token the node accepts."""
    if request.client is not None and is_loopback_host(request.client.host):
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    try:
        return not node.authenticator.authenticate(token, None).is_anonymous
    except AccessDenied:
        return False


async def readyz(request: Request) -> JSONResponse:
    """Ready or not, and the node's load; its host name only for _may_see_private."""
    node: Node | None = getattr(request.app.state, "node", None)
    if node is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    private = _may_see_private(request, node)
    return JSONResponse({"status": "ready", **node.describe(include_private=private)})


async def metrics(request: Request) -> Response:
    """Prometheus text format; with EDGESIGHT_METRICS_TOKEN set, only for that bearer."""
    node: Node | None = getattr(request.app.state, "node", None)
    token: str = request.app.state.metrics_token
    if not is_authorised(request.headers.get("authorization", ""), token):
        return Response(
            "metrics need the bearer token\n",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if node is None:
        return Response("node starting\n", status_code=503)
    return Response(node.metrics.render(), media_type=CONTENT_TYPE_LATEST)


KEY_FETCH_DEADLINE_S = 30.0  # the web app may start at the same time as its nodes


async def _fetch_key(settings: NodeSettings) -> Ed25519PublicKey | None:
    """The web app's public key from the registry. A node that needs it keeps trying for a
    while (its web app may be starting too), then fails; one that allows anonymous use
    tries once and, failing, checks no tokens."""
    deadline_s = time.monotonic() + KEY_FETCH_DEADLINE_S
    wait_s = 0.25
    while True:
        try:
            return await asyncio.to_thread(
                fetch_public_key, settings.registry_url, registry_ssl_context(settings)
            )
        except TokenKeyError as exc:
            if settings.is_anonymous_allowed:
                log.warning("%s; this node lets every client in without a token", exc)
                return None
            if time.monotonic() + wait_s > deadline_s:
                raise
            log.info("%s; retrying in %.1f s", exc, wait_s)
        await asyncio.sleep(wait_s)
        wait_s = min(2 * wait_s, 2.0)


async def _authenticator(
    settings: NodeSettings, public_key: Ed25519PublicKey | None
) -> Authenticator:
    """Who may stream here (access.py): tokens checked with the web app's public key; a
    client without one let in only where anonymous use is allowed."""
    source = "given by the caller"
    if public_key is None and settings.token_public_key:
        public_key = read_public_key(Path(settings.token_public_key))
        source = settings.token_public_key
    elif public_key is None and settings.registry_url:
        public_key = await _fetch_key(settings)
        source = settings.registry_url
    # An enrolled node accepts tokens for itself only (issue 17): a cluster-wide token
    # collected by any node would otherwise be good here too. Others (static, legacy
    # shared-secret nodes) accept the cluster's tokens as well.
    if settings.node_credential:
        audiences: tuple[str, ...] = (node_id(settings),)
    else:
        audiences = (settings.cluster_name, node_id(settings))
    authenticator = node_authenticator(
        public_key, audiences, allow_anonymous=settings.is_anonymous_allowed
    )
    if public_key is not None:
        log.info(
            "stream tokens for %s checked with the web app's key (%s)",
            " or ".join(audiences),
            source,
        )
    if settings.is_anonymous_allowed and settings.host not in LOOPBACK_HOSTS:
        log.warning(
            "this node listens on %s and lets clients without a token stream "
            "(--allow-anonymous / EDGESIGHT_ALLOW_ANONYMOUS)",
            settings.host,
        )
    return authenticator


def create_app(
    settings: NodeSettings,
    engine_factory: EngineFactory = onnx_engine,
    public_key: Ed25519PublicKey | None = None,
) -> Starlette:
    """``public_key``: the web app's token key, when the caller has it (``edgesight serve``);
    else from EDGESIGHT_TOKEN_PUBLIC_KEY or the registry."""
    # Reading model.json and checking the file's sha256 is cheap: fail here, with a clear
    # message, rather than inside the server's lifespan.
    model = load_model(settings.model_path)
    if public_key is None and settings.token_public_key:
        public_key = read_public_key(Path(settings.token_public_key))  # fail early, too
    _check_access(settings, public_key)
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            WebSocketRoute("/ws", inference_endpoint),
        ],
        lifespan=_lifespan(settings, model, engine_factory, public_key),
    )
    app.state.metrics_token = settings.metrics_token
    return app


def _check_access(settings: NodeSettings, public_key: Ed25519PublicKey | None) -> None:
    """Settings that would let no one in fail at start-up; pages from nowhere are said."""
    if public_key is None and not (settings.registry_url or settings.is_anonymous_allowed):
        node_authenticator(None, (), allow_anonymous=False)  # raises, naming the settings
    if not settings.is_loopback and not settings.allowed_origins and not settings.registry_url:
        log.warning(
            "node %s accepts pages from this machine only; set EDGESIGHT_ALLOWED_ORIGINS "
            "to the web app's origin (e.g. https://app.example.com)",
            settings.node_name,
        )


Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]


def _lifespan(
    settings: NodeSettings,
    model: LoadedModel,
    engine_factory: EngineFactory,
    public_key: Ed25519PublicKey | None,
) -> Lifespan:
    """The node's life: authenticator, engine (warmed up), batch loop, WebTransport and
    heartbeat start with the app; on the way out the heartbeat deregisters first, then the
    rest stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.authenticator = await _authenticator(settings, public_key)
        engine = await asyncio.to_thread(engine_factory, settings, model)
        node = Node(settings, model, engine, app.state.authenticator)
        await _warm_up(node)
        batch_loop = asyncio.create_task(node.batcher.run(), name="batcher")
        app.state.node = node
        node.webtransport = await start_webtransport(node)  # None: off, or no UDP port
        heartbeat = start_heartbeat(node)  # None unless a registry is configured
        log.info(
            "node %s ready: model %s on %s", settings.node_name, model.card.name, engine.provider
        )
        try:
            yield
        finally:
            if heartbeat is not None:
                await heartbeat.stop()  # deregister first, so no new user picks this node
            if node.webtransport is not None:
                await node.webtransport.stop()
            batch_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batch_loop
            node.decode_pool.shutdown(wait=False, cancel_futures=True)
            if node.tracer is not None:
                await asyncio.to_thread(node.tracer.shutdown)  # sends the spans still queued
            app.state.node = None

    return lifespan


async def _warm_up(node: Node) -> None:
    """The first run allocates and plans; pay for it before the first user frame does.
    The second, timed, gives the registry an inference time before any frame comes."""
    blank = np.zeros((1, *node.frame_shape), np.uint8)
    await asyncio.to_thread(node.engine.infer, blank)
    started_s = time.perf_counter()
    await asyncio.to_thread(node.engine.infer, blank)
    node.batcher.last_inference_ms = (time.perf_counter() - started_s) * 1000.0
