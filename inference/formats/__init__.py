"""Reading pictures in and writing layer stacks out.

`read_image` / `read_image_bytes` turn whatever a user hands us (PNG, JPEG, WebP, TIFF, GIF,
BMP, PSD, PSB, ORA) into straight-alpha sRGB RGBA8 with clear, coded errors; `write_stack` /
`read_stack` store a `LayerStack` as PSD, PSB, OpenRaster or a folder of PNGs and read it
back; `check_output` refuses a bad write target before any work (see `safety`).
`resultdir` (with `layerfile`) is the job store's own form of a finished result, built to be
written and read back fast; it is never offered to users.
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
    OutputTarget,
    check_output,
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
    "OutputTarget",
    "check_output",
    "output_kind",
    "read_image",
    "read_image_bytes",
    "read_stack",
    "write_stack",
]
