"""The one check of an input picture's size and shape, and the error codes it answers with.

A picture reaches LayerLift as a file (the picture reader and the layer-stack readers), over
the bridge (its size announced in `decompose`, then its pixels decoded), or as an array (the
job runner, a backend a script calls). Every one of these ways asks here, so one fault gets
one code whichever way the picture came (docs/protocol.md, "Errors"):

- `bad_input` (`InputError`): not an (h, w, 3|4) uint8 array, or no pixels at all;
- `image_too_large` (`ImageTooLarge`): more pixels than the input limit, or a side longer
  than a side limit (the bridge announces one in `welcome`; files have none).

The pixel limit applies where a picture enters from outside, before its pixels are
allocated (files, the bridge). An array a caller already holds is checked for its shape only:
refusing it would save no memory.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.errors import ImageTooLarge, InputError
from layerlift.inference.layers import as_rgba8

# The input limit: the largest picture LayerLift decomposes. Measured with
# bench/large_input.py on a detailed (noisy, photograph-like) picture, `decompose --backend
# classic` peaks at about 0.09 GB of memory per megapixel (5.6 GB at 64 MP, 8.4 GB at
# 100 MP): 64 MP stays under 8 GB, which a desktop with 16 GB can spare.
MAX_PIXELS = 64_000_000
MEMORY_PER_MEGAPIXEL_GB = 0.09
MEMORY_BUDGET_GB = 8


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def too_large(label: str, width: int, height: int, max_pixels: int) -> ImageTooLarge:
    """The refusal of a `width` x `height` picture over `max_pixels`; at the input limit it
    also says why the limit is where it is."""
    why = ""
    if max_pixels == MAX_PIXELS:
        needed = width * height / 1e6 * MEMORY_PER_MEGAPIXEL_GB
        why = (f" (decomposing needs about {MEMORY_PER_MEGAPIXEL_GB:g} GB of memory per "
               f"megapixel, here about {needed:.0f} GB; the limit keeps it under "
               f"{MEMORY_BUDGET_GB} GB)")
    return ImageTooLarge(
        f"{label} is {width} x {height} pixels ({megapixels(width * height)}), more than "
        f"the limit of {megapixels(max_pixels)}{why}; scale it down before decomposing"
    )


def check_size(width: int, height: int, *, label: str = "the picture",
               max_pixels: int | None = MAX_PIXELS, max_side: int | None = None) -> None:
    """Refuse a picture by its size alone (from a header, before any pixel is read).

    `label` names the picture in the sentence ("'photo.png'"); `None` limits are no limit.
    """
    if width < 1 or height < 1:
        raise InputError(f"{label} is empty ({width} x {height} pixels)")
    if max_side is not None and max(width, height) > max_side:
        raise ImageTooLarge(f"{label} is {width} x {height} pixels; each side may be at most "
                            f"{max_side} pixels")
    if max_pixels is not None and width * height > max_pixels:
        raise too_large(label, width, height, max_pixels)


def checked_pixels(image: np.ndarray, *, label: str = "the picture") -> np.ndarray:
    """`image` as contiguous (h, w, 4) uint8 (opaque alpha added to RGB), or `InputError`."""
    try:
        pixels = as_rgba8(image)
    except (TypeError, ValueError) as exc:
        shape = getattr(image, "shape", None)
        kind = getattr(image, "dtype", type(image).__name__)
        raise InputError(f"{label} must be an (h, w, 3|4) uint8 array, not {shape} "
                         f"{kind}") from exc
    check_size(pixels.shape[1], pixels.shape[0], label=label, max_pixels=None)
    return pixels
