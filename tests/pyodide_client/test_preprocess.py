"""pyodide_client.preprocess against a straightforward numpy reference of the documented
letterbox into a W x H input: scale = min(W/w, H/h), scaled size round(w * scale) clamped to
[1, W] (and [1, H]), centred with offsets (W - scaled) // 2, nearest neighbour with pixel-centre
sampling, pad 114, CHW RGB."""

from __future__ import annotations

import numpy as np
import pytest

from pyodide_client import preprocess
from pyodide_client.preprocess import PAD_VALUE, Letterbox, letterbox_geometry


def reference_letterbox(
    rgba: bytes, width: int, height: int, size: int, input_height: int | None = None
) -> np.ndarray:
    in_w, in_h = size, size if input_height is None else input_height
    scale = min(in_w / width, in_h / height)
    scaled_w = max(1, min(in_w, round(width * scale)))
    scaled_h = max(1, min(in_h, round(height * scale)))
    left = (in_w - scaled_w) // 2
    top = (in_h - scaled_h) // 2
    image = np.frombuffer(rgba, dtype=np.uint8).reshape(height, width, 4)
    xs = np.minimum(width - 1, ((2 * np.arange(scaled_w) + 1) * width) // (2 * scaled_w))
    ys = np.minimum(height - 1, ((2 * np.arange(scaled_h) + 1) * height) // (2 * scaled_h))
    out = np.full((3, in_h, in_w), 114, dtype=np.uint8)
    out[:, top : top + scaled_h, left : left + scaled_w] = image[ys][:, xs, :3].transpose(2, 0, 1)
    return out


def random_rgba(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=width * height * 4, dtype=np.uint8).tobytes()


SIZES = [
    (1, 1, 416),
    (3, 5, 416),
    (641, 479, 416),
    (479, 641, 416),
    (1280, 720, 416),
    (416, 416, 416),
    (100, 1000, 416),
    (417, 1, 416),
    (640, 480, 320),
    (7, 3, 5),
]


@pytest.mark.parametrize(
    ("width", "height", "size"), SIZES, ids=[f"{w}x{h}->{s}" for w, h, s in SIZES]
)
def test_fill_matches_numpy_reference(width: int, height: int, size: int) -> None:
    # given random pixels of an odd frame size
    rgba = random_rgba(width, height, seed=width * 7919 + height)
    letterbox = Letterbox.for_frame(width, height, size)
    # when it is letterboxed
    out = letterbox.fill(rgba)
    # then it equals the reference, byte for byte
    assert letterbox.shape == (3, size, size)
    assert len(out) == 3 * size * size
    got = np.frombuffer(bytes(out), dtype=np.uint8).reshape(3, size, size)
    np.testing.assert_array_equal(got, reference_letterbox(rgba, width, height, size))


NON_SQUARE = [
    (640, 480, 640, 384),
    (480, 640, 640, 384),
    (1280, 720, 320, 256),
    (7, 3, 5, 9),
    (1, 1, 3, 2),
]


@pytest.mark.parametrize(
    ("width", "height", "in_w", "in_h"),
    NON_SQUARE,
    ids=[f"{w}x{h}->{iw}x{ih}" for w, h, iw, ih in NON_SQUARE],
)
def test_fill_a_non_square_input_matches_numpy_reference(
    width: int, height: int, in_w: int, in_h: int
) -> None:
    # given a model whose input is W x H, not square
    rgba = random_rgba(width, height, seed=width * 31 + height)
    letterbox = Letterbox.for_frame(width, height, in_w, in_h)
    # when a frame is letterboxed into it
    out = letterbox.fill(rgba)
    # then the tensor is [3, H, W] and equals the reference
    assert letterbox.shape == (3, in_h, in_w)
    got = np.frombuffer(bytes(out), dtype=np.uint8).reshape(3, in_h, in_w)
    np.testing.assert_array_equal(got, reference_letterbox(rgba, width, height, in_w, in_h))


def test_geometry_of_640x480_into_640x384_maps_back() -> None:
    g = letterbox_geometry(640, 480, 640, 384)
    assert g.scale == pytest.approx(0.8)
    assert (g.scaled_width_px, g.scaled_height_px) == (512, 384)
    assert (g.left_px, g.top_px) == (64, 0)
    assert g.to_frame(64 + 80, 40) == pytest.approx((100.0, 50.0))


def test_reuse_tells_input_sizes_apart() -> None:
    square = Letterbox.for_frame(640, 480, 384)
    assert Letterbox.reuse(square, 640, 480, 384, 384) is square
    assert Letterbox.reuse(square, 640, 480, 384, 256) is not square


def test_fill_tiny_example_by_hand() -> None:
    # given a 2x1 frame with a red and a blue pixel (alpha 7, which must be dropped) -> 4x4;
    # scale 2, scaled 4x2, left 0, top 1; columns read source 0, 0, 1, 1
    red, blue = (255, 0, 0, 7), (0, 0, 255, 7)
    rgba = bytes(red + blue)
    # when
    out = Letterbox.for_frame(2, 1, 4).fill(rgba)
    # then
    pad = [114] * 4
    expected = (
        pad + [255, 255, 0, 0] * 2 + pad  # R plane: rows 1 and 2 hold the image
        + pad + [0, 0, 0, 0] * 2 + pad  # G plane
        + pad + [0, 0, 255, 255] * 2 + pad  # B plane
    )  # fmt: skip
    assert list(out) == expected


def test_geometry_of_640x480_into_416() -> None:
    g = letterbox_geometry(640, 480, 416)
    assert g.scale == pytest.approx(0.65)
    assert (g.scaled_width_px, g.scaled_height_px) == (416, 312)
    assert (g.left_px, g.top_px) == (0, 52)
    assert (g.frame_width_px, g.frame_height_px) == (640, 480)
    assert (g.input_width_px, g.input_height_px) == (416, 416)


def test_geometry_of_portrait_frame_is_centred_horizontally() -> None:
    g = letterbox_geometry(480, 640, 416)
    assert (g.scaled_width_px, g.scaled_height_px) == (312, 416)
    assert (g.left_px, g.top_px) == (52, 0)


def test_geometry_clamps_a_thin_frame_to_one_pixel() -> None:
    # the one row scales to 416 / 100000 of a pixel, which rounds to 0 and is clamped to 1
    g = letterbox_geometry(100000, 1, 416)
    assert (g.scaled_width_px, g.scaled_height_px) == (416, 1)
    assert (g.left_px, g.top_px) == (0, 207)


@pytest.mark.parametrize(
    ("width", "height", "size"), [(0, 10, 416), (10, 0, 416), (-1, 10, 416), (10, 10, 0)]
)
def test_geometry_rejects_non_positive_sizes(width: int, height: int, size: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        letterbox_geometry(width, height, size)


def test_second_fill_overwrites_the_first() -> None:
    # given a letterbox that already filled one frame
    letterbox = Letterbox.for_frame(641, 479, 416)
    first_rgba = random_rgba(641, 479, seed=1)
    second_rgba = random_rgba(641, 479, seed=2)
    first = letterbox.fill(first_rgba)
    first_copy = bytes(first)
    # when it fills another
    second = letterbox.fill(second_rgba)
    # then the same buffer now holds the second frame, padding intact
    assert second is first
    expected = reference_letterbox(second_rgba, 641, 479, 416)
    np.testing.assert_array_equal(
        np.frombuffer(bytes(second), dtype=np.uint8).reshape(3, 416, 416), expected
    )
    assert bytes(second) != first_copy


def test_fill_after_a_white_frame_keeps_padding_grey() -> None:
    letterbox = Letterbox.for_frame(4, 2, 4)
    letterbox.fill(b"\xff" * 32)
    out = letterbox.fill(b"\x00" * 32)
    plane = np.frombuffer(bytes(out), dtype=np.uint8).reshape(3, 4, 4)
    assert (plane[:, 0] == PAD_VALUE).all()
    assert (plane[:, 3] == PAD_VALUE).all()
    assert (plane[:, 1:3] == 0).all()


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda t: t.__name__)
def test_fill_accepts_any_buffer(wrap: type) -> None:
    rgba = random_rgba(3, 5, seed=3)
    out = Letterbox.for_frame(3, 5, 16).fill(wrap(rgba))
    np.testing.assert_array_equal(
        np.frombuffer(bytes(out), dtype=np.uint8).reshape(3, 16, 16),
        reference_letterbox(rgba, 3, 5, 16),
    )


@pytest.mark.parametrize("delta", [-1, 1, -4])
def test_fill_rejects_the_wrong_byte_count(delta: int) -> None:
    letterbox = Letterbox.for_frame(641, 479, 416)
    expected = 641 * 479 * 4
    with pytest.raises(ValueError, match="RGBA frame of") as info:
        letterbox.fill(bytes(expected + delta))
    message = str(info.value)
    assert "641x479" in message
    assert f"needs {expected} bytes" in message
    assert f"got {expected + delta}" in message


def test_to_frame_maps_corners_and_centre_back() -> None:
    g = letterbox_geometry(640, 480, 416)  # scale 0.65, top 52
    assert g.to_frame(0, 52) == pytest.approx((0.0, 0.0))
    assert g.to_frame(416, 364) == pytest.approx((640.0, 480.0))
    assert g.to_frame(208, 208) == pytest.approx((320.0, 240.0))
    assert g.to_frame(65, 117) == pytest.approx((100.0, 100.0))


def test_to_frame_maps_corners_back_for_a_portrait_frame() -> None:
    g = letterbox_geometry(480, 640, 416)  # scale 0.65, left 52
    assert g.to_frame(52, 0) == pytest.approx((0.0, 0.0))
    assert g.to_frame(364, 416) == pytest.approx((480.0, 640.0))


def test_to_frame_clamps_points_in_the_padding() -> None:
    g = letterbox_geometry(640, 480, 416)
    assert g.to_frame(-10, 0) == (0.0, 0.0)  # above the image, left of the input
    assert g.to_frame(416, 400) == (640.0, 480.0)  # below the image
    assert g.to_frame(500, 10) == (640.0, 0.0)


def test_all_names_exist() -> None:
    for name in preprocess.__all__:
        assert hasattr(preprocess, name), name
