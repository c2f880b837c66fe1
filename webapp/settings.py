"""Web app settings, read once from a mapping (the environment, or CLI-built) and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from . import WebappError

__all__ = ["PROJECT_ROOT", "SettingsError", "WebappSettings"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SettingsError(WebappError, ValueError):
    """A setting that cannot be used; the message names the key."""


@dataclass(frozen=True)
class WebappSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # ws:// or wss:// URLs of inference nodes; "{hostname}" is replaced in the page by the
    # host the page was loaded from, so a LAN user reaches the node on the same machine.
    node_urls: tuple[str, ...] = ("ws://{hostname}:8001/ws",)
    model_dir: Path = PROJECT_ROOT / "models" / "nanodet-g-416"
    static_dir: Path = PROJECT_ROOT / "static"
    vendor_dir: Path = PROJECT_ROOT / "node_modules"
    max_in_flight: int = 2

    ENV: ClassVar[dict[str, str]] = {
        "host": "EDGESIGHT_HOST",
        "port": "EDGESIGHT_PORT",
        "node_urls": "EDGESIGHT_NODE_URLS",
        "model_dir": "EDGESIGHT_MODEL_DIR",
        "vendor_dir": "EDGESIGHT_VENDOR_DIR",
        "max_in_flight": "EDGESIGHT_MAX_IN_FLIGHT",
    }

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"EDGESIGHT_PORT (port): expected 0..65535, got {self.port!r}")
        for url in self.node_urls:
            if not url.startswith(("ws://", "wss://")):
                raise SettingsError(
                    f"EDGESIGHT_NODE_URLS (node_urls): expected ws:// or wss:// URLs, got {url!r}"
                )
        if not 1 <= self.max_in_flight <= 64:
            raise SettingsError(
                "EDGESIGHT_MAX_IN_FLIGHT (max_in_flight): expected 1..64, "
                f"got {self.max_in_flight!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> WebappSettings:
        values: dict[str, Any] = {}
        for name, key in cls.ENV.items():
            if key not in environ:
                continue
            raw = environ[key]
            if name in ("port", "max_in_flight"):
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise SettingsError(f"{key}: expected an integer, got {raw!r}") from None
            elif name == "node_urls":
                values[name] = tuple(u.strip() for u in raw.split(",") if u.strip())
            elif name.endswith("_dir"):
                values[name] = Path(raw).expanduser()
            else:
                values[name] = raw
        settings = cls(**values)
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings
