"""Read any picture a user may hand us into straight-alpha sRGB RGBA8, safely.

Inputs come from a file dialog, a drag and drop, the CLI, or a socket, so they can be
anything: a PDF named `.png`, a truncated download, a 30000 x 30000 PNG that inflates to
3.6 GB. The reader therefore (1) looks at the magic bytes before choosing a decoder,
(2) refuses oversized files and pictures from their headers, before any pixel buffer is
allocated, and (3) turns every decoder failure into a `LayerLiftError` with a stable code
and a message that names the file, so no Pillow or psd-tools exception reaches a user.

Pillow's own decompression-bomb guard stays on as a second line: its threshold is raised
(never lowered) to our limit so it does not warn about pictures we accept, and its
`DecompressionBombError` becomes `ImageTooLarge`.
"""

from __future__ import annotations

import io
import os
import re
import warnings as pywarnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from layerlift.inference.errors import (
    CorruptImage,
    ImageTooLarge,
    InputError,
    LayerLiftError,
    UnsupportedFormat,
)
from layerlift.inference.formats import sniff
from layerlift.inference.formats.colour import raw_is_wide, to_srgb_rgba
from layerlift.inference.formats.liblog import library_warnings
from layerlift.inference.formats.safety import open_regular, read_error
from layerlift.inference.input_check import MAX_PIXELS, check_size, megapixels, too_large
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 1 << 30
HEAD_BYTES = 64

# Pillow plugins we let Image.open try; anything else is refused before decoding.
_PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP")  # JPEG also opens MPO
_FORMAT_NAMES = {"MPO": "JPEG", "WEBP": "WebP"}


@dataclass
class LoadedImage:
    """A decoded picture: (h, w, 4) uint8 straight-alpha sRGB plus how it got that way."""

    pixels: np.ndarray
    format: str
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    source_mode: str = ""

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def _bytes_text(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


_bomb_warning_quiet = False


def _align_pillow_guard(max_pixels: int) -> None:
    """Keep Pillow's process-wide bomb threshold at or above ours (it only ever rises).

    Pillow also *warns* (a bare line on stderr) between its threshold and twice it; every
    size we accept is below the threshold and every larger one is refused by us with a
    sentence, so that warning only ever duplicates our refusal and is silenced.
    """
    global _bomb_warning_quiet
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    if not _bomb_warning_quiet:
        pywarnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _bomb_warning_quiet = True


def _bomb_error(label: str, head: bytes, exc: Exception, max_pixels: int) -> ImageTooLarge:
    size = sniff.png_size(head)
    if size is not None:
        return too_large(f"'{label}'", *size, max_pixels)
    match = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f" ({megapixels(int(match.group(1)))})" if match else ""
    return ImageTooLarge(f"'{label}' is too large{pixels}; the limit is {megapixels(max_pixels)}")


def _unreadable(label: str, head: bytes, suffix: str, detail: str) -> LayerLiftError:
    """The error for bytes no decoder accepted: damaged if they claim a format we read."""
    claimed = sniff.supported_format(head)
    if claimed:
        return CorruptImage(f"'{label}' looks like a {claimed} file but is damaged: {detail}")
    named = sniff.SUFFIX_FORMATS.get(suffix.lower())
    if named:
        return CorruptImage(
            f"'{label}' is named like a {named} file but does not contain a valid {named} "
            "image (damaged, or another kind of file renamed)"
        )
    return UnsupportedFormat(
        f"'{label}' is {sniff.describe_unsupported(head)}, not a picture LayerLift can read; "
        f"supported formats: {', '.join(sniff.SUPPORTED_INPUTS)}"
    )


def _decode_pillow(
    handle: BinaryIO, label: str, head: bytes, suffix: str, max_pixels: int
) -> LoadedImage:
    _align_pillow_guard(max_pixels)
    try:
        image = Image.open(handle, formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _bomb_error(label, head, exc, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise _unreadable(label, head, suffix, "no decoder recognised its contents") from exc
    except Exception as exc:  # a plugin failing inside its header parser
        raise _unreadable(label, head, suffix, str(exc) or type(exc).__name__) from exc

    with image:
        width, height = image.size
        check_size(width, height, label=f"'{label}'", max_pixels=max_pixels)
        fmt = _FORMAT_NAMES.get(image.format or "", image.format or "?")
        warnings: list[str] = []
        try:
            frames = int(getattr(image, "n_frames", 1))
        except Exception:  # counting frames walks the file; a bad tail is not our problem
            frames = 1
        if frames > 1:
            warnings.append(f"the {fmt} file has {frames} frames or pages; the first was used")
        source_mode = image.mode
        try:
            wide = raw_is_wide(image)
            image.load()
            oriented = _apply_orientation(image, warnings)
            pixels = to_srgb_rgba(oriented, warnings, wide=wide)
        except LayerLiftError:
            raise
        except Image.DecompressionBombError as exc:
            raise _bomb_error(label, head, exc, max_pixels) from exc
        except MemoryError as exc:
            raise ImageTooLarge(
                f"'{label}' is too large to decode in the memory available"
            ) from exc
        except Exception as exc:
            raise CorruptImage(
                f"'{label}' is a damaged or incomplete {fmt} file: {exc or type(exc).__name__}"
            ) from exc
    return LoadedImage(pixels, fmt, None, warnings, source_mode)


def _apply_orientation(image: Image.Image, warnings: list[str]) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says, the way every photo viewer does."""
    try:
        oriented = ImageOps.exif_transpose(image)
    except Exception:
        warnings.append("the EXIF orientation could not be read; the picture was not rotated")
        return image
    return image if oriented is None else oriented


def _decode_psd(handle: BinaryIO, label: str, head: bytes, max_pixels: int) -> LoadedImage:
    from layerlift.inference.formats import psd

    header = psd.read_header(head, label)
    check_size(header.width, header.height, label=f"'{label}'", max_pixels=max_pixels)
    warnings: list[str] = []
    with library_warnings(warnings):
        image = psd.flatten(handle, label, warnings)
    if header.color_mode == "CMYK" and image.mode != "CMYK":
        warnings.append("the PSD is CMYK; its composite was converted to RGB")
    try:
        with library_warnings(warnings):
            pixels = to_srgb_rgba(image, warnings, wide=header.depth > 8)
    except MemoryError as exc:
        raise ImageTooLarge(f"'{label}' is too large to decode in the memory available") from exc
    except Exception as exc:
        raise CorruptImage(f"'{label}' could not be converted to RGB: {exc}") from exc
    kind = "PSB" if header.version == 2 else "PSD"
    return LoadedImage(pixels, kind, None, warnings, f"{header.color_mode} {header.depth}-bit")


def _decode_ora(handle: BinaryIO, label: str, max_pixels: int, max_bytes: int) -> LoadedImage:
    """An OpenRaster file read as a picture: its stored merged image."""
    try:
        with zipfile.ZipFile(handle) as archive:
            info = archive.getinfo("mergedimage.png")
            if info.file_size > max_bytes:
                raise ImageTooLarge(f"the merged image in '{label}' is larger than the limit")
            data = archive.read(info)
    except LayerLiftError:
        raise
    except KeyError as exc:
        raise CorruptImage(f"'{label}' has no mergedimage.png") from exc
    except Exception as exc:  # zipfile also raises zlib.error, NotImplementedError, ...
        raise CorruptImage(f"'{label}' is a damaged OpenRaster file: {exc}") from exc
    loaded = read_image_bytes(
        data, name=f"{label}:mergedimage.png", max_pixels=max_pixels, max_bytes=max_bytes
    )
    loaded.format = "ORA"
    return loaded


def _decode(
    handle: BinaryIO, label: str, suffix: str, max_pixels: int, max_bytes: int
) -> LoadedImage:
    head = handle.read(HEAD_BYTES)
    handle.seek(0)
    kind = sniff.supported_format(head)
    if kind == "PSD":
        return _decode_psd(handle, label, head, max_pixels)
    if kind == "ORA":
        return _decode_ora(handle, label, max_pixels, max_bytes)
    return _decode_pillow(handle, label, head, suffix, max_pixels)


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES
) -> LoadedImage:
    """Decode the picture at `path`.

    Raises `InputError` (missing or unreadable file, or not a regular file: a folder, a
    device, a FIFO, a socket), `CorruptImage` (empty, truncated or damaged),
    `UnsupportedFormat` (not a picture we read) or `ImageTooLarge` (over `max_bytes` on disk
    or `max_pixels` decoded), each naming the file.
    """
    source = Path(path)
    label = str(source)
    try:
        # Opened without blocking and checked with fstat: a FIFO would hang open() and a
        # device never ends, so only a regular file is read.
        with open_regular(source, label) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise CorruptImage(f"'{label}' is empty (0 bytes)")
            if size > max_bytes:
                raise ImageTooLarge(
                    f"'{label}' is {_bytes_text(size)}, more than the limit of "
                    f"{_bytes_text(max_bytes)}"
                )
            loaded = _decode(handle, label, source.suffix, max_pixels, max_bytes)
    except LayerLiftError:
        raise
    except OSError as exc:
        raise read_error(exc, label) from exc
    loaded.path = source
    return loaded


def read_image_bytes(
    data: bytes,
    *,
    name: str = "image",
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> LoadedImage:
    """Decode a picture that arrived in memory (a socket frame, a zip member).

    `name` only appears in messages; a suffix on it (e.g. 'upload.png') sharpens the error
    for unrecognised bytes the same way a file name does.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError(f"'{name}' must be bytes, not {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise CorruptImage(f"'{name}' is empty (0 bytes)")
    if size > max_bytes:
        raise ImageTooLarge(
            f"'{name}' is {_bytes_text(size)}, more than the limit of {_bytes_text(max_bytes)}"
        )
    return _decode(io.BytesIO(bytes(data)), name, Path(name).suffix, max_pixels, max_bytes)
