"""What a FRAME or IMAGE message gives the model: the one place that turns a frame
message into the batcher's input, checked against the model's [3, H, W] input shape.

A raw FRAME's uint8 tensor is checked (dtype and shape) and viewed without a copy. An
IMAGE's geometry is checked here and the IMAGE itself returned: its pixels are decoded
later, off the event loop and fairly between connections (``decode_queue``). Both raise
``ProtocolError`` (WRONG_SHAPE, WRONG_DTYPE, IMAGE_TOO_LARGE, ...), which the connection
answers with an ERROR for that frame.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pyodide_client.protocol import Dtype, Frame, Image

__all__ = ["frame_input"]


def frame_input(frame: Frame | Image, shape: tuple[int, int, int]) -> npt.NDArray[np.uint8] | Image:
    if isinstance(frame, Image):
        frame.check(shape[2], shape[1])
        return frame
    frame.check(Dtype.UINT8, shape)
    return np.frombuffer(frame.payload, dtype=np.uint8).reshape(shape)
