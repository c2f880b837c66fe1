"""Offline-first: the service worker script and the list of files it keeps.

After one successful load, a kiosk that reboots while the web app is unreachable must come
up and detect locally. The service worker precaches the pages, the app's static files,
the Pyodide and onnxruntime-web runtimes, the Python client and the model, all in ONE
cache named by a version computed from the content of everything in it, and answers every
request for those files from that cache. An update is therefore atomic: a deploy changes
the version, the browser installs the new worker with a complete new cache, and a page is
either all old (its pages, scripts and Python bundle) or all new, never old JavaScript
against new Python (issue 10). The page reloads itself when a new worker takes over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OfflineManifest", "service_worker_script"]

SW_TEMPLATE = "sw.js"
PLACEHOLDER = "__EDGESIGHT_MANIFEST__"


@dataclass(frozen=True)
class OfflineManifest:
    version: str
    urls: tuple[str, ...]  # precached at install, served from the cache of this version

    @classmethod
    def build(
        cls,
        static_dir: Path,
        pages: Mapping[str, bytes],
        documents: Mapping[str, bytes],
        vendor_urls: tuple[str, ...],
        model_url: str,
        model_sha256: str,
    ) -> OfflineManifest:
        """``pages``: URL -> what its content is made from (template and config);
        ``documents``: URL -> content of what the app generates (client zip, model card).
        Both go into the version, like the static files'."""
        digest = hashlib.sha256()
        static_urls = []
        for path in sorted(p for p in static_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(static_dir).as_posix()
            if relative == SW_TEMPLATE:
                continue
            static_urls.append(f"/static/{relative}")
            digest.update(relative.encode() + b"\0" + path.read_bytes())
        for url, content in sorted({**pages, **documents}.items()):
            digest.update(url.encode() + b"\0" + content)
        digest.update("\0".join((*vendor_urls, model_url, model_sha256)).encode())
        urls = (*pages, *documents, *static_urls, *vendor_urls, model_url)
        return cls(digest.hexdigest()[:16], urls)

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "urls": self.urls})


def service_worker_script(static_dir: Path, manifest: OfflineManifest) -> str:
    template = (static_dir / SW_TEMPLATE).read_text(encoding="utf-8")
    if PLACEHOLDER not in template:
        raise ValueError(f"{static_dir / SW_TEMPLATE} lacks the {PLACEHOLDER} placeholder")
    return template.replace(PLACEHOLDER, manifest.to_json())
