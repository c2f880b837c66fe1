"""The seed's design, rebuilt for comparison: float32 tensors over HTTP, JSON back.

The seed article's ``gpu_worker.py`` takes the normalised float32 input tensor in a POST
body, runs onnxruntime and answers ``json.dumps`` of the model's raw outputs as nested
lists (``.tolist()``); its browser side normalises frames to float32 with numpy and
``json.loads`` the answer. This module holds both halves:

- the server (``python bench/seed_node.py --port P --model PATH``): Starlette + uvicorn on
  127.0.0.1, ``POST /infer`` with the raw little-endian float32 bytes of [1, 3, 416, 416];
  the blocking part (decode, ``session.run``, ``json.dumps``) runs in the threadpool, as
  a threaded Flask worker would. It adds one thing the seed did not have, a
  ``Server-Timing`` header (inference and serialise ms) so the bench can say where time
  goes; it is a few dozen bytes and counted in the bytes per frame.
- the client's preprocessing (``seed_prep``) and the choice of model (``prepare_model``).

Which model: the edgesight model takes uint8 RGB and normalises inside the graph, so the
seed needs a float32-input model. ``raw``: NanoDet-g's original graph
(``~/.cache/edgesight/nanodet-g-416-raw.onnx``, made by ``scripts/build_raw_model.py``, when
present), float32 BGR normalised by NanoDet's mean/std, six raw head outputs (no box
decode), exactly the seed's situation. ``float-variant``: the product model with its uint8
input and Cast replaced by a float32 input, fed float32 RGB pixels 0..255 (the in-graph
normalisation stays), returning decoded ``boxes`` and ``scores``; built at bench time with
the ``onnx`` package, never committed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from build_raw_model import DEFAULT_RAW  # noqa: E402

PRODUCT_MODEL = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"
RAW_MODEL = DEFAULT_RAW
INPUT_SIZE_PX = 416
INPUT_SHAPE = (1, 3, INPUT_SIZE_PX, INPUT_SIZE_PX)
PAD_VALUE = 114
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32).reshape(3, 1, 1)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32).reshape(3, 1, 1)

log = logging.getLogger("bench.seed_node")


@dataclass(frozen=True)
class SeedModel:
    path: Path
    kind: str  # "raw" or "float-variant"

    @property
    def description(self) -> str:
        if self.kind == "raw":
            return (
                f"{self.path.name}: NanoDet-g's original graph, float32 BGR normalised "
                "input, six raw head outputs"
            )
        return (
            f"{self.path.name}: the product model with a float32 input "
            "(RGB pixels 0..255), outputs boxes + scores"
        )


def build_float_variant(dest: Path) -> Path:
    """The product model with its uint8 input and the Cast after it replaced by a
    float32 input of the same shape."""
    import onnx

    model = onnx.load(str(PRODUCT_MODEL))
    graph = model.graph
    (graph_input,) = graph.input
    graph_input.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    casts = [n for n in graph.node if n.op_type == "Cast" and list(n.input) == [graph_input.name]]
    if len(casts) != 1:
        raise RuntimeError(f"expected one Cast of {graph_input.name}, found {len(casts)}")
    cast = casts[0]
    identity = onnx.helper.make_node("Identity", [graph_input.name], list(cast.output))
    index = list(graph.node).index(cast)
    graph.node.remove(cast)
    graph.node.insert(index, identity)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return dest


def prepare_model(choice: str, workdir: Path) -> SeedModel:
    """``auto``: the raw model when scripts/build_raw_model.py has made it, else the variant."""
    if choice in ("auto", "raw") and RAW_MODEL.is_file():
        return SeedModel(RAW_MODEL, "raw")
    if choice == "raw":
        raise FileNotFoundError(f"raw model not found: {RAW_MODEL}")
    return SeedModel(build_float_variant(workdir / "nanodet-g-416-float.onnx"), "float-variant")


def _letterbox_rgb(rgba: bytes, width_px: int, height_px: int) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour letterbox with the same geometry as the product's Letterbox."""
    frame = np.frombuffer(rgba, np.uint8).reshape(height_px, width_px, 4)
    scale = min(INPUT_SIZE_PX / width_px, INPUT_SIZE_PX / height_px)
    w = max(1, min(INPUT_SIZE_PX, round(width_px * scale)))
    h = max(1, min(INPUT_SIZE_PX, round(height_px * scale)))
    left, top = (INPUT_SIZE_PX - w) // 2, (INPUT_SIZE_PX - h) // 2
    cols = np.minimum(width_px - 1, ((2 * np.arange(w) + 1) * width_px) // (2 * w))
    rows = np.minimum(height_px - 1, ((2 * np.arange(h) + 1) * height_px) // (2 * h))
    out = np.full((INPUT_SIZE_PX, INPUT_SIZE_PX, 3), PAD_VALUE, np.uint8)
    out[top : top + h, left : left + w] = frame[rows[:, None], cols[None, :], :3]
    return out


def seed_prep(kind: str, rgba: bytes, width_px: int, height_px: int) -> npt.NDArray[np.float32]:
    """The seed client's per-frame work: letterbox, then float32 NCHW in numpy."""
    rgb = _letterbox_rgb(rgba, width_px, height_px)
    if kind == "raw":
        bgr = rgb[..., ::-1].transpose(2, 0, 1).astype(np.float32)
        tensor = (bgr - MEAN_BGR) / STD_BGR
    else:
        tensor = rgb.transpose(2, 0, 1).astype(np.float32)
    return np.ascontiguousarray(tensor[None], dtype=np.float32)


def create_app(model_path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    session.run(None, {input_name: np.zeros(INPUT_SHAPE, np.float32)})  # warm up

    def work(body: bytes) -> Response:
        t0 = time.perf_counter()
        tensor = np.frombuffer(body, np.float32).reshape(INPUT_SHAPE)
        outputs = session.run(None, {input_name: tensor})
        t1 = time.perf_counter()
        text = json.dumps([output.tolist() for output in outputs])
        t2 = time.perf_counter()
        timing = f"inference;dur={(t1 - t0) * 1000:.2f}, serialize;dur={(t2 - t1) * 1000:.2f}"
        return Response(text, media_type="application/json", headers={"server-timing": timing})

    async def infer(request: Request) -> Response:
        body = await request.body()
        if len(body) != 4 * int(np.prod(INPUT_SHAPE)):
            return Response(f"expected {INPUT_SHAPE} float32", status_code=400)
        return await run_in_threadpool(work, body)

    return Starlette(routes=[Route("/infer", infer, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True, help="float32-input .onnx model")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads, 0 = default")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import uvicorn

    sys.path.insert(0, str(ROOT))
    uvicorn.run(
        create_app(args.model, args.threads),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
