"""OpenRaster (.ora): the open layered format GIMP, Krita and MyPaint all read.

An ORA file is a zip whose first entry is an uncompressed `mimetype` file (so `file(1)`
and desktop shells recognise it from fixed offsets), a `stack.xml` describing the layers
top first, one PNG per layer under `data/`, a full `mergedimage.png` and a thumbnail of at
most 256 px. Layers are written trimmed, at their offset; names are free Unicode text in
the XML, while the PNG members get plain numbered names so nothing depends on how a zip
tool encodes file names.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from layerlift.inference.atomic import atomic_writer
from layerlift.inference.errors import BadRequest, CorruptImage, ImageTooLarge, InputError
from layerlift.inference.formats.fastpng import encode_png
from layerlift.inference.formats.psd import DEFAULT_GROUP
from layerlift.inference.input_check import check_size
from layerlift.inference.layers import Layer, LayerStack
from PIL import Image

MIMETYPE = "image/openraster"
THUMBNAIL_MAX = 256
# A layer PNG inside an .ora may not inflate beyond this; real layers are far smaller.
MAX_MEMBER_BYTES = 1 << 30
MAX_NESTING = 64


def _png_bytes(pixels: np.ndarray) -> bytes:
    return encode_png(pixels)


# Characters XML 1.0 cannot hold at all, even escaped; a layer name with one would make
# stack.xml unreadable to every ORA reader.
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def _stack_xml(stack: LayerStack, sources: list[str], group_name: str) -> bytes:
    image = ET.Element("image", {"version": "0.0.5", "w": str(stack.width), "h": str(stack.height)})
    root = ET.SubElement(image, "stack")
    group = ET.SubElement(
        root,
        "stack",
        {
            "name": _xml_text(group_name),
            "visibility": "visible",
            "opacity": "1.000",
            "isolation": "auto",
        },
    )
    # The spec lists the topmost layer first; our stacks are bottom first.
    for layer, src in reversed(list(zip(stack.layers, sources, strict=True))):
        ET.SubElement(
            group,
            "layer",
            {
                "src": src,
                "name": _xml_text(layer.name),
                "x": str(layer.x),
                "y": str(layer.y),
                "visibility": "visible" if layer.visible else "hidden",
                "opacity": "1.000",
                "composite-op": "svg:src-over",
            },
        )
    return ET.tostring(image, encoding="utf-8", xml_declaration=True)


def _thumbnail(composite: np.ndarray) -> bytes:
    image = Image.fromarray(composite, "RGBA")
    image.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_ora(stack: LayerStack, path: str | Path, *, group_name: str | None = None) -> list[Path]:
    """Write `stack` as an OpenRaster file at `path`, atomically; returns `[path]`."""
    if stack.width < 1 or stack.height < 1:
        raise BadRequest("cannot write an OpenRaster file with an empty canvas")
    target = Path(path)
    trimmed = stack.trimmed()
    sources = [f"data/layer{index:03d}.png" for index in range(len(trimmed.layers))]
    composite = stack.composite()
    with atomic_writer(target) as handle, zipfile.ZipFile(handle, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, zipfile.ZIP_STORED)
        archive.writestr(
            "stack.xml",
            _stack_xml(trimmed, sources, group_name or DEFAULT_GROUP),
            zipfile.ZIP_DEFLATED,
        )
        for layer, src in zip(trimmed.layers, sources, strict=True):
            # PNG cannot be 0x0, so an empty layer is one transparent pixel at its offset;
            # reading trims it back to nothing.
            pixels = layer.pixels if layer.width and layer.height else np.zeros((1, 1, 4), np.uint8)
            archive.writestr(src, _png_bytes(pixels), zipfile.ZIP_STORED)
        archive.writestr("mergedimage.png", _png_bytes(composite), zipfile.ZIP_STORED)
        archive.writestr("Thumbnails/thumbnail.png", _thumbnail(composite), zipfile.ZIP_STORED)
    return [target]


def _int_attr(element: ET.Element, name: str, label: str) -> int:
    value = element.get(name, "0")
    try:
        return int(float(value))
    except ValueError as exc:
        raise CorruptImage(f"'{label}' has a bad {name}='{value}' in stack.xml") from exc


def _member(archive: zipfile.ZipFile, name: str, label: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise CorruptImage(f"'{label}' refers to '{name}', which is missing") from exc
    if info.file_size > MAX_MEMBER_BYTES:
        raise ImageTooLarge(f"'{name}' in '{label}' is larger than {MAX_MEMBER_BYTES} bytes")
    try:
        return archive.read(info)
    except Exception as exc:  # bad CRC, unknown compression, encryption, broken deflate
        raise CorruptImage(f"'{name}' in '{label}' cannot be extracted: {exc}") from exc


def _read_layer(
    archive: zipfile.ZipFile, element: ET.Element, visible: bool, label: str, max_pixels: int
) -> Layer:
    from layerlift.inference.formats.reader import read_image_bytes

    src = element.get("src", "")
    loaded = read_image_bytes(
        _member(archive, src, label), name=f"{label}:{src}", max_pixels=max_pixels
    )
    pixels = loaded.pixels
    opacity = float(element.get("opacity", "1") or 1)
    if opacity < 1.0:
        pixels = pixels.copy()
        pixels[..., 3] = np.rint(pixels[..., 3] * max(opacity, 0.0)).astype(np.uint8)
    return Layer(
        element.get("name", ""),
        pixels,
        _int_attr(element, "x", label),
        _int_attr(element, "y", label),
        visible and element.get("visibility", "visible") != "hidden",
    ).trimmed()


def read_ora(path: str | Path, *, max_pixels: int) -> LayerStack:
    """The layers of an OpenRaster file, bottom first; nested stacks flatten into the order."""
    source = Path(path)
    label = str(source)
    try:
        archive = zipfile.ZipFile(source)
    except FileNotFoundError as exc:
        raise InputError(f"no such file: '{label}'") from exc
    except Exception as exc:  # BadZipFile, OSError, EOFError, ValueError on odd headers
        raise CorruptImage(f"'{label}' is not a valid OpenRaster (zip) file: {exc}") from exc
    with archive:
        try:
            mimetype = archive.read("mimetype").strip()
        except Exception as exc:  # missing entry, or one zipfile cannot extract
            raise CorruptImage(f"'{label}' has no readable OpenRaster mimetype entry") from exc
        if mimetype != MIMETYPE.encode():
            raise CorruptImage(f"'{label}' is a zip but not an OpenRaster file")
        try:
            image = ET.fromstring(_member(archive, "stack.xml", label))
        except (ET.ParseError, ValueError) as exc:
            raise CorruptImage(f"'{label}' has a damaged stack.xml: {exc}") from exc
        width, height = _int_attr(image, "w", label), _int_attr(image, "h", label)
        check_size(width, height, label=f"the canvas of '{label}'", max_pixels=max_pixels)
        root = image.find("stack")
        if root is None:
            raise CorruptImage(f"'{label}' has no <stack> in stack.xml")
        layers: list[Layer] = []

        def collect(stack: ET.Element, visible: bool, depth: int) -> None:
            if depth > MAX_NESTING:
                raise CorruptImage(f"'{label}' nests layer groups more than {MAX_NESTING} deep")
            # Children are listed top first; walk them bottom first.
            for child in reversed(list(stack)):
                shown = visible and child.get("visibility", "visible") != "hidden"
                if child.tag == "stack":
                    collect(child, shown, depth + 1)
                elif child.tag == "layer":
                    layers.append(_read_layer(archive, child, visible, label, max_pixels))

        collect(root, True, 0)
    meta: dict[str, Any] = {"source_format": "ORA"}
    top_level = list(root)
    if len(top_level) == 1 and top_level[0].tag == "stack":
        meta["group_name"] = top_level[0].get("name", "")
    return LayerStack(width, height, layers, meta)
