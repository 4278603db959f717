"""Binary dilation restricted to where it can reach.

A dilation by a 3 x 3 structure, `iterations` times, cannot set a pixel further than
`iterations` rows or columns from the mask's bounding box. Region masks are usually small
beside the box they are taken in, so dilating only the bounding box grown by that reach gives
the very same pixels (the background beyond it is zero either way) for a fraction of the work.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dilate(mask: np.ndarray, iterations: int = 1, structure: np.ndarray | None = None
           ) -> np.ndarray:
    """``ndimage.binary_dilation(mask, structure, iterations)`` for a 2-D mask, structure
    at most 3 x 3 (default: the 4-neighbour cross) and `iterations` >= 1."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return np.zeros(mask.shape, bool)
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    top, bottom = max(int(rows[0]) - iterations, 0), min(int(rows[-1]) + iterations + 1, h)
    left, right = max(int(cols[0]) - iterations, 0), min(int(cols[-1]) + iterations + 1, w)
    out = np.zeros(mask.shape, bool)
    out[top:bottom, left:right] = ndimage.binary_dilation(
        mask[top:bottom, left:right], structure, iterations=iterations
    )
    return out
