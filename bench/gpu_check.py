"""A short check for a GPU machine (< 5 min): what is there, engine times, node ratios.

Needs only the repository and the lending machine's image (PyTorch, CuPy, onnx and
onnxruntime; no pip installs at run time). It reports:

1. what it finds: Python, onnxruntime and its execution providers, PyTorch and the CUDA
   device it sees, CuPy, nvidia-smi, and which of the node's server packages import;
2. the engine alone (``gpu_backend.engine.OnnxEngine``, provider ``auto``: CUDA when
   onnxruntime offers it, else the CPU) at batch 1, 8 and 32;
3. the model on the GPU through PyTorch only where that is trivially possible (an ONNX ->
   PyTorch converter would be needed; the image has none), and, when PyTorch sees CUDA,
   the host -> device copy of a batch of 8 frames as uint8 vs float32;
4. the (a)/(b) ratios in reduced form. With starlette, uvicorn and websockets importable:
   a real node subprocess, one stream round trip vs bare inference, and 8 camera streams
   (30 fps, and saturating) vs the engine's best batched throughput. Without them (the
   GPU image lacks them): the same through the node's ``Batcher`` in this process, which
   leaves out the WebSocket and says so.

Everything it could not measure is listed, with why. JSON goes to ``$OUT/gpu_check.json``
when ``OUT`` is set, else to ``bench/results/gpu_check.json``.

    python bench/gpu_check.py
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.util
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (
    MODEL,
    RESULTS,
    camera_frames,
    edgesight_node,
    free_port,
    machine,
    model_inputs,
    summary,
    table,
    write_result,
)

from gpu_backend.batcher import Batcher
from gpu_backend.engine import OnnxEngine, load_model
from pyodide_client.postprocess import PostprocessSettings
from pyodide_client.protocol import Dtype, Frame, Result

log = logging.getLogger("bench.gpu_check")

NODE_PACKAGES = ("starlette", "uvicorn", "websockets")


def version_of(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None
    return str(getattr(module, "__version__", "unknown"))


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    found: dict[str, Any] = {
        "machine": machine(),
        "python": sys.executable,
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "onnx": version_of("onnx"),
        "cupy": version_of("cupy"),
        "onnx2torch": version_of("onnx2torch"),
        "node_packages": {name: version_of(name) for name in NODE_PACKAGES},
    }
    torch_version = version_of("torch")
    found["torch"] = torch_version
    if torch_version:
        import torch

        found["torch_cuda_available"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            found["torch_cuda_device"] = torch.cuda.get_device_name(0)
            found["torch_cuda_capability"] = list(torch.cuda.get_device_capability(0))
    if found["cupy"]:
        try:
            import cupy

            found["cupy_devices"] = int(cupy.cuda.runtime.getDeviceCount())
        except Exception as exc:  # noqa: BLE001 - CuPy raises its own CUDA errors
            found["cupy_devices"] = f"error: {type(exc).__name__}"
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total"
        out = subprocess.run(
            [smi, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        found["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    return found


def engine_times(
    engine: OnnxEngine, tensors: list[npt.NDArray[np.uint8]], batches: list[int], budget_s: float
) -> dict[str, Any]:
    """ms per ``engine.infer`` at each batch size: 2 warm-ups, then up to ``budget_s``."""
    by_batch: dict[str, Any] = {}
    for batch in batches:
        images = np.stack([tensors[i % len(tensors)] for i in range(batch)])
        for _ in range(2):
            engine.infer(images)
        times: list[float] = []
        deadline = time.monotonic() + budget_s
        while len(times) < 5 or (time.monotonic() < deadline and len(times) < 200):
            t0 = time.perf_counter()
            engine.infer(images)
            times.append((time.perf_counter() - t0) * 1000)
        median_ms = statistics.median(times)
        by_batch[str(batch)] = {
            "runs": len(times),
            "median_ms": round(median_ms, 3),
            "ms_per_image": round(median_ms / batch, 3),
            "fps": round(1000 * batch / median_ms, 1),
        }
    return by_batch


def torch_path(found: dict[str, Any], not_measured: list[str]) -> dict[str, Any]:
    if not found.get("torch_cuda_available"):
        not_measured.append("PyTorch on the GPU: PyTorch sees no CUDA device here")
        return {}
    import torch

    result: dict[str, Any] = {}
    if not found.get("onnx2torch"):
        not_measured.append(
            "the model on the GPU through PyTorch: no ONNX -> PyTorch converter "
            "(onnx2torch) in the image, and onnxruntime here has no CUDA provider"
            if "CUDAExecutionProvider" not in found["onnxruntime_providers"]
            else "the model through PyTorch: no onnx2torch (onnxruntime's CUDA provider "
            "covers the GPU instead)"
        )
    device = torch.device("cuda:0")
    for dtype in (torch.uint8, torch.float32):
        host = torch.zeros((8, 3, 416, 416), dtype=dtype).pin_memory()
        times = []
        for i in range(25):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            host.to(device, non_blocking=False)
            torch.cuda.synchronize()
            if i >= 5:
                times.append((time.perf_counter() - t0) * 1000)
        name = str(dtype).removeprefix("torch.")
        result[f"h2d_copy_batch8_{name}_ms"] = round(statistics.median(times), 4)
    return result


def record(sizes: list[int], future: asyncio.Future[Any]) -> None:
    """Done-callback: note the batch size of a frame that got a RESULT."""
    outcome = future.result()
    if isinstance(outcome, Result):
        sizes.append(outcome.batch_size)


def batcher_ratios(
    engine: OnnxEngine, tensors: list[npt.NDArray[np.uint8]], args: argparse.Namespace
) -> dict[str, Any]:
    """(a) and (b) through the node's Batcher in this process (no WebSocket)."""
    card = load_model(MODEL).card

    async def run() -> dict[str, Any]:
        batcher = Batcher(engine, len(card.class_names), PostprocessSettings(), 8, 2.0)
        loop_task = asyncio.create_task(batcher.run())
        frame_ids = iter(range(1, 1 << 31))

        def submit(stream: int, i: int) -> asyncio.Future[Any]:
            image = tensors[i % len(tensors)]
            frame = Frame(next(frame_ids), 0.0, Dtype.UINT8, image.shape, image.tobytes())
            return batcher.submit(stream, frame, image)

        batcher.open_stream(0)
        via_batcher, bare = [], []
        for block in range(args.frames // 20):
            for i in range(20):
                t0 = time.perf_counter()
                outcome = await submit(0, i)
                via_batcher.append((time.perf_counter() - t0) * 1000)
                assert isinstance(outcome, Result)
            for i in range(20):
                image = tensors[(block + i) % len(tensors)][None]
                t0 = time.perf_counter()
                engine.infer(image)
                bare.append((time.perf_counter() - t0) * 1000)
        batcher.close_stream(0)

        async def camera(index: int, fps: float, end_s: float, sizes: list[int]) -> None:
            """A camera at ``fps`` with K = 2: a tick sends when < 2 frames are unanswered."""
            batcher.open_stream(index)
            unanswered: list[asyncio.Future[Any]] = []
            tick_s = time.monotonic()
            i = 0
            while tick_s < end_s:
                await asyncio.sleep(max(0.0, tick_s - time.monotonic()))
                tick_s += 1.0 / fps
                unanswered = [f for f in unanswered if not f.done()]
                if len(unanswered) < 2:
                    future = submit(index, i)
                    future.add_done_callback(functools.partial(record, sizes))
                    unanswered.append(future)
                    i += 1
            await asyncio.gather(*unanswered, return_exceptions=True)
            batcher.close_stream(index)

        loads = {}
        for name, fps in (("b_8_streams_30fps", 30.0), ("b_8_streams_saturating", 240.0)):
            sizes: list[int] = []
            start_s = time.monotonic()
            end_s = start_s + args.duration_s
            await asyncio.gather(*(camera(int(100 * fps) + s, fps, end_s, sizes) for s in range(8)))
            # Until the last answer, not the last send: frames still running at end_s count.
            elapsed_s = time.monotonic() - start_s
            loads[name] = {
                "fps_total": round(len(sizes) / elapsed_s, 1),
                "batch_size_mean": round(statistics.fmean(sizes), 2) if sizes else None,
            }
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        return {
            "how": "in-process Batcher (max batch 8, wait 2 ms), no WebSocket",
            "a_one_stream": {
                "via_batcher": summary(via_batcher, 3),
                "bare_infer": summary(bare, 3),
                "ratio_p50": round(statistics.median(via_batcher) / statistics.median(bare), 3),
            },
            **loads,
        }

    return asyncio.run(run())


def node_ratios(
    engine: OnnxEngine, tensors: list[npt.NDArray[np.uint8]], args: argparse.Namespace
) -> dict[str, Any]:
    """(a) and (b) against a real node subprocess over WebSockets."""
    from streams import Window, edgesight_stream, run_point, summarise
    from websockets.sync.client import connect

    from pyodide_client.stream import Detections, NodeStream

    frames = camera_frames()
    result: dict[str, Any] = {"how": "node subprocess (python -m edgesight node), WebSocket"}
    with edgesight_node(free_port(), name="node") as node:
        url = f"ws://127.0.0.1:{node.port}/ws"
        with connect(url, compression=None, max_size=None) as ws:
            client = NodeStream(max_in_flight=1)
            client.receive(ws.recv(timeout=60, decode=False), 0.0)  # HELLO
            for message in client.data_to_send():  # AUTH (anonymous)
                ws.send(message)
            client.receive(ws.recv(timeout=60, decode=False), 0.0)  # WELCOME
            round_trip, bare = [], []
            for block in range(args.frames // 20 + 1):
                for i in range(20):
                    message = client.encode_frame(*frames[i % len(frames)], 0.0, 0.0)
                    t0 = time.perf_counter()
                    ws.send(message)
                    (event,) = client.receive(ws.recv(timeout=60, decode=False), 0.0)
                    if block:  # the first block warms up
                        round_trip.append((time.perf_counter() - t0) * 1000)
                    assert isinstance(event, Detections)
                for i in range(20):
                    t0 = time.perf_counter()
                    engine.infer(tensors[i % len(tensors)][None])
                    if block:
                        bare.append((time.perf_counter() - t0) * 1000)
        result["a_one_stream"] = {
            "round_trip": summary(round_trip, 3),
            "bare_infer": summary(bare, 3),
            "ratio_p50": round(statistics.median(round_trip) / statistics.median(bare), 3),
        }
        for name, fps in (("b_8_streams_30fps", 30.0), ("b_8_streams_saturating", 240.0)):
            window = Window.after(1.0, 1.0, args.duration_s, fps=fps)
            go = [lambda w, p, t: edgesight_stream(url, 2, frames, w, p, t)] * 8
            point = summarise([asyncio.run(run_point(go, node.pid, window))])
            result[name] = {
                key: point[key]
                for key in ("fps_total", "latency", "batch_size_mean", "dropped", "skipped")
            }
            result[name]["node_cpu_percent"] = point["node_cpu_percent"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--budget-s", type=float, default=5.0, help="timing per batch size")
    parser.add_argument("--frames", type=int, default=100, help="one-stream round trips")
    parser.add_argument("--duration-s", type=float, default=5.0, help="seconds per load point")
    parser.add_argument("--mode", choices=("auto", "node", "batcher"), default="auto")
    out_default = Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS
    parser.add_argument("--out", type=Path, default=out_default / "gpu_check.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    not_measured: list[str] = []

    found = environment()
    log.info("found: %s", found)
    engine = OnnxEngine(MODEL, provider="auto")
    if engine.provider != "CUDAExecutionProvider":
        not_measured.append(
            f"onnxruntime on the GPU: this onnxruntime offers {found['onnxruntime_providers']}; "
            "the engine ran on the CPU"
        )
    tensors = model_inputs(camera_frames())
    engine_result: dict[str, Any] = {
        "provider": engine.provider,
        "device": engine.device_name,
        "by_batch": engine_times(engine, tensors, args.batches, args.budget_s),
    }
    up_to_8 = [v["fps"] for b, v in engine_result["by_batch"].items() if int(b) <= 8]
    engine_result["best_fps_batch_le_8"] = max(up_to_8) if up_to_8 else None
    torch_result = torch_path(found, not_measured)

    has_node_packages = all(found["node_packages"].values())
    mode = args.mode if args.mode != "auto" else ("node" if has_node_packages else "batcher")
    if mode == "batcher":
        missing = [name for name, v in found["node_packages"].items() if not v]
        if missing:
            not_measured.append(
                f"the WebSocket node: {', '.join(missing)} not importable; (a)/(b) ran "
                "through the Batcher in this process instead"
            )
        ratios = batcher_ratios(engine, tensors, args)
    else:
        ratios = node_ratios(engine, tensors, args)
    best = engine_result["best_fps_batch_le_8"]
    for key in ("b_8_streams_30fps", "b_8_streams_saturating"):
        if key in ratios and best:
            ratios[key]["over_engine_best_fps"] = round(ratios[key].get("fps_total", 0) / best, 3)

    result = {
        "command": "python bench/gpu_check.py " + " ".join(sys.argv[1:]),
        "environment": found,
        "engine": engine_result,
        "torch": torch_result,
        "ratios": ratios,
        "not_measured": not_measured,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    write_result(args.out, result)
    rows = [
        [b, v["median_ms"], v["ms_per_image"], v["fps"]]
        for b, v in engine_result["by_batch"].items()
    ]
    log.info("\nengine on %s\n%s", engine.provider, table(["batch", "ms", "ms/img", "fps"], rows))
    log.info("ratios (%s): %s", mode, ratios)
    log.info("torch: %s", torch_result)
    for line in not_measured:
        log.info("not measured: %s", line)


if __name__ == "__main__":
    main()
