"""The single preprocessing function: every colour mode becomes correct RGB, bad input gets a French error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from atelier import preprocessing
from atelier.preprocessing import (
    MAX_JPEG_SCANS,
    CorruptImageError,
    DecodeBudget,
    EmptyImageError,
    ImageTooLargeError,
    TooManyScansError,
    UnsupportedImageFormatError,
    decode_cost,
    jpeg_scans,
    load_image,
    quick_to_decode,
    read_header,
    resize_image,
    to_model_input,
)
from tests.conftest import encode, mpo, repeated_scans_jpeg, sequential_repeated_scans_jpeg, textured_rgb

RED = (200, 30, 60)


def png_rgb16(width: int, height: int, rgb16: tuple[int, int, int]) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + struct.pack(">HHH", *rgb16) * width
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def centre(array: np.ndarray) -> np.ndarray:
    return array[array.shape[0] // 2, array.shape[1] // 2].astype(int)


def test_output_shape_and_dtype(jpeg_bytes):
    array = load_image(jpeg_bytes)
    assert array.shape == (64, 64, 3) and array.dtype == np.uint8


@pytest.mark.parametrize(
    "image,fmt",
    [
        (Image.new("RGB", (64, 64), RED).convert("CMYK"), "JPEG"),
        (Image.new("RGB", (64, 64), RED).convert("CMYK"), "TIFF"),
        (Image.new("RGB", (64, 64), RED).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        (Image.new("RGB", (64, 64), RED), "WEBP"),
        (Image.new("RGB", (64, 64), RED), "BMP"),
    ],
    ids=["cmyk-jpeg", "cmyk-tiff", "palette-png", "webp", "bmp"],
)
def test_colour_modes_become_the_right_rgb(image, fmt):
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    array = load_image(encode(image, fmt, **options))
    assert np.abs(centre(array) - RED).max() <= 8, "the colour must survive decoding (not black, not inverted)"


def test_cmyk_jpeg_is_not_black():
    cmyk = textured_rgb(colour=(40, 160, 70)).convert("CMYK")
    array = load_image(encode(cmyk, "JPEG", quality=95))
    assert array.mean() > 40
    assert array[..., 1].mean() > array[..., 0].mean() + 50, "green stays green"


def test_grey_and_16_bit_grey():
    grey = load_image(encode(Image.new("L", (64, 64), 90), "PNG"))
    assert (grey == 90).all()
    grey16 = Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16))
    assert grey16.mode == "I;16"
    array = load_image(encode(grey16, "PNG"))
    assert abs(int(array[0, 0, 0]) - round(40000 / 257)) <= 1, "16-bit values are scaled, not clipped to 255"
    assert (array[..., 0] == array[..., 1]).all()


def test_16_bit_rgb_png():
    array = load_image(png_rgb16(32, 32, (65535, 32896, 0)))
    assert np.abs(centre(array) - (255, 128, 0)).max() <= 1


def test_transparency_is_composited_over_black():
    rgba = Image.new("RGBA", (64, 64), (0, 200, 0, 128))
    array = load_image(encode(rgba, "PNG"))
    assert np.abs(centre(array) - (0, 100, 0)).max() <= 2
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([255, 255, 255] * 256)
    palette.info["transparency"] = 0
    assert load_image(encode(palette, "PNG", transparency=0)).max() == 0


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (80, 40), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 40, 40))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: red ends up on top
    array = load_image(encode(image, "JPEG", exif=exif, quality=95), size=40)
    assert array[5, 20, 0] > 200 and array[35, 20, 2] > 200


def test_resize_crops_the_centre_square_then_scales():
    image = Image.new("RGB", (300, 100), (0, 0, 255))
    image.paste((255, 0, 0), (100, 0, 200, 100))  # the centre square is red
    resized = resize_image(image, 64)
    assert resized.size == (64, 64)
    assert np.asarray(resized)[..., 0].mean() > 250
    big = load_image(encode(textured_rgb(256), "JPEG"))
    assert big.shape == (64, 64, 3)


def test_multiframe_tiff_uses_the_first_frame():
    frames = [Image.new("RGB", (64, 64), c) for c in (RED, (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    assert np.abs(centre(load_image(buffer.getvalue())) - RED).max() <= 2


def test_paths_and_file_objects(tmp_path, jpeg_bytes):
    path = tmp_path / "image.jpg"
    path.write_bytes(jpeg_bytes)
    assert (load_image(path) == load_image(jpeg_bytes)).all()
    assert (load_image(str(path)) == load_image(io.BytesIO(jpeg_bytes))).all()


@pytest.mark.parametrize(
    "data,error",
    [
        (b"", EmptyImageError),
        (b"bonjour, je ne suis pas une image", UnsupportedImageFormatError),
        (b"<html><body>pas une image</body></html>", UnsupportedImageFormatError),
        (b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", UnsupportedImageFormatError),
        (encode(Image.new("RGB", (8, 8)), "GIF"), UnsupportedImageFormatError),
        (encode(textured_rgb(128), "JPEG")[:600], CorruptImageError),
        (encode(textured_rgb(128), "PNG")[:900], CorruptImageError),
    ],
    ids=["empty", "text", "html", "svg", "gif", "truncated-jpeg", "truncated-png"],
)
def test_bad_input_gets_a_french_error(data, error):
    with pytest.raises(error) as caught:
        load_image(data)
    message = str(caught.value)
    assert any(word in message for word in ("vide", "Format", "illisible")), message
    assert isinstance(caught.value, ValueError)


def test_empty_file_on_disk(tmp_path):
    path = tmp_path / "vide.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="vide"):
        load_image(path)


def test_pixel_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("L", (6000, 6000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="6000×6000"):
        load_image(bomb)
    assert load_image(bomb, max_pixels=40_000_000).shape == (64, 64, 3)


def _with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """``jpeg`` with an application segment inserted after SOI (as EXIF and its thumbnail are)."""
    return jpeg[:2] + bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_jpeg_scans_are_counted_in_the_main_image_only():
    assert jpeg_scans(read_header(repeated_scans_jpeg(256, 10))) == 10  # libjpeg's usual progression
    assert jpeg_scans(read_header(repeated_scans_jpeg(256, 60))) == 60
    assert jpeg_scans(read_header(sequential_repeated_scans_jpeg(256, 5))) == 5  # one colour per scan
    assert jpeg_scans(read_header(encode(textured_rgb(64)))) == 1  # an ordinary JPEG
    assert jpeg_scans(read_header(encode(textured_rgb(64), "PNG"))) == 0
    # A thumbnail (a whole JPEG inside a segment before the image) and the other frames of an MPO do not count.
    with_thumbnail = _with_segment(encode(textured_rgb(256)), 0xE1, b"Exif\0\0" + repeated_scans_jpeg(64, 30))
    assert with_thumbnail.count(b"\xff\xda") == 31 and jpeg_scans(read_header(with_thumbnail)) == 1
    assert quick_to_decode(read_header(with_thumbnail), 256 * 256)
    two_frames = mpo(encode(textured_rgb(256)), textured_rgb(64))
    assert read_header(two_frames).format == "MPO" and jpeg_scans(read_header(two_frames)) == 1


def _comment(payload: bytes) -> bytes:
    return b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload


def _end_marker_in_a_comment() -> bytes:
    """An FF D9 (end of image) inside a comment after the first scan: libjpeg skips the comment, and so must
    the count."""
    data = repeated_scans_jpeg(4096, 1000)
    second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    return data[:second] + _comment(b"\xff\xd9") + data[second:]


def _stuffed_bytes_after_soi() -> bytes:
    """FF 00 and two bytes after SOI, which libjpeg skips; read as a segment length, they would jump past every
    real scan onto a fake one (in a comment) followed by a fake end of image."""
    data = repeated_scans_jpeg(2048, 1000)  # 40 KiB: the jump fits in two bytes
    body = data[2:-2]
    jump = 6 + len(body) + 4 + 8 - 4  # from the two bytes to the fake FF DA
    return b"\xff\xd8\xff\x00" + jump.to_bytes(2, "big") + body + _comment(bytes(8) + b"\xff\xda\xff\xd9") + b"\xff\xd9"


SCAN_BOMBS = {
    # 128 KiB, 11.7 s to decode without the check; the same scans in an MPO's first frame (10.3 s)
    "progressif": lambda: repeated_scans_jpeg(4096, 1000),
    "mpo": lambda: mpo(repeated_scans_jpeg(4096, 1000), textured_rgb(8)),
    # Pillow does not call it progressive: 10 KiB, 1.5 s to decode without the check
    "sequentiel": lambda: sequential_repeated_scans_jpeg(4096, 1000),
    # Found in review: files Pillow and libjpeg read, made to stop a naive count early.
    "fin-d-image-dans-un-commentaire": _end_marker_in_a_comment,
    "octets-ignores-apres-soi": _stuffed_bytes_after_soi,
    "tables-seules-avant-l-image": lambda: b"\xff\xd8\xff\xd9" + repeated_scans_jpeg(4096, 1000),
}


@pytest.mark.parametrize(
    ("side", "scans", "accepted"),
    [
        (256, 10, True),
        (256, MAX_JPEG_SCANS, True),
        (256, MAX_JPEG_SCANS + 1, False),  # few pixels, but too many scans
        (4096, MAX_JPEG_SCANS, True),  # exactly MAX_JPEG_SCAN_PIXELS: ≈ 0.8 s of decoding
        (8192, 10, True),  # an ordinary progressive JPEG of 67 Mpx
        (8192, 17, False),  # 17 scans × 67 Mpx > MAX_JPEG_SCAN_PIXELS
        (4096, 1000, False),
    ],
)
def test_progressive_jpeg_with_too_many_scans_is_refused_before_decoding(monkeypatch, side, scans, accepted):
    data = repeated_scans_jpeg(side, scans)
    if accepted:
        assert load_image(data).shape == (64, 64, 3)
        return
    _assert_refused_before_decoding(monkeypatch, data, scans)


@pytest.mark.parametrize("name", sorted(SCAN_BOMBS))
def test_every_kind_of_jpeg_with_too_many_scans_is_refused_before_decoding(monkeypatch, name):
    data = SCAN_BOMBS[name]()
    assert Image.open(io.BytesIO(data)).width >= 2048  # Pillow reads it: only the count refuses it
    _assert_refused_before_decoding(monkeypatch, data, 1000)


def _assert_refused_before_decoding(monkeypatch, data: bytes, scans: int) -> None:
    decoded = []
    monkeypatch.setattr(preprocessing, "_decode", lambda image: decoded.append(image))
    for call in (load_image, read_header):
        with pytest.raises(TooManyScansError, match=f"JPEG refusé : {scans} passes") as refused:
            call(data)
        assert isinstance(refused.value, ImageTooLargeError)  # the API answers 413
        assert "JPEG standard (non progressif), plus petite, ou en PNG" in str(refused.value)
    assert decoded == []


def test_an_mpo_is_reduced_on_load_like_a_jpeg():
    photo = mpo(encode(Image.new("RGB", (4000, 3000), RED)), textured_rgb(8))  # 12 Mpx > MAX_PIXELS
    assert read_header(photo).size == (500, 375)
    assert load_image(photo).shape == (64, 64, 3)


def test_a_multi_scan_jpeg_costs_its_full_size_in_the_decoding_budget():
    """libjpeg keeps the whole full-size image of a progressive (or one colour per scan) JPEG while decoding it."""
    progressive = read_header(repeated_scans_jpeg(2048, 10))
    assert progressive.size == (256, 256) and decode_cost(progressive) == 2048 * 2048
    sequential = read_header(encode(Image.new("RGB", (2048, 2048), RED)))
    assert sequential.size == (256, 256) and decode_cost(sequential) == 256 * 256
    budget = DecodeBudget(max_pixels=8_000_000, small_pixels=0)
    load_image(repeated_scans_jpeg(2048, 10), budget=budget)
    assert budget.peak == 2048 * 2048


def test_to_model_input():
    batch = to_model_input(np.zeros((64, 64, 3), np.uint8))
    assert batch.shape == (1, 64, 64, 3) and batch.dtype == np.float32
    with pytest.raises(ValueError, match="attendu"):
        to_model_input(np.zeros((64, 64), np.uint8))
