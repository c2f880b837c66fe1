"""``edgesight model import``: turn a user's detector ONNX file into a product model that a
node, the web app and the in-browser fallback can serve (``--model`` / EDGESIGHT_MODEL_DIR).

    inspect  -> what the file is: input, outputs, Ultralytics metadata (names, stride, imgsz)
    family   -> yolov8 [1, 4+C, N], yolov5 [1, N, 5+C], nms [1, K, 6] (or --family)
    refuse   -> files that cannot work, saying why (rank, dynamic size without a default,
                operators onnxruntime-web lacks, class count that does not match the names)
    wrap     -> edgesight.model_graph: uint8 RGB in, /255 and box decode in the graph
    check    -> edgesight.model_check: a dry run, output shapes, batch-1 vs batch-N
    write    -> OUT/NAME.onnx + OUT/model.json (pyodide_client/model_card.py's contract)

Needs the ``onnx`` package (``pip install -e '.[model-build]'``).
"""

from __future__ import annotations

import ast
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyodide_client.model_card import ModelCard

from .model_card_file import CARD_FILE, write_model_card
from .model_check import self_check
from .model_errors import ModelImportError
from .model_ops import unsupported_ops

__all__ = ["ImportedModel", "ModelImportError", "SourceModel", "import_model", "read_names"]

log = logging.getLogger(__name__)
MIN_OPSET = 11


@dataclass(frozen=True)
class SourceModel:
    """What the user's file is, as far as importing it goes."""

    input_name: str
    input_shape: tuple[int | str | None, ...]
    outputs: tuple[tuple[str, tuple[int | str | None, ...]], ...]
    metadata: dict[str, str]
    opset: int
    ops: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ImportedModel:
    onnx_path: Path
    card_path: Path
    card: ModelCard
    is_batch_free: bool
    check_report: dict[str, Any]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ModelImportError(
            "importing a model needs the onnx package: pip install -e '.[model-build]'"
        ) from None
    return onnx


def _dims(value: Any) -> tuple[int | str | None, ...]:
    dims: list[int | str | None] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(str(d.dim_param))
        else:
            dims.append(None)
    return tuple(dims)


def inspect(model: Any) -> SourceModel:
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelImportError(
            f"expected a detector with one image input, got {len(inputs)} inputs: "
            f"{[i.name for i in inputs]}"
        )
    opsets = {o.domain: o.version for o in model.opset_import}
    return SourceModel(
        input_name=inputs[0].name,
        input_shape=_dims(inputs[0]),
        outputs=tuple((o.name, _dims(o)) for o in graph.output),
        metadata={p.key: p.value for p in model.metadata_props},
        opset=int(opsets.get("", opsets.get("ai.onnx", 0))),
        ops=frozenset(
            f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
            for n in graph.node
        ),
    )


def read_names(path: Path) -> list[str]:
    """Class names from a text file (one a line) or a YAML file (a ``names`` list or
    ``{id: name}`` mapping, as in an Ultralytics data.yaml)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ModelImportError(
                f"{path}: reading YAML needs pyyaml: pip install -e '.[model-build]'"
            ) from None
        data = yaml.safe_load(text)
        names = data.get("names") if isinstance(data, dict) else data
        return _names_from(names, f"{path}: 'names'")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelImportError(f"{path}: expected one class name a line, got an empty file")
    return names


def _names_from(names: Any, where: str) -> list[str]:
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise ModelImportError(f"{where} keys must be class ids 0..C-1") from None
        if ids != list(range(len(ids))):
            raise ModelImportError(f"{where} ids must be 0..{len(ids) - 1}, got {ids}")
        by_id = {int(k): v for k, v in names.items()}
        names = [by_id[i] for i in range(len(ids))]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelImportError(f"{where} must be a non-empty list of class names, got {names!r}")
    return [str(n) for n in names]


def metadata_names(metadata: dict[str, str]) -> list[str] | None:
    """Ultralytics exports carry ``names`` as a Python dict literal: {0: 'person', ...}."""
    text = metadata.get("names")
    if not text:
        return None
    try:
        return _names_from(ast.literal_eval(text), "ONNX metadata 'names'")
    except (ValueError, SyntaxError):
        raise ModelImportError(f"ONNX metadata 'names' is not a name list: {text[:80]!r}") from None


def metadata_imgsz(metadata: dict[str, str]) -> tuple[int, int] | None:
    """Ultralytics ``imgsz``: '[640, 640]' (height, width) or '640'."""
    text = metadata.get("imgsz")
    if not text:
        return None
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    raise ModelImportError(f"ONNX metadata 'imgsz' must be [height, width], got {text!r}")


def input_size(source: SourceModel, imgsz: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) of the model input; a dynamic size needs a default."""
    shape = source.input_shape
    if len(shape) != 4:
        raise ModelImportError(
            f"input {source.input_name!r} must have rank 4 [batch, 3, H, W], got shape "
            f"{list(shape)} (rank {len(shape)})"
        )
    if shape[1] != 3:
        raise ModelImportError(
            f"input {source.input_name!r} must be NCHW with 3 channels [batch, 3, H, W], got "
            f"{list(shape)}"
        )
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int):
        if imgsz is not None and imgsz != (h, w):
            raise ModelImportError(f"--imgsz {imgsz} differs from the model's fixed input {h}x{w}")
        return h, w
    if imgsz is None:
        raise ModelImportError(
            f"input {source.input_name!r} has a dynamic spatial size {list(shape)} and no default: "
            "pass --imgsz HEIGHT,WIDTH (Ultralytics exports carry it as 'imgsz' metadata)"
        )
    return imgsz


def split_nms_outputs(source: SourceModel) -> tuple[str, str, str] | None:
    """(boxes, scores, classes) of a post-NMS model with separate outputs: one [B, K, 4]
    and two [B, K] named like scores and classes (a [B, 1] count may come with them)."""
    boxes = [n for n, s in source.outputs if len(s) == 3 and s[2] == 4]
    flat = [n for n, s in source.outputs if len(s) == 2 and s[1] != 1]
    scores = [n for n in flat if "score" in n.lower() or "conf" in n.lower()]
    classes = [n for n in flat if "class" in n.lower() or "label" in n.lower()]
    if len(boxes) == len(scores) == len(classes) == 1 and len(flat) == 2:
        return boxes[0], scores[0], classes[0]
    return None


def detect_family(source: SourceModel, num_classes: int) -> str:
    """yolov8 / yolov5 / nms from the output shape (and Ultralytics 'args' metadata)."""
    if split_nms_outputs(source) is not None:
        return "nms"
    if len(source.outputs) != 1:
        raise ModelImportError(
            f"expected one detection output, got {len(source.outputs)}: "
            f"{[name for name, _ in source.outputs]}; pass --family if you know its layout"
        )
    name, shape = source.outputs[0]
    if len(shape) != 3:
        raise ModelImportError(
            f"output {name!r} must have rank 3, got shape {list(shape)} (rank {len(shape)})"
        )
    _, a, b = shape
    args = source.metadata.get("args", "")
    if re.search(r"'(nms|end2end)': True", args) or (b == 6 and num_classes != 1):
        return "nms"
    if a == 4 + num_classes:
        return "yolov8"
    if b == 5 + num_classes:
        return "yolov5"
    raise ModelImportError(
        f"output {name!r} of shape {list(shape)} fits no known family for {num_classes} classes: "
        f"expected [1, {4 + num_classes}, N] (YOLOv8/YOLO11), [1, N, {5 + num_classes}] "
        "(YOLOv5) or [1, K, 6] (post-NMS)"
    )


def check_output(source: SourceModel, family: str, num_classes: int) -> None:
    if family == "nms" and split_nms_outputs(source) is not None:
        return
    name, shape = source.outputs[0]
    expected = {"yolov8": (1, 4 + num_classes), "yolov5": (2, 5 + num_classes), "nms": (2, 6)}
    axis, size = expected[family]
    if len(shape) != 3 or shape[axis] != size:
        raise ModelImportError(
            f"output {name!r} has shape {list(shape)}, but family {family} with "
            f"{num_classes} classes needs dimension {axis} to be {size}"
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def card_dict(
    *,
    name: str,
    file: str,
    sha256: str,
    family: str,
    hw: tuple[int, int],
    classes: list[str],
    anchors: int,
    is_batch_free: bool,
    licence: str,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    batch: str | int = "batch" if is_batch_free else 1
    return {
        "name": name,
        "file": file,
        "sha256": sha256,
        "family": family,
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": [batch, 3, hw[0], hw[1]],
            "layout": "NCHW",
            "channels": "RGB",
            "normalisation": "in-graph",
        },
        "outputs": {
            "boxes": {
                "name": "boxes",
                "dtype": "float32",
                "shape": [batch, anchors, 4],
                "format": "xyxy",
                "units": f"pixels of the {hw[1]}x{hw[0]} input",
            },
            "scores": {
                "name": "scores",
                "dtype": "float32",
                "shape": [batch, anchors, len(classes)],
            },
        },
        "decode": {"in_graph": True, "family": family},
        "anchors": anchors,
        "classes": classes,
        "licence": licence,
        "provenance": provenance,
    }


def import_model(
    path: Path,
    out_dir: Path,
    *,
    names_path: Path | None = None,
    family: str = "auto",
    name: str | None = None,
    imgsz: tuple[int, int] | None = None,
    licence: str | None = None,
) -> ImportedModel:
    onnx = _onnx()  # first: a one-line error when the extra is missing
    from .model_graph import FAMILY_DECODERS

    if not path.is_file():
        raise ModelImportError(f"model file not found: {path}")
    raw = path.read_bytes()
    model, source = _load(onnx, path, raw)
    classes = _class_names(path, names_path, source)
    hw = input_size(source, imgsz or metadata_imgsz(source.metadata))
    chosen = detect_family(source, len(classes)) if family == "auto" else family
    if chosen not in FAMILY_DECODERS:
        raise ModelImportError(
            f"--family must be auto or one of {', '.join(FAMILY_DECODERS)}, got {family!r}"
        )
    check_output(source, chosen, len(classes))
    if {i.name for i in model.graph.initializer} & {"boxes", "scores", "images"}:
        raise ModelImportError(f"{path}: a weight is named 'boxes', 'scores' or 'images'")

    model_name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem)
    product_bytes, report, is_batch_free = _product(onnx, model, source, chosen, classes, hw)
    file_name = f"{model_name}.onnx"
    card = card_dict(
        name=model_name,
        file=file_name,
        sha256=_sha256(product_bytes),
        family=chosen,
        hw=hw,
        classes=classes,
        anchors=int(report["anchors"]),
        is_batch_free=is_batch_free,
        licence=licence or source.metadata.get("license", "unknown: state it with --licence"),
        provenance=_provenance(path, raw, chosen, source),
    )
    # checked against the contract the node and the page will apply before anything is written
    parsed = write_model_card(out_dir, card)
    onnx_path = out_dir / file_name
    card_path = out_dir / CARD_FILE
    onnx_path.write_bytes(product_bytes)
    log.info(
        "imported %s as %s (%s, %d classes, input %dx%d, batch %s): %s",
        path.name,
        model_name,
        chosen,
        len(classes),
        hw[1],
        hw[0],
        "any" if is_batch_free else "1",
        onnx_path,
    )
    return ImportedModel(onnx_path, card_path, parsed, is_batch_free, report)


def _load(onnx: Any, path: Path, raw: bytes) -> tuple[Any, SourceModel]:
    """The parsed model and what it is, refused when onnxruntime-web could not run it."""
    try:
        model = onnx.load_from_string(raw)
    except Exception as exc:  # the protobuf parser raises its own untyped errors
        raise ModelImportError(f"{path} is not an ONNX model: {exc}") from exc
    source = inspect(model)
    if source.opset < MIN_OPSET:
        raise ModelImportError(
            f"{path}: opset {source.opset} is too old; re-export with opset {MIN_OPSET} or newer"
        )
    bad_ops = unsupported_ops(source.ops)
    if bad_ops:
        raise ModelImportError(
            f"{path}: operators onnxruntime-web does not run (or edgesight has not checked): "
            f"{', '.join(sorted(bad_ops))}; re-export with standard ops (e.g. Ultralytics "
            "format=onnx, simplify=True)"
        )
    return model, source


def _class_names(path: Path, names_path: Path | None, source: SourceModel) -> list[str]:
    """From --names, else the model's metadata; both, when given, must agree in number."""
    from_metadata = metadata_names(source.metadata)
    classes = read_names(names_path) if names_path is not None else from_metadata
    if classes is None:
        raise ModelImportError(
            f"{path} carries no class names in its metadata: pass --names names.txt|data.yaml"
        )
    if from_metadata is not None and len(from_metadata) != len(classes):
        raise ModelImportError(
            f"{names_path} lists {len(classes)} classes, but the model's metadata lists "
            f"{len(from_metadata)}"
        )
    return classes


def _product(
    onnx: Any,
    model: Any,
    source: SourceModel,
    chosen: str,
    classes: list[str],
    hw: tuple[int, int],
) -> tuple[bytes, dict[str, Any], bool]:
    """The wrapped model's bytes, its self-check report, and whether its batch is free.

    A graph whose batch can be freed serves batches; if running it says otherwise, the
    product keeps a batch of 1 and the node runs frames one at a time."""
    from .model_graph import wrap

    report: dict[str, Any] = {}
    product_bytes = b""
    is_batch_free = False
    for free in (True, False):
        product = wrap(
            model,
            chosen,
            len(classes),
            hw,
            is_batch_free=free,
            split_outputs=split_nms_outputs(source) if chosen == "nms" else None,
        )
        onnx.checker.check_model(product)
        product_bytes = product.SerializeToString(deterministic=True)
        try:
            report = self_check(product_bytes, hw, len(classes), is_batch_free=free)
        except ModelImportError as exc:
            if not free:
                raise
            log.info("batch-free variant failed its check (%s); keeping a batch of 1", exc)
            continue
        is_batch_free = free
        break
    return product_bytes, report, is_batch_free


def _provenance(path: Path, raw: bytes, chosen: str, source: SourceModel) -> dict[str, Any]:
    provenance: dict[str, Any] = {
        "imported_by": "edgesight model import",
        "source_file": path.name,
        "source_sha256": _sha256(raw),
        "source_family": chosen,
    }
    for key in ("author", "version", "date", "description", "stride", "imgsz"):
        if key in source.metadata:
            provenance[f"source_{key}"] = source.metadata[key]
    return provenance
