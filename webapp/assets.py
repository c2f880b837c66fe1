"""Files the page loads besides its own: the browser runtimes from npm, the Python client
package as a zip for Pyodide, and the model. Missing runtimes fail at start-up with a
message saying how to install them."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyodide_client

from . import WebappError

__all__ = ["AssetError", "BrowserRuntimes", "client_package_zip"]

PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")


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
