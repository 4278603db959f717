"""The image reader: every supported input, every colour oddity, every way a file can be bad.

Inputs are made here, small, with Pillow or by hand (PNG chunks, TIFF tags, ICC profiles)
where Pillow cannot write the case, so each test states exactly what the file holds.
"""

from __future__ import annotations

import functools
import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from layerlift.inference.errors import (
    CorruptImage,
    ImageTooLarge,
    InputError,
    LayerLiftError,
    UnsupportedFormat,
)
from layerlift.inference.formats import MAX_PIXELS, read_image, read_image_bytes, write_stack
from layerlift.inference.formats.psd import build_document
from layerlift.inference.layers import Layer, LayerStack
from PIL import Image, ImageFile


def _rgba(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    pixels[0, 0, 3] = 0
    pixels[0, 1, 3] = 255
    return pixels


def _save(tmp_path: Path, name: str, image: Image.Image, **params) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


# --- hand-made files --------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16(samples: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG, which Pillow cannot write for RGB(A)."""
    h, w = samples.shape[:2]
    big = samples.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + big[row].tobytes() for row in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _png_bomb_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _tiff16_rgb(samples: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF (Pillow only writes 16-bit gray)."""
    h, w = samples.shape[:2]
    pixels = samples.astype("<u2").tobytes()
    tags = [  # (tag, type, count, value): type 3 = SHORT, 4 = LONG
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, 3, None),  # BitsPerSample -> offset of [16, 16, 16]
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, None),  # StripOffsets -> pixel data
        (277, 3, 1, 3),
        (278, 4, 1, h),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    bits_at = 8 + ifd_size
    data_at = bits_at + 6
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        if tag == 258:
            value = bits_at
        elif tag == 273:
            value = data_at
        if kind == 3 and count == 1:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + pixels


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _icc(space: bytes, description: str, tags: list[tuple[bytes, bytes]]) -> bytes:
    """A minimal ICC v2 display profile: header, tag table, tags."""
    text = description.encode("ascii") + b"\x00"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8) + bytes(70)
    tags = [(b"desc", desc), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)), *tags]
    table_end = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        body += bytes(-(table_end + len(body)) % 4)
        table += signature + struct.pack(">II", table_end + len(body), len(data))
        body += data
    header = struct.pack(
        ">I4sI4s4s4s", 128 + len(table) + len(body), b"none", 0x02100000, b"mntr", space, b"XYZ "
    )
    header += bytes(12) + b"acsp" + bytes(24)
    header += bytes(4) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    return header + bytes(128 - len(header)) + table + body


LINEAR_CURVE = b"curv" + bytes(4) + struct.pack(">I", 0)  # no points: gamma 1.0


def _linear_rgb_icc() -> bytes:
    """sRGB primaries with a linear tone curve: mid grey 128 must become about 188 in sRGB."""
    return _icc(
        b"RGB ",
        "Linear test RGB",
        [
            (b"rXYZ", _xyz(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", _xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", _xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", LINEAR_CURVE),
            (b"gTRC", LINEAR_CURVE),
            (b"bTRC", LINEAR_CURVE),
        ],
    )


def _linear_gray_icc() -> bytes:
    return _icc(b"GRAY", "Linear test gray", [(b"kTRC", LINEAR_CURVE)])


# --- PNG in all its pixel formats -------------------------------------------------------


def test_png_rgba_is_exact(tmp_path):
    pixels = _rgba()
    loaded = read_image(_save(tmp_path, "a.png", Image.fromarray(pixels, "RGBA")))
    assert loaded.format == "PNG" and loaded.path == tmp_path / "a.png"
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.flags.c_contiguous
    assert loaded.pixels.flags.writeable
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.warnings == [] and (loaded.width, loaded.height) == (8, 6)


def test_png_rgb_gets_opaque_alpha(tmp_path):
    rgb = _rgba()[..., :3]
    loaded = read_image(_save(tmp_path, "a.png", Image.fromarray(rgb, "RGB")))
    np.testing.assert_array_equal(loaded.pixels[..., :3], rgb)
    assert (loaded.pixels[..., 3] == 255).all()


def test_png_grayscale_and_palette(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    loaded = read_image(_save(tmp_path, "l.png", Image.fromarray(gray, "L")))
    for channel in range(3):
        np.testing.assert_array_equal(loaded.pixels[..., channel], gray)
    assert loaded.source_mode == "L"

    palette_image = Image.new("P", (4, 2))
    palette_image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_image.putpixel((1, 0), 1)
    palette_image.info["transparency"] = 0
    loaded = read_image(_save(tmp_path, "p.png", palette_image, transparency=0))
    assert tuple(loaded.pixels[0, 1]) == (0, 255, 0, 255)
    assert loaded.pixels[0, 0, 3] == 0


def test_png_16_bit_rgb_and_rgba_are_scaled_with_a_warning(tmp_path):
    samples = np.zeros((2, 3, 4), np.uint16)
    samples[..., 0] = 65535
    samples[..., 1] = 257 * 100
    samples[..., 3] = 257 * 200
    loaded = read_image_bytes(_png16(samples, 6), name="deep.png")
    assert tuple(loaded.pixels[0, 0]) == (255, 100, 0, 200)
    assert any("8 bits" in warning for warning in loaded.warnings)
    loaded = read_image_bytes(_png16(samples[..., :3], 2), name="deep-rgb.png")
    assert tuple(loaded.pixels[1, 2]) == (255, 100, 0, 255)
    assert any("8 bits" in warning for warning in loaded.warnings)


def test_png_16_bit_gray_is_scaled_not_clipped(tmp_path):
    gray = np.array([[0, 257 * 64, 65535]], np.uint16)
    loaded = read_image_bytes(_png16(gray[..., None], 0), name="gray16.png")
    # Pillow's own convert() would clip everything above 255 to white.
    np.testing.assert_array_equal(loaded.pixels[0, :, 0], [0, 64, 255])
    assert any("8 bits" in warning for warning in loaded.warnings)


# --- other formats ----------------------------------------------------------------------


def test_jpeg_is_read_close_to_its_source(tmp_path):
    smooth = np.zeros((16, 16, 3), np.uint8)
    smooth[..., 0] = 200
    smooth[..., 1] = np.linspace(0, 255, 16, dtype=np.uint8)[None, :]
    path = _save(tmp_path, "a.jpg", Image.fromarray(smooth, "RGB"), quality=95)
    loaded = read_image(path)
    assert loaded.format == "JPEG"
    assert np.abs(loaded.pixels[..., :3].astype(int) - smooth).mean() < 3
    assert (loaded.pixels[..., 3] == 255).all()


def test_webp_tiff_bmp_are_exact(tmp_path):
    pixels = _rgba()
    image = Image.fromarray(pixels, "RGBA")
    for name, params, fmt in [
        ("a.webp", {"lossless": True, "exact": True}, "WebP"),
        ("a.tif", {}, "TIFF"),
    ]:
        loaded = read_image(_save(tmp_path, name, image, **params))
        assert loaded.format == fmt
        np.testing.assert_array_equal(loaded.pixels, pixels, err_msg=name)
    loaded = read_image(_save(tmp_path, "a.bmp", image.convert("RGB")))
    assert loaded.format == "BMP"
    np.testing.assert_array_equal(loaded.pixels[..., :3], pixels[..., :3])


def test_tiff_16_bit_gray_and_rgb(tmp_path):
    gray = np.array([[0, 257 * 10, 65535]], np.uint16)
    loaded = read_image(_save(tmp_path, "g.tif", Image.fromarray(gray)))
    np.testing.assert_array_equal(loaded.pixels[0, :, 1], [0, 10, 255])
    assert any("8 bits" in warning for warning in loaded.warnings)

    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[..., 2] = 65535
    rgb[..., 1] = 257 * 30
    loaded = read_image_bytes(_tiff16_rgb(rgb), name="rgb16.tif")
    assert loaded.format == "TIFF"
    assert tuple(loaded.pixels[1, 1]) == (0, 30, 255, 255)
    assert any("8 bits" in warning for warning in loaded.warnings)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    loaded = read_image(path)
    assert loaded.format == "GIF"
    assert tuple(loaded.pixels[0, 0]) == (255, 0, 0, 255)
    assert any("2 frames" in warning for warning in loaded.warnings)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_with_a_warning(tmp_path, fmt):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure magenta+yellow ink: red
    path = _save(tmp_path, f"print.{fmt.lower()}", cmyk, format=fmt)
    loaded = read_image(path)
    assert loaded.source_mode == "CMYK"
    red, green, blue, alpha = (int(v) for v in loaded.pixels[4, 4])
    assert red > 200 and green < 60 and blue < 60 and alpha == 255
    assert any("CMYK" in warning for warning in loaded.warnings)


# --- colour profiles and orientation ----------------------------------------------------


def test_non_srgb_profile_is_converted_to_srgb(tmp_path):
    image = Image.new("RGBA", (4, 4), (128, 128, 128, 77))
    path = _save(tmp_path, "linear.png", image, icc_profile=_linear_rgb_icc())
    loaded = read_image(path)
    red, green, blue, alpha = (int(v) for v in loaded.pixels[0, 0])
    assert abs(red - 188) <= 2 and red == green == blue
    assert alpha == 77
    assert any("Linear test RGB" in warning for warning in loaded.warnings)


def test_gray_profile_is_converted_to_srgb(tmp_path):
    path = _save(tmp_path, "g.png", Image.new("L", (2, 2), 128), icc_profile=_linear_gray_icc())
    loaded = read_image(path)
    assert abs(int(loaded.pixels[0, 0, 0]) - 188) <= 2
    assert any("Linear test gray" in warning for warning in loaded.warnings)


def test_srgb_profile_changes_nothing(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = _rgba()
    path = _save(tmp_path, "s.png", Image.fromarray(pixels, "RGBA"), icc_profile=srgb)
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.warnings == []


def test_unusable_profile_warns_and_keeps_the_pixels(tmp_path):
    pixels = _rgba()
    path = _save(tmp_path, "bad.png", Image.fromarray(pixels, "RGBA"), icc_profile=b"garbage")
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert any("profile" in warning for warning in loaded.warnings)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    path = _save(tmp_path, "rot.png", Image.fromarray(pixels, "RGB"), exif=exif)
    loaded = read_image(path)
    assert loaded.pixels.shape == (3, 2, 4)
    assert tuple(loaded.pixels[0, 1, :3]) == (255, 0, 0)


# --- PSD and ORA inputs -----------------------------------------------------------------


def test_psd_is_flattened_to_its_composite(tmp_path):
    bottom = np.zeros((10, 12, 4), np.uint8)
    bottom[...] = (0, 0, 255, 255)
    top = np.zeros((4, 4, 4), np.uint8)
    top[...] = (255, 0, 0, 128)
    stack = LayerStack(12, 10, [Layer("bg", bottom), Layer("red", top, 2, 3)])
    write_stack(stack, tmp_path / "doc.psd")
    loaded = read_image(tmp_path / "doc.psd")
    assert loaded.format == "PSD"
    assert np.abs(loaded.pixels.astype(int) - stack.composite()).max() <= 1


def test_psd_made_by_psd_tools_without_our_composite(tmp_path):
    """A document with layers and no stored preview is composited from its layers."""
    from psd_tools import PSDImage

    document = PSDImage.new("RGB", (6, 5), color=(0, 255, 0))
    layer = np.zeros((2, 2, 4), np.uint8)
    layer[...] = (255, 0, 0, 255)
    document.create_pixel_layer_from_array(layer, name="red", top=1, left=1)
    document.save(tmp_path / "doc.psd")
    loaded = read_image(tmp_path / "doc.psd")
    assert tuple(loaded.pixels[1, 1]) == (255, 0, 0, 255)
    assert loaded.pixels.shape == (5, 6, 4)


# --- bad input: every failure is coded and names the file --------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file") as caught:
        read_image(tmp_path / "nope.png")
    assert caught.value.code == "bad_input" and "nope.png" in caught.value.message


def test_folder_is_not_a_picture(tmp_path):
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(CorruptImage, match="empty") as caught:
        read_image(path)
    assert caught.value.code == "corrupt_image" and "empty.png" in caught.value.message


def test_truncated_png(tmp_path):
    data = io.BytesIO()
    Image.fromarray(_rgba(64, 64), "RGBA").save(data, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(CorruptImage, match=r"cut\.png"):
        read_image(path)


def test_random_bytes_named_png(tmp_path):
    path = tmp_path / "random.png"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptImage, match="named like a PNG"):
        read_image(path)


def test_text_and_pdf_are_unsupported(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Dear designer,\nplease decompose this.\n")
    with pytest.raises(UnsupportedFormat, match="text file") as caught:
        read_image(text)
    assert caught.value.code == "unsupported_format"
    assert "PNG" in caught.value.message and "notes.txt" in caught.value.message
    pdf = tmp_path / "slides.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    with pytest.raises(UnsupportedFormat, match="PDF"):
        read_image(pdf)


def test_huge_png_header_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bomb_header(30000, 30000))

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the reader started decoding a refused image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as caught:
        read_image(path)
    assert time.perf_counter() - started < 0.5
    message = caught.value.message
    assert caught.value.code == "image_too_large"
    limit = f"{MAX_PIXELS / 1e6:.1f} megapixels"
    assert "30000 x 30000" in message and limit in message and "bomb.png" in message


def test_huge_psd_header_is_refused_before_parsing():
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 30000, 30000, 8, 3) + bytes(64)
    with pytest.raises(ImageTooLarge, match="30000 x 30000"):
        read_image_bytes(header, name="huge.psd")


def test_pixel_limit_is_the_callers(tmp_path):
    path = _save(tmp_path, "a.webp", Image.new("RGB", (100, 60)), lossless=True)
    with pytest.raises(ImageTooLarge, match="100 x 60"):
        read_image(path, max_pixels=5000)
    assert read_image(path, max_pixels=6000).pixels.shape == (60, 100, 4)


def test_pillow_bomb_error_becomes_image_too_large(tmp_path):
    """A BMP header beyond Pillow's own guard: its DecompressionBombError is translated."""
    header = b"BM" + struct.pack("<IHHI", 0, 0, 0, 54)
    header += struct.pack("<IiiHHIIiiII", 40, 40000, 40000, 1, 24, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ImageTooLarge, match="megapixels"):
        read_image_bytes(header + bytes(64), name="huge.bmp")
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS >= MAX_PIXELS


def test_byte_limit(tmp_path):
    path = _save(tmp_path, "a.png", Image.fromarray(_rgba(32, 32), "RGBA"))
    with pytest.raises(ImageTooLarge, match="limit"):
        read_image(path, max_bytes=100)
    with pytest.raises(ImageTooLarge):
        read_image_bytes(path.read_bytes(), max_bytes=100)


def test_read_image_bytes(tmp_path):
    buffer = io.BytesIO()
    pixels = _rgba()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    loaded = read_image_bytes(buffer.getvalue(), name="frame 3")
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.path is None
    with pytest.raises(CorruptImage, match="frame 3"):
        read_image_bytes(b"", name="frame 3")
    with pytest.raises(CorruptImage):
        read_image_bytes(b"\x00" * 100, name="upload.png")
    with pytest.raises(UnsupportedFormat):
        read_image_bytes(b"\x00" * 100, name="upload.bin")


@functools.cache
def _samples() -> dict[str, bytes]:
    image = Image.fromarray(_rgba(24, 24), "RGBA")
    out = {}
    for fmt, params in [
        ("PNG", {}),
        ("JPEG", {}),
        ("WEBP", {}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("GIF", {}),
        ("BMP", {}),
    ]:
        buffer = io.BytesIO()
        source = image if fmt in ("PNG", "WEBP", "TIFF") else image.convert("RGB")
        source.save(buffer, format=fmt, **params)
        out[fmt] = buffer.getvalue()
    psd = io.BytesIO()
    build_document(LayerStack(24, 24, [Layer("a", _rgba(24, 24))]))._record.write(psd)
    out["PSD"] = psd.getvalue()
    return out


# Pillow's TIFF parser warns about each damaged tag it skips; the result is what counts.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP", "PSD"])
def test_damaged_files_only_raise_coded_errors(fmt):
    """Cut and corrupted versions of every format: a coded error or a picture, never a crash."""
    data = _samples()[fmt]
    rng = np.random.default_rng(3)
    variants = [data[:cut] for cut in (1, 8, 20, 40, len(data) // 3, len(data) - 9)]
    for _ in range(6):
        flipped = bytearray(data)
        for index in rng.integers(8, len(data), 12):
            flipped[index] ^= 0xFF
        variants.append(bytes(flipped))
    for variant in variants:
        try:
            loaded = read_image_bytes(variant, name=f"sample.{fmt.lower()}")
        except LayerLiftError as error:
            assert error.code in ("corrupt_image", "unsupported_format", "image_too_large")
            assert f"sample.{fmt.lower()}" in error.message
        else:
            assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape[2] == 4
