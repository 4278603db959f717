"""Per-pixel reductions over the colour channels, done as elementwise operations.

numpy reduces over a last axis of length 3 (``x.max(axis=-1)``) with a per-pixel inner loop
that is an order of magnitude slower than two elementwise maxima over whole planes. The
maximum is exact in any order, so these give the very same values (NaN included).
"""

from __future__ import annotations

import numpy as np


def channel_max(values: np.ndarray) -> np.ndarray:
    """``values.max(axis=-1)``, faster for three channels."""
    if values.shape[-1] != 3:
        return values.max(axis=-1)
    return np.maximum(np.maximum(values[..., 0], values[..., 1]), values[..., 2])
