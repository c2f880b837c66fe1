"""The edgesight inference node: a Starlette app with one WebSocket endpoint that runs the
detector with onnxruntime (CUDA when present, the CPU otherwise)."""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error the node raises on purpose."""
