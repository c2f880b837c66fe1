"""The configuration a page boots with, written into it as JSON: where the node list, the
tokens, the client package, the runtimes and the model are, and how the page streams.
The kiosk page gets the same with its own few fields."""

from __future__ import annotations

import json
from typing import Any

from pyodide_client.model_card import ModelCard
from pyodide_client.page_config import PageTiming

from .model_files import LocalModel
from .settings import WebappSettings

__all__ = ["KIOSK_SOURCE_URL", "kiosk_page_config", "page_config", "script_json"]

KIOSK_SOURCE_URL = "/kiosk/source"  # EDGESIGHT_KIOSK_SOURCE, served to the kiosk page


def page_config(
    settings: WebappSettings,
    card: ModelCard,
    local_model: LocalModel,
    pyodide_url: str,
    ort_url: str,
) -> dict[str, Any]:
    return {
        "node_urls": list(settings.node_urls),
        "max_in_flight": settings.max_in_flight,
        "local_threads": settings.local_threads,
        "browser_backend": settings.browser_backend,  # auto | webgpu | wasm (issue 20)
        "local_load_deadline_ms": settings.local_load_deadline_s * 1000.0,
        "frame_encoding": settings.frame_encoding,
        "transport": settings.page_transport,  # auto (measured per link) | quic | websocket
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


def kiosk_page_config(settings: WebappSettings, config: dict[str, Any]) -> dict[str, Any]:
    """The page's ``config`` as the kiosk page gets it."""
    kiosk_config = {**config, "kiosk": True, "kiosk_in_view": settings.kiosk_in_view}
    if settings.kiosk_source is not None:
        kiosk_config["kiosk_source_url"] = KIOSK_SOURCE_URL
    return kiosk_config


def script_json(config: dict[str, Any]) -> str:
    """``config`` as JSON to sit in a ``<script>`` element: "<" escaped, so that no
    configured value can close the element it sits in."""
    return json.dumps(config).replace("<", "\\u003c")
