"""The web app factory: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates

from pyodide_client.model_card import ModelCard
from pyodide_client.page_config import PageTiming

from . import WebappError
from .assets import (
    ORT_FILES,
    ORT_WASM_FILES,
    PYODIDE_FILES,
    BrowserRuntimes,
    RevalidatedFiles,
    VendorFiles,
    client_package_zip,
)
from .attempts import KioskKeyLimiter, LoginLimiter
from .forwarded import ForwardedClient, parse_networks
from .headers import NO_CACHE, SecurityHeaders
from .metrics import CONTENT_TYPE_LATEST, MetricsMiddleware, WebappMetrics, is_authorised
from .model_files import LocalModel, choose_local_model
from .node_identity import NodeCredentials
from .node_tokens import NodeTokens
from .offline import OfflineManifest, service_worker_script
from .registry import NodeRegistry, RegistryStore
from .registry_routes import registry_routes
from .report import report_route
from .sessions import MemorySessions, RedisSessions, SessionStore
from .settings import WebappSettings
from .signin import AuthMode, Door, SessionCodec
from .signin_routes import SignInGate, signin_routes
from .tokens import TokenSigner
from .tracing import PageTracer, trace_route
from .users import Users

__all__ = ["create_app"]

log = logging.getLogger(__name__)
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
KIOSK_SOURCE_URL = "/kiosk/source"  # EDGESIGHT_KIOSK_SOURCE, served to the kiosk page


def _npm_version(package_dir: Path) -> str:
    manifest = package_dir / "package.json"
    if not manifest.is_file():
        return "unversioned"
    return str(json.loads(manifest.read_text(encoding="utf-8")).get("version", "unversioned"))


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _warn_if_model_differs(model_path: Path, card: ModelCard) -> None:
    """Pages refuse a model whose sha256 is not the card's; say so here too, once."""
    if not model_path.is_file():
        raise WebappError(f"model file not found: {model_path}")
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    if digest != card.sha256:
        log.warning(
            "%s has sha256 %s but model.json says %s: browsers will refuse to run it locally",
            model_path,
            digest,
            card.sha256,
        )


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _warn_if_open(settings: WebappSettings) -> None:
    """Said loudly, once: a page anyone on the network can open, with tokens for all."""
    if settings.is_signin_required or settings.host in LOOPBACK_HOSTS:
        return
    log.warning(
        "\n"
        "  ************************************************************************\n"
        "  WARNING: sign-in is OFF (EDGESIGHT_AUTH=none) and the web app listens on\n"
        "  %s: anyone who can reach it gets the page and stream tokens for every\n"
        "  node. Set EDGESIGHT_AUTH=users (with EDGESIGHT_USERS_FILE), kiosk-key or\n"
        "  proxy-header; see README, 'Sign-in and stream tokens'.\n"
        "  ************************************************************************",
        settings.host,
    )


def _session_store(settings: WebappSettings) -> SessionStore:
    if settings.redis_url:
        return RedisSessions.from_url(settings.redis_url)
    return MemorySessions()


def _door(settings: WebappSettings, signer: TokenSigner, store: SessionStore) -> Door:
    users = Users.load(settings.users_file) if settings.users_file is not None else Users()
    modes = [AuthMode(mode) for mode in settings.auth_modes]
    if AuthMode.USERS in modes and not users.users:
        log.warning(
            "EDGESIGHT_AUTH=users but %s lists no users: nobody can sign in; add one with "
            "`edgesight users add NAME`",
            settings.users_file,
        )
    return Door(
        modes,
        users,
        SessionCodec(signer.session_secret(), settings.session_lifetime_s),
        store,
        proxy_header=settings.proxy_user_header,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )


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
    signer = TokenSigner.from_file(
        settings.token_key_path, settings.cluster_name, settings.token_lifetime_s
    )
    sessions = session_store if session_store is not None else _session_store(settings)
    door = _door(settings, signer, sessions)
    _warn_if_open(settings)
    runtimes = BrowserRuntimes.locate(settings.vendor_dir)
    card_path = settings.model_dir / "model.json"
    if not card_path.is_file():
        raise WebappError(f"model metadata not found: {card_path}")
    card_text = card_path.read_text(encoding="utf-8")
    card = ModelCard.from_json(card_text)
    _warn_if_model_differs(settings.model_dir / card.file, card)
    local_model = choose_local_model(settings.model_dir, card)
    log.info("in-browser fallback runs %s (%s)", local_model.card.file, local_model.reason)
    client_zip = client_package_zip()
    pyodide_url = f"/vendor/pyodide-{_npm_version(runtimes.pyodide_dir)}/"
    ort_url = f"/vendor/onnxruntime-web-{_npm_version(runtimes.ort_dir.parent)}/"
    page_config = {
        "node_urls": list(settings.node_urls),
        "max_in_flight": settings.max_in_flight,
        "local_threads": settings.local_threads,
        "browser_backend": settings.browser_backend,  # auto | webgpu | wasm (issue 20)
        "local_load_deadline_ms": settings.local_load_deadline_s * 1000.0,
        "frame_encoding": settings.frame_encoding,
        "target_fps": settings.target_fps,
        "postprocess": {
            "score_threshold": settings.score_threshold,
            "iou_threshold": settings.iou_threshold,
            "cross_class_iou_threshold": settings.cross_class_iou_threshold,
        },
        "pyodide_url": pyodide_url,
        "ort_url": ort_url,
        "client_zip_url": "/py/pyodide_client.zip",
        "registry_url": "/api/nodes",
        "report_url": "/api/report",
        # Traces (issue 12): absent unless a collector is configured, so pages sample none.
        "trace": {"url": "/api/trace", "sample_rate": settings.trace_sample_rate}
        if settings.otlp_endpoint
        else None,
        "token_url": "/api/token",
        "model": {
            "name": card.name,
            "sha256": card.sha256,
            "url": f"/models/{card.file}",
            "card_url": "/models/model.json",
            # The file the in-browser fallback fetches, checks and runs, with its card's
            # input/output names and size (the model's INT8 variant when it is worth it).
            "local": local_model.page_config(),
            # WebGPU runs the float model: the INT8 QDQ variant measured no faster there
            # (docs/benchmarks.md, section r); Wasm runs "local" (the variant when offered).
            "local_webgpu": LocalModel(
                card, settings.model_dir / card.file, None, ""
            ).page_config(),
        },
        "kiosk": False,
        # the page's periods and retries, which app.js's timers follow (issue 19)
        "timing": PageTiming().to_json(),
    }
    # "<" escaped so that no configured value can close the <script> element it sits in
    config_json = json.dumps(page_config).replace("<", "\\u003c")
    kiosk_config = {**page_config, "kiosk": True, "kiosk_in_view": settings.kiosk_in_view}
    if settings.kiosk_source is not None:
        kiosk_config["kiosk_source_url"] = KIOSK_SOURCE_URL
    kiosk_json = json.dumps(kiosk_config).replace("<", "\\u003c")
    template_bytes = (TEMPLATES_DIR / "index.html").read_bytes()
    offline = OfflineManifest.build(
        settings.static_dir,
        pages={
            "/": template_bytes + config_json.encode(),
            "/kiosk": template_bytes + kiosk_json.encode(),
        },
        documents={
            "/models/model.json": card_text.encode(),
            "/py/pyodide_client.zip": client_zip,
            # a kiosk must loop its configured source offline too
            **(
                {KIOSK_SOURCE_URL: _file_digest(settings.kiosk_source)}
                if settings.kiosk_source is not None
                else {}
            ),
        },
        vendor_urls=tuple(
            [pyodide_url + name for name in PYODIDE_FILES]
            + [ort_url + name for name in ORT_WASM_FILES]
        ),
        model_url=f"/models/{local_model.card.file}",
        model_sha256=local_model.card.sha256,
    )
    sw_script = service_worker_script(settings.static_dir, offline)
    templates = Jinja2Templates(
        env=Environment(
            loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"])
        )
    )

    async def index(request: Request) -> HTMLResponse:
        # The gate has checked the session; a person signed in with a password gets the
        # sign-out control (a proxy's user signs out at the proxy, a kiosk never does).
        session = await door.session(request) if door.has(AuthMode.USERS) else None
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "config_json": config_json,
                "model": card,
                "signed_in_as": session.identity if session and session.kind == "user" else "",
            },
            headers={"Cache-Control": NO_CACHE},
        )

    async def kiosk(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "index.html",
            {"config_json": kiosk_json, "model": card, "signed_in_as": ""},
            headers={"Cache-Control": NO_CACHE},
        )

    async def service_worker(request: Request) -> Response:
        return Response(
            sw_script, media_type="text/javascript", headers={"Cache-Control": NO_CACHE}
        )

    async def client_package(request: Request) -> Response:
        return Response(
            client_zip, media_type="application/zip", headers={"Cache-Control": NO_CACHE}
        )

    async def model_card(request: Request) -> Response:
        return Response(
            card_text, media_type="application/json", headers={"Cache-Control": NO_CACHE}
        )

    async def model_file(request: Request) -> FileResponse:
        return FileResponse(
            settings.model_dir / card.file,
            media_type="application/octet-stream",
            headers={"Cache-Control": NO_CACHE},
        )

    async def kiosk_source(request: Request) -> Response:
        if settings.kiosk_source is None:
            return Response("no kiosk source is configured\n", status_code=404)
        return FileResponse(settings.kiosk_source, headers={"Cache-Control": "no-cache"})

    async def local_model_file(request: Request) -> FileResponse:
        return FileResponse(
            local_model.path,
            media_type="application/octet-stream",
            headers={"Cache-Control": NO_CACHE},
        )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def metrics_page(request: Request) -> Response:
        if not is_authorised(request.headers.get("authorization", ""), settings.metrics_token):
            return Response(
                "metrics need the bearer token\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await metrics.refresh()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    tracer = PageTracer.for_endpoint(settings.otlp_endpoint) if settings.otlp_endpoint else None

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

    return Starlette(
        routes=[
            *([trace_route(tracer)] if tracer is not None else []),
            Route("/", index),
            Route("/kiosk", kiosk),
            Route(KIOSK_SOURCE_URL, kiosk_source),
            Route("/sw.js", service_worker),
            Route("/healthz", healthz),
            Route("/metrics", metrics_page),
            *registry_routes(
                registry,
                settings.registry_secret,
                NodeCredentials(signer.enrolment_key()),  # enrolled nodes (issue 17)
                settings.cluster_name,
                frozenset(settings.revoked_nodes),
            ),
            report_route(metrics),
            *signin_routes(
                door,
                signer,
                LoginLimiter(),
                templates,
                int(settings.session_lifetime_s),
                # a token per listed node (issue 17)
                NodeTokens(registry, signer, frozenset(settings.revoked_nodes)),
            ),
            Route("/py/pyodide_client.zip", client_package),
            Route("/models/model.json", model_card),
            Route(f"/models/{card.file}", model_file),
            *(
                [Route(f"/models/{local_model.card.file}", local_model_file)]
                if local_model.variant_of
                else []
            ),
            Mount("/static", RevalidatedFiles(directory=settings.static_dir), name="static"),
            Mount(pyodide_url.rstrip("/"), VendorFiles(runtimes.pyodide_dir, PYODIDE_FILES)),
            Mount(ort_url.rstrip("/"), VendorFiles(runtimes.ort_dir, ORT_FILES)),
        ],
        middleware=[
            # first: every later layer sees the client as the trusted proxies vouch for it
            Middleware(ForwardedClient, trusted_proxies=parse_networks(settings.trusted_proxies)),
            Middleware(SecurityHeaders),
            Middleware(MetricsMiddleware, metrics),
            Middleware(
                SignInGate,
                door=door,
                session_max_age_s=int(settings.session_lifetime_s),
                kiosk_limiter=KioskKeyLimiter(),
            ),
        ],
        lifespan=lifespan,
    )
