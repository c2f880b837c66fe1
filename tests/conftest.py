"""Shared fixtures: settings, real servers on 127.0.0.1 port 0, photos, a fake engine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgesight.serving import ServerThread
from gpu_backend.app import create_app as create_node_app
from gpu_backend.settings import NodeSettings

ROOT = Path(__file__).resolve().parents[1]
MODEL_PATH = ROOT / "models" / "nanodet-g-416" / "nanodet-g-416.onnx"


@pytest.fixture(scope="session")
def node_settings() -> NodeSettings:
    return NodeSettings(port=0, model_path=MODEL_PATH, node_name="test-node", intra_op_threads=1)


@pytest.fixture(scope="module")
def node_server(node_settings: NodeSettings) -> Iterator[ServerThread]:
    """A real inference node (real onnxruntime, real model) under uvicorn."""
    with ServerThread(
        create_node_app(node_settings), max_message_bytes=node_settings.max_message_bytes
    ) as server:
        yield server


@pytest.fixture
def small_node_settings(node_settings: NodeSettings) -> NodeSettings:
    return replace(node_settings, max_streams=1, max_message_bytes=1024 * 1024)
