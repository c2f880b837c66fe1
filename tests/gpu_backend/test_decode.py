"""gpu_backend.decode: IMAGE payloads -> letterboxed model input, and every refusal."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image as PILImage

from gpu_backend.decode import MAX_JPEG_SCANS, Decoder
from pyodide_client.preprocess import PAD_VALUE, letterbox_geometry
from pyodide_client.protocol import ErrorCode, FrameEncoding, Image, ProtocolError
from tests.jpeg_scans import progressive_jpeg, scan_bomb

SIZE = 416
FORMATS = {FrameEncoding.JPEG: "JPEG", FrameEncoding.WEBP: "WEBP"}


def picture() -> tuple[npt.NDArray[np.uint8], Image]:
    """chelsea (451x300, a cat) scaled into a 416 letterbox: 416x277 at (0, 69)."""
    from skimage import data

    rgb = data.chelsea()
    g = letterbox_geometry(rgb.shape[1], rgb.shape[0], SIZE)
    scaled = PILImage.fromarray(rgb).resize((g.scaled_width_px, g.scaled_height_px))
    template = Image(1, 0.0, FrameEncoding.JPEG, *scaled.size, g.left_px, g.top_px, b"")
    return np.asarray(scaled), template


def encode(pixels: npt.NDArray[np.uint8], encoding: FrameEncoding, quality: int = 90) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, FORMATS[encoding], quality=quality)
    return out.getvalue()


def image(template: Image, encoding: FrameEncoding, payload: bytes, **changes: int) -> Image:
    fields = {
        "width_px": template.width_px,
        "height_px": template.height_px,
        "left_px": template.left_px,
        "top_px": template.top_px,
        **changes,
    }
    return Image(frame_id=5, capture_ms=1.0, encoding=encoding, payload=payload, **fields)


def refusal(message: Image, decoder: Decoder | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        (decoder or Decoder(SIZE)).decode(message)
    assert info.value.frame_id == 5
    return info.value


@pytest.mark.parametrize("encoding", [FrameEncoding.JPEG, FrameEncoding.WEBP])
def test_decodes_the_picture_into_its_place_in_the_padded_input(encoding: FrameEncoding) -> None:
    pixels, template = picture()
    decoded = Decoder(SIZE).decode(image(template, encoding, encode(pixels, encoding)))
    tensor = decoded.tensor
    assert tensor.shape == (3, SIZE, SIZE)
    assert tensor.dtype == np.uint8
    top, h = template.top_px, template.height_px
    assert (tensor[:, :top] == PAD_VALUE).all()
    assert (tensor[:, top + h :] == PAD_VALUE).all()
    content = tensor[:, top : top + h].transpose(1, 2, 0).astype(np.int16)
    assert np.abs(content - pixels).mean() < 4  # lossy at quality 90, but the same picture
    assert decoded.decode_ms >= 0


def test_pads_left_and_right_of_a_tall_picture() -> None:
    pixels = np.full((416, 312, 3), 7, np.uint8)
    message = image(
        Image(1, 0.0, FrameEncoding.JPEG, 312, 416, 52, 0, b""),
        FrameEncoding.JPEG,
        encode(pixels, FrameEncoding.JPEG),
    )
    tensor = Decoder(SIZE).decode(message).tensor
    assert (tensor[:, :, :52] == PAD_VALUE).all()
    assert (tensor[:, :, 52 + 312 :] == PAD_VALUE).all()
    assert abs(int(tensor[0, 200, 200]) - 7) <= 2


@pytest.mark.parametrize("encoding", [FrameEncoding.JPEG, FrameEncoding.WEBP])
def test_garbage_is_image_invalid(encoding: FrameEncoding) -> None:
    _, template = picture()
    err = refusal(image(template, encoding, b"this is not a picture at all"))
    assert err.code is ErrorCode.IMAGE_INVALID
    kind = "JPEG" if encoding is FrameEncoding.JPEG else "WebP"
    assert err.message.startswith(f"frame 5: the payload is not a valid {kind} picture (")
    # issue 17: Pillow's words named "<_io.BytesIO object at 0x7f...>"
    assert "0x" not in err.message
    assert " object" not in err.message


@pytest.mark.parametrize("encoding", [FrameEncoding.JPEG, FrameEncoding.WEBP])
def test_truncated_picture_is_image_invalid(encoding: FrameEncoding) -> None:
    pixels, template = picture()
    payload = encode(pixels, encoding)
    err = refusal(image(template, encoding, payload[: len(payload) // 2]))
    assert err.code is ErrorCode.IMAGE_INVALID


@pytest.mark.parametrize("encoding", [FrameEncoding.JPEG, FrameEncoding.WEBP])
def test_webp_sent_as_jpeg_and_back_is_image_invalid(encoding: FrameEncoding) -> None:
    pixels, template = picture()
    other = FrameEncoding.WEBP if encoding is FrameEncoding.JPEG else FrameEncoding.JPEG
    err = refusal(image(template, encoding, encode(pixels, other)))
    assert err.code is ErrorCode.IMAGE_INVALID


@pytest.mark.parametrize("encoding", [FrameEncoding.JPEG, FrameEncoding.WEBP])
def test_wrong_declared_size_is_image_invalid(encoding: FrameEncoding) -> None:
    pixels, template = picture()
    err = refusal(image(template, encoding, encode(pixels, encoding), height_px=300, top_px=0))
    assert err.code is ErrorCode.IMAGE_INVALID
    kind = "JPEG" if encoding is FrameEncoding.JPEG else "WebP"
    assert err.message == f"frame 5: declared 416x300, but the {kind} is 416x277"


def test_declared_geometry_outside_the_model_input_is_too_large() -> None:
    pixels, template = picture()
    payload = encode(pixels, FrameEncoding.JPEG)
    err = refusal(image(template, FrameEncoding.JPEG, payload, top_px=200))
    assert err.code is ErrorCode.IMAGE_TOO_LARGE
    assert "must fit the 416x416 model input" in err.message


def jpeg_bomb() -> bytes:
    """A real 8x8 JPEG whose frame header (SOF0) claims 60000 x 50000 pixels."""
    payload = bytearray(encode(np.zeros((8, 8, 3), np.uint8), FrameEncoding.JPEG))
    sof = payload.index(b"\xff\xc0")
    payload[sof + 5 : sof + 9] = (50000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    return bytes(payload)


def webp_bomb(side_px: int = 5000) -> bytes:
    """A real 8x8 lossy WebP whose VP8 frame header claims side x side pixels."""
    payload = bytearray(encode(np.zeros((8, 8, 3), np.uint8), FrameEncoding.WEBP))
    assert payload[12:16] == b"VP8 "
    payload[26:30] = side_px.to_bytes(2, "little") * 2
    return bytes(payload)


@pytest.mark.parametrize(
    ("encoding", "payload", "claimed"),
    [
        (FrameEncoding.JPEG, jpeg_bomb(), "60000x50000"),
        (FrameEncoding.WEBP, webp_bomb(), "5000x5000"),
    ],
    ids=["jpeg", "webp"],
)
def test_decompression_bomb_is_refused_from_its_header(
    encoding: FrameEncoding, payload: bytes, claimed: str
) -> None:
    # declared small, so the message passes the geometry check; the header tells the truth
    message = Image(5, 1.0, encoding, 8, 8, 0, 0, payload)
    err = refusal(message)
    assert err.code is ErrorCode.IMAGE_TOO_LARGE
    kind = "JPEG" if encoding is FrameEncoding.JPEG else "WebP"
    assert err.message == (
        f"frame 5: the {kind} says it is {claimed} pixels; at most 416x416 fit the model "
        "input (declared 8x8)"
    )


def test_decoder_accepts_a_view_payload_as_parsed_from_the_wire() -> None:
    pixels, template = picture()
    payload = encode(pixels, FrameEncoding.JPEG)
    message = image(template, FrameEncoding.JPEG, memoryview(bytearray(payload)))  # type: ignore[arg-type]
    assert Decoder(SIZE).decode(message).tensor.shape == (3, SIZE, SIZE)


def test_decoder_needs_a_positive_size() -> None:
    with pytest.raises(ValueError, match="input size must be positive, got 0x0"):
        Decoder(0)


def test_webp_beyond_pillows_own_limit_is_too_large_too() -> None:
    err = refusal(Image(5, 1.0, FrameEncoding.WEBP, 8, 8, 0, 0, webp_bomb(16383)))
    assert err.code is ErrorCode.IMAGE_TOO_LARGE
    assert err.message == (
        "frame 5: the WebP claims more pixels than Pillow will decode; at most 416x416 fit "
        "the model input (declared 8x8)"
    )


def test_a_non_square_model_input() -> None:
    pixels = np.full((240, 320, 3), 9, np.uint8)  # 320x240 into a 320x256 input
    message = Image(5, 1.0, FrameEncoding.JPEG, 320, 240, 0, 8, encode(pixels, FrameEncoding.JPEG))
    tensor = Decoder(320, 256).decode(message).tensor
    assert tensor.shape == (3, 256, 320)
    assert (tensor[:, :8] == PAD_VALUE).all()
    assert (tensor[:, 248:] == PAD_VALUE).all()
    err = refusal(Image(5, 1.0, FrameEncoding.JPEG, 320, 240, 0, 20, b"x"), Decoder(320, 256))
    assert err.message.endswith("must fit the 320x256 model input, but reaches (320, 260)")


def square(payload: bytes) -> Image:
    return Image(5, 1.0, FrameEncoding.JPEG, SIZE, SIZE, 0, 0, payload)


def test_a_progressive_jpeg_decodes() -> None:
    decoded = Decoder(SIZE).decode(square(progressive_jpeg()))
    assert decoded.tensor.shape == (3, SIZE, SIZE)


def test_the_progressive_scan_bomb_is_refused_before_decoding() -> None:
    # issue 17: 170,000 tiny scans, 3.6 s of CPU; 2,000 make the point here
    bomb = scan_bomb(2000)
    err = refusal(square(bomb))
    assert err.code is ErrorCode.IMAGE_INVALID
    assert err.message == (
        f"frame 5: the JPEG has more than {MAX_JPEG_SCANS} scans (SOS markers), the most "
        "this node decodes (a baseline JPEG has 1, a progressive one about 10)"
    )


def test_the_scan_limit_is_exact_and_counts_a_view_of_the_wire_too() -> None:
    base_scans = progressive_jpeg().count(b"\xff\xda")
    decoder = Decoder(SIZE, max_jpeg_scans=base_scans + 2)
    at_limit = scan_bomb(2)
    assert decoder.decode(square(at_limit)).tensor.shape == (3, SIZE, SIZE)
    over = memoryview(b"xx" + scan_bomb(3))[2:]  # as parsed from a message: a view
    assert refusal(square(over), decoder).code is ErrorCode.IMAGE_INVALID


def test_a_scan_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_jpeg_scans must be at least 1, got 0"):
        Decoder(SIZE, max_jpeg_scans=0)
