"""What a browser loads from the web app, read and checked once at start-up (``Site.build``)
and served by ``site_routes``: the page and the kiosk page with their configuration, the
service worker with its offline manifest, the client package, the model with its card (and
the file the in-browser fallback runs), and the browser runtimes."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.templating import Jinja2Templates

from pyodide_client.model_card import ModelCard

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
from .headers import NO_CACHE
from .model_files import LocalModel, choose_local_model
from .offline import OfflineManifest, service_worker_script
from .page_config import KIOSK_SOURCE_URL, kiosk_page_config, page_config, script_json
from .settings import WebappSettings
from .signin import AuthMode, Door

__all__ = ["TEMPLATES_DIR", "Site", "site_routes"]

log = logging.getLogger(__name__)
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Site:
    card: ModelCard
    card_text: str
    local_model: LocalModel  # what the in-browser fallback runs
    runtimes: BrowserRuntimes
    pyodide_url: str  # versioned: vendor files are immutable under their URL
    ort_url: str
    client_zip: bytes
    config_json: str  # the page's configuration, ready for its <script> element
    kiosk_json: str
    sw_script: str

    @classmethod
    def build(cls, settings: WebappSettings) -> Site:
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
        config = page_config(settings, card, local_model, pyodide_url, ort_url)
        config_json = script_json(config)
        kiosk_json = script_json(kiosk_page_config(settings, config))
        offline = _offline_manifest(
            settings,
            pages={"/": config_json, "/kiosk": kiosk_json},
            documents={
                "/models/model.json": card_text.encode(),
                "/py/pyodide_client.zip": client_zip,
            },
            vendor_urls=tuple(
                [pyodide_url + name for name in PYODIDE_FILES]
                + [ort_url + name for name in ORT_WASM_FILES]
            ),
            local_model=local_model,
        )
        return cls(
            card,
            card_text,
            local_model,
            runtimes,
            pyodide_url,
            ort_url,
            client_zip,
            config_json,
            kiosk_json,
            service_worker_script(settings.static_dir, offline),
        )


def _offline_manifest(
    settings: WebappSettings,
    pages: dict[str, str],
    documents: dict[str, bytes],
    vendor_urls: tuple[str, ...],
    local_model: LocalModel,
) -> OfflineManifest:
    """What the service worker keeps, so that a kiosk goes on without the web app;
    ``pages``: URL -> the configuration JSON the page template is filled with."""
    template_bytes = (TEMPLATES_DIR / "index.html").read_bytes()
    if settings.kiosk_source is not None:
        # a kiosk must loop its configured source offline too
        documents = {**documents, KIOSK_SOURCE_URL: _file_digest(settings.kiosk_source)}
    return OfflineManifest.build(
        settings.static_dir,
        pages={url: template_bytes + config_json.encode() for url, config_json in pages.items()},
        documents=documents,
        vendor_urls=vendor_urls,
        model_url=f"/models/{local_model.card.file}",
        model_sha256=local_model.card.sha256,
    )


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


def site_routes(
    site: Site, settings: WebappSettings, door: Door, templates: Jinja2Templates
) -> list[BaseRoute]:
    """The pages, the service worker, the client package, the model files and the
    runtimes; ``door`` tells the page who is signed in."""
    card = site.card
    local_model = site.local_model

    async def index(request: Request) -> HTMLResponse:
        # The gate has checked the session; a person signed in with a password gets the
        # sign-out control (a proxy's user signs out at the proxy, a kiosk never does).
        session = await door.session(request) if door.has(AuthMode.USERS) else None
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "config_json": site.config_json,
                "model": card,
                "local_model": site.local_model,
                "signed_in_as": session.identity if session and session.kind == "user" else "",
            },
            headers={"Cache-Control": NO_CACHE},
        )

    async def kiosk(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "config_json": site.kiosk_json,
                "model": card,
                "local_model": site.local_model,
                "signed_in_as": "",
            },
            headers={"Cache-Control": NO_CACHE},
        )

    async def service_worker(request: Request) -> Response:
        return Response(
            site.sw_script, media_type="text/javascript", headers={"Cache-Control": NO_CACHE}
        )

    async def client_package(request: Request) -> Response:
        return Response(
            site.client_zip, media_type="application/zip", headers={"Cache-Control": NO_CACHE}
        )

    async def model_card(request: Request) -> Response:
        return Response(
            site.card_text, media_type="application/json", headers={"Cache-Control": NO_CACHE}
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
        return FileResponse(settings.kiosk_source, headers={"Cache-Control": NO_CACHE})

    async def local_model_file(request: Request) -> FileResponse:
        return FileResponse(
            local_model.path,
            media_type="application/octet-stream",
            headers={"Cache-Control": NO_CACHE},
        )

    return [
        Route("/", index),
        Route("/kiosk", kiosk),
        Route(KIOSK_SOURCE_URL, kiosk_source),
        Route("/sw.js", service_worker),
        Route("/py/pyodide_client.zip", client_package),
        Route("/models/model.json", model_card),
        Route(f"/models/{card.file}", model_file),
        *(
            [Route(f"/models/{local_model.card.file}", local_model_file)]
            if local_model.variant_of
            else []
        ),
        Mount("/static", RevalidatedFiles(directory=settings.static_dir), name="static"),
        Mount(site.pyodide_url.rstrip("/"), VendorFiles(site.runtimes.pyodide_dir, PYODIDE_FILES)),
        Mount(site.ort_url.rstrip("/"), VendorFiles(site.runtimes.ort_dir, ORT_FILES)),
    ]
