"""Offline-first: the service worker script and the list of files it keeps.

After one successful load, a kiosk that reboots while the web app is unreachable must come
up and detect locally. The service worker precaches the pages, the app's static files,
the Pyodide and onnxruntime-web runtimes, the Python client and the model. Its cache name
carries a version computed from the content of everything it keeps, so any update to
those files installs a fresh cache and deletes the stale one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OfflineManifest", "service_worker_script"]

SW_TEMPLATE = "sw.js"
PLACEHOLDER = "__EDGESIGHT_MANIFEST__"


@dataclass(frozen=True)
class OfflineManifest:
    version: str
    urls: tuple[str, ...]  # precached at install
    network_first: tuple[str, ...]  # tried on the network first, cache when offline

    @classmethod
    def build(
        cls,
        static_dir: Path,
        pages: tuple[str, ...],
        documents: dict[str, bytes],
        vendor_urls: tuple[str, ...],
        model_url: str,
        model_sha256: str,
    ) -> OfflineManifest:
        """``documents``: URL -> content of what the app generates (config, client zip);
        their content goes into the version, like the static files'."""
        digest = hashlib.sha256()
        static_urls = []
        for path in sorted(p for p in static_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(static_dir).as_posix()
            if relative == SW_TEMPLATE:
                continue
            static_urls.append(f"/static/{relative}")
            digest.update(relative.encode() + b"\0" + path.read_bytes())
        for url, content in sorted(documents.items()):
            digest.update(url.encode() + b"\0" + content)
        digest.update("\0".join((*pages, *vendor_urls, model_url, model_sha256)).encode())
        network_first = (*pages, *documents)
        urls = (*network_first, *static_urls, *vendor_urls, model_url)
        return cls(digest.hexdigest()[:16], urls, network_first)

    def to_json(self) -> str:
        return json.dumps(
            {"version": self.version, "urls": self.urls, "network_first": self.network_first}
        )


def service_worker_script(static_dir: Path, manifest: OfflineManifest) -> str:
    template = (static_dir / SW_TEMPLATE).read_text(encoding="utf-8")
    if PLACEHOLDER not in template:
        raise ValueError(f"{static_dir / SW_TEMPLATE} lacks the {PLACEHOLDER} placeholder")
    return template.replace(PLACEHOLDER, manifest.to_json())
