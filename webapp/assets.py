"""Files the page loads besides its own: the browser runtimes from npm, the Python client
package as a zip for Pyodide, and the model. Missing runtimes fail at start-up with a
message saying how to install them.

Of each npm package only the files the page loads are served (``PYODIDE_FILES``,
``ORT_FILES``): not Pyodide's ``console.html`` (a page that runs any Python typed into it),
source maps, ``.d.ts`` files, READMEs or the other onnxruntime-web builds."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

import pyodide_client

from . import WebappError
from .headers import NO_CACHE

__all__ = [
    "ORT_FILES",
    "ORT_WASM_FILES",
    "ORT_WEBGPU_FILES",
    "PYODIDE_FILES",
    "VENDOR_CACHE",
    "AssetError",
    "BrowserRuntimes",
    "RevalidatedFiles",
    "VendorFiles",
    "client_package_zip",
]

VENDOR_CACHE = "public, max-age=31536000, immutable"  # vendor URLs carry the npm version
# Set, not guessed: under nosniff a module script or wasm with the wrong type is refused,
# and the system's MIME table may not know .mjs.
MEDIA_TYPES = {
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".zip": "application/zip",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}

PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
# The Wasm build (CPU), which the service worker keeps for offline kiosks ...
ORT_WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")
# ... and the WebGPU build (issue 20): in onnxruntime-web 1.30 ``ort.webgpu.min.mjs`` loads
# the asyncify Wasm (its native WebGPU execution provider), not the JSEP one that
# ``ort.all`` uses. 27 MB, fetched only by a page that tries WebGPU; not kept offline.
ORT_WEBGPU_FILES = (
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
    "ort-wasm-simd-threaded.asyncify.mjs",
)
ORT_FILES = ORT_WASM_FILES + ORT_WEBGPU_FILES


class AssetError(WebappError):
    """A file the page needs is missing."""


@dataclass(frozen=True)
class BrowserRuntimes:
    pyodide_dir: Path
    ort_dir: Path

    @classmethod
    def locate(cls, vendor_dir: Path) -> BrowserRuntimes:
        runtimes = cls(vendor_dir / "pyodide", vendor_dir / "onnxruntime-web" / "dist")
        for folder, names, package in (
            (runtimes.pyodide_dir, PYODIDE_FILES, "pyodide"),
            (runtimes.ort_dir, ORT_FILES, "onnxruntime-web"),
        ):
            missing = [name for name in names if not (folder / name).is_file()]
            if missing:
                raise AssetError(
                    f"the npm package {package} is missing {', '.join(missing)} under {folder}; "
                    "run `npm ci` in the project root (see README)"
                )
        return runtimes


class VendorFiles(StaticFiles):
    """Only the named files of an npm package folder, cached for good, with their type."""

    def __init__(self, directory: Path, names: Iterable[str]) -> None:
        super().__init__(directory=directory)
        self.names = frozenset(names)

    async def get_response(self, path: str, scope: Scope) -> Response:
        if PurePosixPath(path).as_posix() not in self.names:
            return PlainTextResponse("Not Found", status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = VENDOR_CACHE
        media_type = MEDIA_TYPES.get(PurePosixPath(path).suffix)
        if response.status_code == 200 and media_type:
            response.headers["Content-Type"] = media_type
        return response


class RevalidatedFiles(StaticFiles):
    """The page's own scripts and styles: kept, but checked (ETag) before each use, so a
    deploy reaches every page at its next load."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = NO_CACHE
        media_type = MEDIA_TYPES.get(PurePosixPath(path).suffix)
        if response.status_code == 200 and media_type:
            response.headers["Content-Type"] = media_type
        return response


def client_package_zip() -> bytes:
    """The pyodide_client package as a zip archive, for ``pyodide.unpackArchive``.
    Built from the installed sources, so the browser runs exactly what the tests test."""
    package_dir = Path(pyodide_client.__file__).resolve().parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package_dir.glob("*.py")):
            info = zipfile.ZipInfo(f"pyodide_client/{path.name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()
