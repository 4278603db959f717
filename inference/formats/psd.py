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
from layerlift.inference.errors import (
    BadRequest,
    CorruptImage,
    ImageTooLarge,
    InputError,
    UnsupportedFormat,
)
from layerlift.inference.formats.colour import to_srgb_rgba
from layerlift.inference.formats.liblog import library_warnings
from layerlift.inference.formats.safety import open_regular
from layerlift.inference.input_check import check_size
from layerlift.inference.layers import Layer, LayerStack
from PIL import Image

if TYPE_CHECKING:
    from psd_tools import PSDImage

DEFAULT_GROUP = "LayerLift"
# The PSD format (version 1) stops at 30000 px a side; larger needs PSB, which few apps read.
MAX_PSD_SIDE = 30000
# PSB ("large document", version 2) goes to 300000 px a side.
MAX_PSB_SIDE = 300000
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


def _missing_aggdraw(exc: BaseException) -> bool:
    return isinstance(exc, ImportError) and "aggdraw" in str(exc)


def _needs_aggdraw(label: str) -> UnsupportedFormat:
    return UnsupportedFormat(
        f"'{label}' has vector shapes, and drawing them needs the aggdraw package, which "
        "this installation lacks: install it with `pip install aggdraw`"
    )


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


def _render_layers(document: PSDImage, label: str, why: Exception | None) -> Image.Image:
    """The document composited from its layers (their stored pixels, else their vectors)."""
    failure: Exception | None = why
    for options in ({"ignore_preview": True}, {"force": True}):
        try:
            return _composite(document, label, **options)
        except _CompositeFailed as exc:
            failure = exc.__cause__
    raise CorruptImage(f"'{label}' could not be flattened: {failure}") from failure


class _CompositeFailed(Exception):
    """psd-tools could not composite the document this way (the cause says why)."""


def _composite(document: PSDImage, label: str, **options: bool) -> Image.Image:
    """psd-tools' composite; memory and a missing aggdraw become LayerLift's own errors,
    anything else `_CompositeFailed` so the caller can try another way."""
    try:
        return document.composite(**options)
    except MemoryError as exc:
        raise ImageTooLarge(f"'{label}' is too large to flatten in the memory available") \
            from exc
    except Exception as exc:
        if _missing_aggdraw(exc):
            raise _needs_aggdraw(label) from exc
        raise _CompositeFailed(str(exc)) from exc


def flatten(
    source: str | Path | BinaryIO, label: str, warnings: list[str] | None = None
) -> Image.Image:
    """The document's composite as a Pillow image, the way Photoshop would show it.

    Uses the stored merged image when the file has a readable one, and composites the
    layers with psd-tools otherwise, saying so in `warnings`: a file saved without
    "Maximize compatibility" has no merged image, and a damaged one is not the picture.
    """
    notes = warnings if warnings is not None else []
    document = _open_document(source, label)
    image: Image.Image | None
    if not document.has_preview():
        notes.append("the file stores no flattened picture (saved without 'Maximize "
                     "compatibility'); its layers were composited instead")
        image = _render_layers(document, label, None)
    else:
        try:
            image = _composite(document, label)
        except _CompositeFailed as failed:
            exc = failed.__cause__
            image = _render_layers(document, label, exc)
            notes.append(
                f"the file's stored flattened picture is damaged ({exc}); its layers were "
                "composited instead"
            )
    if image is None:
        raise CorruptImage(f"'{label}' has neither a stored composite nor layers to flatten")
    return image


def _fit_name(name: str) -> str:
    return name[:MAX_NAME]


def _check_canvas(stack: LayerStack, version: int = 1) -> None:
    if stack.width < 1 or stack.height < 1:
        raise BadRequest("cannot write a PSD with an empty canvas")
    if version == 1 and max(stack.width, stack.height) > MAX_PSD_SIDE:
        raise BadRequest(
            f"a PSD holds at most {MAX_PSD_SIDE} pixels a side but the canvas is "
            f"{stack.width} x {stack.height}; write a .psb or .ora file or a folder of PNGs "
            "instead"
        )
    if max(stack.width, stack.height) > MAX_PSB_SIDE:
        raise BadRequest(
            f"a PSB holds at most {MAX_PSB_SIDE} pixels a side but the canvas is "
            f"{stack.width} x {stack.height}; write an .ora file or a folder of PNGs instead"
        )


def encode(stack: LayerStack, handle: BinaryIO, group_name: str | None = None) -> None:
    """Write `stack` as a layered PSD to the open binary `handle`."""
    from layerlift.inference.formats.psd_write import write_document

    _check_canvas(stack)
    trimmed = stack.trimmed()
    trimmed.layers = [replace(layer, name=_fit_name(layer.name)) for layer in trimmed.layers]
    write_document(trimmed, stack.composite(), _fit_name(group_name or DEFAULT_GROUP), handle)


def encode_psb(stack: LayerStack, handle: BinaryIO, group_name: str | None = None) -> None:
    """Write `stack` as a PSB (large document format) to `handle`, through psd-tools.

    The fast writer (`psd_write`) writes version 1 only; a PSB is rare (a canvas over 30000
    px a side), so it goes through psd-tools, which sizes every length field for version 2
    once the header says so. Same structure as `encode`: one group, one trimmed pixel layer
    per stack layer, the exact composite as the merged image.
    """
    from psd_tools import PSDImage
    from psd_tools.constants import Compression

    _check_canvas(stack, 2)
    composite = stack.composite()
    transparent = bool((composite[..., 3] < 255).any())
    document = PSDImage.new("RGBA" if transparent else "RGB", (stack.width, stack.height))
    # Set before any layer exists: the channel data is encoded for the header's version.
    document._record.header.version = 2
    # Names go in after creation: the setter stores the Unicode name block too.
    group = document.create_group(name="group")
    group.name = _fit_name(group_name or DEFAULT_GROUP)
    for index, layer in enumerate(stack.trimmed().layers):
        if layer.width and layer.height:
            psd_layer = group.create_pixel_layer_from_array(
                layer.pixels, name=f"layer {index}", top=layer.y, left=layer.x
            )
        else:
            psd_layer = group.create_pixel_layer(
                Image.new("RGB", (0, 0)), name=f"layer {index}", top=layer.y, left=layer.x
            )
        psd_layer.name = _fit_name(layer.name)
        psd_layer.visible = layer.visible
    record = document._record
    rgb = composite[..., :3].astype(np.uint32)
    planes = [rgb[..., c] for c in range(3)]
    if transparent:
        # A negative layer count marks the extra channel as the composite's transparency;
        # the merged colour is stored over white, as Photoshop does.
        info = record.layer_and_mask_information.layer_info
        info.layer_count = -abs(info.layer_count)
        alpha = composite[..., 3].astype(np.uint32)
        planes = [(plane * alpha + 255 * (255 - alpha) + 127) // 255 for plane in planes]
        planes.append(alpha)
    record.image_data.compression = Compression.RLE
    record.image_data.set_data([plane.astype(np.uint8).tobytes() for plane in planes],
                               record.header)
    # Not `document.save()`: it would re-render the merged image and replace the exact one.
    record.write(handle)


def build_document(stack: LayerStack, group_name: str | None = None) -> PSDImage:
    """The PSD `write_psd` would write, opened with psd-tools (for tests and inspection)."""
    from psd_tools import PSDImage

    buffer = io.BytesIO()
    encode(stack, buffer, group_name)
    buffer.seek(0)
    return PSDImage.open(buffer)


def write_psd(stack: LayerStack, path: str | Path, *, group_name: str | None = None) -> list[Path]:
    """Write `stack` as a layered PSD at `path`, atomically; returns `[path]`.

    A `path` ending in .psb gets the large document format (PSB).
    """
    target = Path(path)
    if target.suffix.lower() == ".psb":
        _check_canvas(stack, 2)
        with atomic_writer(target) as handle:
            encode_psb(stack, handle, group_name)
        return [target]
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
    warnings: list[str] = []
    try:
        with open_regular(source, label) as handle, library_warnings(warnings):
            header = read_header(handle.read(26), label)
            check_size(header.width, header.height, label=f"'{label}'", max_pixels=max_pixels)
            handle.seek(0)
            document = _open_document(handle, label)
            layers = _read_layers(document, label, warnings)
    except FileNotFoundError as exc:
        raise InputError(f"no such file: '{label}'") from exc
    except PermissionError as exc:
        raise InputError(f"cannot read '{label}': permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read '{label}': {exc.strerror or exc}") from exc
    top_level = list(document)
    meta: dict[str, Any] = {"source_format": "PSD"}
    if len(top_level) == 1 and top_level[0].is_group():
        meta["group_name"] = top_level[0].name
    if warnings:
        meta["warnings"] = sorted(set(warnings))
    return LayerStack(header.width, header.height, layers, meta)


def _read_layers(document: PSDImage, label: str, warnings: list[str]) -> list[Layer]:
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
                if _missing_aggdraw(exc):
                    raise _needs_aggdraw(label) from exc
                raise CorruptImage(
                    f"layer '{child.name}' of '{label}' could not be read: {exc}"
                ) from exc
            layers.append(Layer(child.name, pixels, x, y, visible and child.visible).trimmed())

    collect(document, True)
    return layers
