"""Reading pictures in and writing layer stacks out.

`read_image` / `read_image_bytes` turn whatever a user hands us (PNG, JPEG, WebP, TIFF, GIF,
BMP, PSD, ORA) into straight-alpha sRGB RGBA8 with clear, coded errors; `write_stack` /
`read_stack` store a `LayerStack` as PSD, OpenRaster or a folder of PNGs and read it back.
"""

from layerlift.inference.formats.reader import (
    MAX_BYTES,
    MAX_PIXELS,
    LoadedImage,
    read_image,
    read_image_bytes,
)
from layerlift.inference.formats.sniff import SUPPORTED_INPUTS
from layerlift.inference.formats.stackio import (
    SUPPORTED_OUTPUTS,
    output_kind,
    read_stack,
    write_stack,
)

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "SUPPORTED_INPUTS",
    "SUPPORTED_OUTPUTS",
    "LoadedImage",
    "output_kind",
    "read_image",
    "read_image_bytes",
    "read_stack",
    "write_stack",
]
