"""The node's app factory: ``create_app(settings)`` builds the Starlette app; the engine is
loaded in the lifespan so that importing this module is cheap and tests can pass a fake."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from .endpoint import inference_endpoint
from .engine import Engine, LoadedModel, OnnxEngine, load_model
from .heartbeat import start_heartbeat
from .metrics import CONTENT_TYPE_LATEST, is_authorised
from .node import Node
from .settings import NodeSettings

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


async def readyz(request: Request) -> JSONResponse:
    node: Node | None = getattr(request.app.state, "node", None)
    if node is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ready", **node.describe()})


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


def create_app(settings: NodeSettings, engine_factory: EngineFactory = onnx_engine) -> Starlette:
    # Reading model.json and checking the file's sha256 is cheap: fail here, with a clear
    # message, rather than inside the server's lifespan.
    model = load_model(settings.model_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = await asyncio.to_thread(engine_factory, settings, model)
        node = Node(settings, model, engine)
        # The first run allocates and plans; pay for it before the first user frame does.
        # The second, timed, gives the registry an inference time before any frame comes.
        blank = np.zeros((1, *node.frame_shape), np.uint8)
        await asyncio.to_thread(engine.infer, blank)
        started_s = time.perf_counter()
        await asyncio.to_thread(engine.infer, blank)
        node.batcher.last_inference_ms = (time.perf_counter() - started_s) * 1000.0
        batch_loop = asyncio.create_task(node.batcher.run(), name="batcher")
        app.state.node = node
        heartbeat = start_heartbeat(node)  # None unless a registry is configured
        log.info(
            "node %s ready: model %s on %s", settings.node_name, model.card.name, engine.provider
        )
        try:
            yield
        finally:
            if heartbeat is not None:
                await heartbeat.stop()  # deregister first, so no new user picks this node
            batch_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batch_loop
            app.state.node = None

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            WebSocketRoute("/ws", inference_endpoint),
        ],
        lifespan=lifespan,
    )
    app.state.metrics_token = settings.metrics_token
    return app
