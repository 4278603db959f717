"""Photoshop documents: write a stack as a PSD, read ours (or anyone's) back, flatten one.

The written file is what Photoshop itself would save for the same layers: an 8-bit RGB
document of the canvas size, one pixel layer per stack layer trimmed to its bounds and
placed at its offset, with real transparency (channel -1, not a mask), all inside one
named group, bottom layer first in the file as the format requires. The merged image
section holds the stack's own composite so that viewers which never composite layers
(macOS Preview, Finder and Explorer thumbnails, GIMP's "flatten on open") still show the
picture; when the composite has transparency the document gets a fourth channel and a
negative layer count, which is how Photoshop marks that channel as the merged alpha.

psd-tools is imported inside the functions: it costs a few hundred milliseconds and the
image reader only needs `read_header` for most inputs.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from layerlift.inference.atomic import atomic_writer
from layerlift.inference.errors import BadRequest, CorruptImage, ImageTooLarge, InputError
from layerlift.inference.formats.colour import to_srgb_rgba
from layerlift.inference.layers import Layer, LayerStack
from PIL import Image

if TYPE_CHECKING:
    from psd_tools import PSDImage

DEFAULT_GROUP = "LayerLift"
# The PSD format (version 1) stops at 30000 px a side; larger needs PSB, which few apps read.
MAX_PSD_SIDE = 30000
# psd-tools refuses longer layer names; Photoshop itself allows 255 characters.
MAX_NAME = 255

_COLOR_MODES = {
    0: "bitmap",
    1: "grayscale",
    2: "indexed",
    3: "RGB",
    4: "CMYK",
    7: "multichannel",
    8: "duotone",
    9: "Lab",
}


@dataclass(frozen=True)
class PsdHeader:
    """The fixed 26-byte file header: enough to refuse a document before parsing it."""

    width: int
    height: int
    channels: int
    depth: int
    color_mode: str
    version: int


def read_header(head: bytes, label: str) -> PsdHeader:
    """Parse the PSD/PSB header in `head` or raise `CorruptImage` naming `label`."""
    if len(head) < 26 or not head.startswith(b"8BPS"):
        raise CorruptImage(f"'{label}' is not a complete Photoshop file (its header is cut off)")
    version, channels, height, width, depth, mode = struct.unpack(">H6xHIIHH", head[4:26])
    if version not in (1, 2) or not 1 <= channels <= 56 or depth not in (1, 8, 16, 32):
        raise CorruptImage(f"'{label}' has a damaged Photoshop header")
    return PsdHeader(int(width), int(height), channels, depth, _COLOR_MODES.get(mode, "?"), version)


def _open_document(source: str | Path | BinaryIO, label: str) -> PSDImage:
    from psd_tools import PSDImage

    try:
        return PSDImage.open(source)
    except (OSError, MemoryError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise InputError(f"no such file: '{label}'") from exc
        raise CorruptImage(f"'{label}' could not be read as a Photoshop file: {exc}") from exc
    except Exception as exc:  # psd-tools raises many types on damaged files
        raise CorruptImage(f"'{label}' is a damaged Photoshop file: {exc}") from exc


def flatten(source: str | Path | BinaryIO, label: str) -> Image.Image:
    """The document's composite as a Pillow image, the way Photoshop would show it.

    Uses the stored merged image when the file has one, and composites the layers with
    psd-tools otherwise.
    """
    document = _open_document(source, label)
    try:
        image = document.composite()
    except MemoryError as exc:
        raise ImageTooLarge(f"'{label}' is too large to flatten in the memory available") from exc
    except Exception as exc:
        raise CorruptImage(f"'{label}' could not be flattened: {exc}") from exc
    if image is None:
        raise CorruptImage(f"'{label}' has neither a stored composite nor layers to flatten")
    return image


def _fit_name(name: str) -> str:
    return name[:MAX_NAME]


def _check_canvas(stack: LayerStack) -> None:
    if stack.width < 1 or stack.height < 1:
        raise BadRequest("cannot write a PSD with an empty canvas")
    if max(stack.width, stack.height) > MAX_PSD_SIDE:
        raise BadRequest(
            f"a PSD holds at most {MAX_PSD_SIDE} pixels a side but the canvas is "
            f"{stack.width} x {stack.height}; write an .ora file or a folder of PNGs instead"
        )


def encode(stack: LayerStack, handle: BinaryIO, group_name: str | None = None) -> None:
    """Write `stack` as a layered PSD to the open binary `handle`."""
    from layerlift.inference.formats.psd_write import write_document

    _check_canvas(stack)
    trimmed = stack.trimmed()
    trimmed.layers = [replace(layer, name=_fit_name(layer.name)) for layer in trimmed.layers]
    write_document(trimmed, stack.composite(), _fit_name(group_name or DEFAULT_GROUP), handle)


def build_document(stack: LayerStack, group_name: str | None = None) -> PSDImage:
    """The PSD `write_psd` would write, opened with psd-tools (for tests and inspection)."""
    from psd_tools import PSDImage

    buffer = io.BytesIO()
    encode(stack, buffer, group_name)
    buffer.seek(0)
    return PSDImage.open(buffer)


def write_psd(stack: LayerStack, path: str | Path, *, group_name: str | None = None) -> list[Path]:
    """Write `stack` as a layered PSD at `path`, atomically; returns `[path]`."""
    target = Path(path)
    _check_canvas(stack)
    with atomic_writer(target) as handle:
        encode(stack, handle, group_name)
    return [target]


def _layer_rgba(layer: Any, warnings: list[str]) -> tuple[np.ndarray, int, int]:
    """Pixels and offset of one psd-tools leaf layer, as the user sees it."""
    plain = layer.kind == "pixel" and not layer.has_mask() and not layer.has_effects()
    if layer.width == 0 or layer.height == 0:
        return np.zeros((0, 0, 4), np.uint8), layer.left, layer.top
    image = layer.topil() if plain else layer.composite()
    if image is None:
        return np.zeros((0, 0, 4), np.uint8), layer.left, layer.top
    left, top = (layer.left, layer.top) if plain else layer.bbox[:2]
    pixels = to_srgb_rgba(image, warnings)
    if layer.opacity < 255:
        alpha = pixels[..., 3].astype(np.uint32) * layer.opacity
        pixels[..., 3] = ((alpha + 127) // 255).astype(np.uint8)
    return pixels, int(left), int(top)


def read_psd(path: str | Path, *, max_pixels: int) -> LayerStack:
    """The layers of a PSD as a stack, bottom first, groups flattened into the order.

    A layer inside a hidden group comes back hidden. The name of a single top-level group
    (ours is "LayerLift") is kept in `stack.meta["group_name"]`.
    """
    source = Path(path)
    label = str(source)
    try:
        with open(source, "rb") as handle:
            header = read_header(handle.read(26), label)
    except FileNotFoundError as exc:
        raise InputError(f"no such file: '{label}'") from exc
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(
            f"'{label}' is {header.width} x {header.height} pixels, more than the limit of "
            f"{max_pixels / 1e6:.1f} megapixels"
        )
    document = _open_document(source, label)
    warnings: list[str] = []
    layers: list[Layer] = []

    def collect(container: Any, visible: bool) -> None:
        for child in container:
            if child.is_group():
                collect(child, visible and child.visible)
                continue
            try:
                pixels, x, y = _layer_rgba(child, warnings)
            except MemoryError as exc:
                raise ImageTooLarge(f"a layer of '{label}' is too large to read") from exc
            except Exception as exc:
                raise CorruptImage(
                    f"layer '{child.name}' of '{label}' could not be read: {exc}"
                ) from exc
            layers.append(Layer(child.name, pixels, x, y, visible and child.visible).trimmed())

    collect(document, True)
    top_level = list(document)
    meta: dict[str, Any] = {"source_format": "PSD"}
    if len(top_level) == 1 and top_level[0].is_group():
        meta["group_name"] = top_level[0].name
    if warnings:
        meta["warnings"] = sorted(set(warnings))
    return LayerStack(header.width, header.height, layers, meta)
