"""The web app factory: ``create_app(settings)`` assembles the parts, each built by its own
module: the registry (``registry``), sign-in (``security``), what browsers load (``site``),
metrics and traces; then the routes, the middleware and the lifespan that opens and closes
the stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from .attempts import KioskKeyLimiter, LoginLimiter
from .forwarded import ForwardedClient, parse_networks
from .headers import SecurityHeaders
from .metrics import MetricsMiddleware, WebappMetrics, metrics_route
from .node_identity import NodeCredentials
from .node_tokens import NodeTokens
from .registry import NodeRegistry
from .registry_routes import registry_routes
from .registry_store import RegistryStore
from .report import report_route
from .security import Security
from .sessions import SessionStore
from .settings import WebappSettings
from .signin_routes import SignInGate, signin_routes
from .site import TEMPLATES_DIR, Site, site_routes
from .tracing import PageTracer, trace_route

__all__ = ["create_app"]

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_app(
    settings: WebappSettings,
    registry_store: RegistryStore | None = None,
    session_store: SessionStore | None = None,
) -> Starlette:
    """``registry_store``: where node heartbeats go, ``session_store``: the live sessions
    (defaults: from the settings, Redis when EDGESIGHT_REDIS_URL is set); the app's lifespan
    opens and closes both."""
    registry = NodeRegistry.from_settings(settings, registry_store)
    metrics = WebappMetrics(registry)
    security = Security.from_settings(settings, session_store)
    site = Site.build(settings)
    tracer = PageTracer.for_endpoint(settings.otlp_endpoint) if settings.otlp_endpoint else None
    return Starlette(
        routes=_routes(settings, registry, metrics, security, site, tracer),
        middleware=_middleware(settings, metrics, security),
        lifespan=_lifespan(registry, security.sessions, tracer),
    )


def _templates() -> Jinja2Templates:
    return Jinja2Templates(
        env=Environment(
            loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"])
        )
    )


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _routes(
    settings: WebappSettings,
    registry: NodeRegistry,
    metrics: WebappMetrics,
    security: Security,
    site: Site,
    tracer: PageTracer | None,
) -> list[BaseRoute]:
    templates = _templates()
    return [
        *([trace_route(tracer)] if tracer is not None else []),
        Route("/healthz", _healthz),
        metrics_route(metrics, settings.metrics_token),
        *registry_routes(
            registry,
            settings.registry_secret,
            NodeCredentials(security.signer.enrolment_key()),  # enrolled nodes (issue 17)
            settings.cluster_name,
            frozenset(settings.revoked_nodes),
        ),
        report_route(metrics),
        *signin_routes(
            security.door,
            security.signer,
            LoginLimiter(),
            templates,
            int(settings.session_lifetime_s),
            # a token per listed node (issue 17)
            NodeTokens(registry, security.signer, frozenset(settings.revoked_nodes)),
        ),
        # last: its mounts (static files, runtimes) take whole path prefixes
        *site_routes(site, settings, security.door, templates),
    ]


def _middleware(
    settings: WebappSettings, metrics: WebappMetrics, security: Security
) -> list[Middleware]:
    return [
        # first: every later layer sees the client as the trusted proxies vouch for it
        Middleware(ForwardedClient, trusted_proxies=parse_networks(settings.trusted_proxies)),
        Middleware(SecurityHeaders),
        Middleware(MetricsMiddleware, metrics),
        Middleware(
            SignInGate,
            door=security.door,
            session_max_age_s=int(settings.session_lifetime_s),
            kiosk_limiter=KioskKeyLimiter(),
        ),
    ]


def _lifespan(
    registry: NodeRegistry, sessions: SessionStore, tracer: PageTracer | None
) -> Lifespan:
    """The stores are opened with the app and closed with it; the tracer sends what it
    still holds."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry.lifespan(app):
            await sessions.open()
            try:
                yield
            finally:
                await sessions.close()
                if tracer is not None:
                    await asyncio.to_thread(tracer.shutdown)  # sends the spans still queued

    return lifespan
