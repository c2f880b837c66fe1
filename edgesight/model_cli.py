"""``edgesight model import|quantize``: the model commands' flags and their one-line errors.
The work is in edgesight.model_import and edgesight.quantize."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_model_commands", "run_model_command"]


def _imgsz(text: str) -> tuple[int, int]:
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) == 2 and all(numbers):
        return numbers[0], numbers[1]
    raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH or SIZE, got {text!r}")


def add_model_commands(commands: Any) -> None:
    model = commands.add_parser("model", help="import a detector, or make an INT8 variant")
    actions = model.add_subparsers(dest="model_command", required=True)
    imp = actions.add_parser(
        "import",
        help="wrap a YOLOv5/YOLOv8/YOLO11 or post-NMS ONNX export into a servable model",
        description="Writes OUT/NAME.onnx and OUT/model.json; serve it with "
        "`edgesight serve --model OUT/NAME.onnx` and EDGESIGHT_MODEL_DIR=OUT for the web app.",
    )
    imp.add_argument("path", type=Path, help="the exported .onnx file")
    imp.add_argument(
        "--names",
        type=Path,
        help="class names: a .txt (one a line) or a .yaml with 'names' "
        "(default: the names in the file's Ultralytics metadata)",
    )
    imp.add_argument(
        "--family",
        default="auto",
        choices=("auto", "yolov8", "yolov5", "nms"),
        help="output layout (default: detect it)",
    )
    imp.add_argument("--out", type=Path, help="output folder (default: models/NAME)")
    imp.add_argument("--name", help="model name (default: the file's stem)")
    imp.add_argument(
        "--imgsz", type=_imgsz, help="HEIGHT,WIDTH for a model with a dynamic input size"
    )
    imp.add_argument("--licence", help="licence of the weights (default: from the metadata)")

    quant = actions.add_parser(
        "quantize",
        help="make an INT8 (static QDQ, per-channel, Conv only) variant of a product model",
    )
    quant.add_argument("model_dir", type=Path, help="folder with the model and its model.json")
    quant.add_argument(
        "--calibration", type=Path, required=True, help="folder of photos (jpg/png) to calibrate on"
    )
    quant.add_argument(
        "--held-out",
        type=Path,
        help="folder of photos to measure agreement on (default: every 5th calibration photo, "
        "left out of calibration)",
    )
    quant.add_argument("--out", type=Path, help="output folder (default: MODEL_DIR-int8)")
    quant.add_argument(
        "--report", type=Path, help="also write the agreement/speed report here (Markdown)"
    )


def run_model_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.model_command == "import":
        from .model_import import ModelImportError, import_model

        out = args.out or Path("models") / (args.name or args.path.stem)
        try:
            result = import_model(
                args.path,
                out,
                names_path=args.names,
                family=args.family,
                name=args.name,
                imgsz=args.imgsz,
                licence=args.licence,
            )
        except (ModelImportError, OSError) as exc:
            parser.exit(2, f"edgesight: error: {exc}\n")
        card = result.card
        sys.stdout.write(
            f"{result.onnx_path}: {card.family}, {len(card.class_names)} classes, input "
            f"{card.input_width_px}x{card.input_height_px}, batch "
            f"{'any' if result.is_batch_free else '1'}; serve with --model {result.onnx_path}\n"
        )
        return 0
    from .quantize import QuantizeError, quantize_model

    out = args.out or args.model_dir.with_name(args.model_dir.name + "-int8")
    try:
        report = quantize_model(args.model_dir, args.calibration, out, held_out_dir=args.held_out)
    except (QuantizeError, OSError) as exc:
        parser.exit(2, f"edgesight: error: {exc}\n")
    if args.report is not None:
        args.report.write_text(report.markdown(), encoding="utf-8")
    sys.stdout.write(report.summary().rstrip("\n") + "\n")
    return 0
