"""Square-window filters (mean, max, min) for the small, low-resolution planes restore uses.

scipy.ndimage has them, but importing it costs about 0.6 s (0.2 s of CPU) in a fresh
process, more than restoring a whole 480 x 640 picture: a CLI run would pay it every time.
The planes here are the model's bucket size (640 px), windows are 5 to 9 pixels wide, so
adding shifted slices is as fast as anything. Borders mirror the edge pixels, as
`scipy.ndimage`'s default "reflect" mode does (numpy calls it "symmetric").
"""

from __future__ import annotations

import numpy as np


def _padded(array: np.ndarray, radius: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * array.ndim
    pad[axis] = (radius, radius)
    return np.pad(array, pad, mode="symmetric")


def _slide(array: np.ndarray, size: int, axis: int, reduce) -> np.ndarray:
    """Combine each element with its window of `size` along `axis` (odd size, centred)."""
    radius = size // 2
    if radius == 0:
        return array.copy()
    padded = _padded(array, radius, axis)
    length = array.shape[axis]

    def shifted(shift: int) -> np.ndarray:
        index = [slice(None)] * array.ndim
        index[axis] = slice(shift, shift + length)
        return padded[tuple(index)]

    out = shifted(0).copy()
    for shift in range(1, size):
        reduce(out, shifted(shift), out=out)
    return out


def box_mean(array: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1) x (2r+1) window on the first two axes, per channel (float32)."""
    size = 2 * radius + 1
    total = _slide(np.asarray(array, np.float32), size, 0, np.add)
    total = _slide(total, size, 1, np.add)
    total /= np.float32(size * size)
    return total


def window_max(array: np.ndarray, size: int) -> np.ndarray:
    """Maximum over a size x size window (size odd) of a 2-D array."""
    return _slide(_slide(array, size, 0, np.maximum), size, 1, np.maximum)


def window_min(array: np.ndarray, size: int) -> np.ndarray:
    """Minimum over a size x size window (size odd) of a 2-D array."""
    return _slide(_slide(array, size, 0, np.minimum), size, 1, np.minimum)


def window_any(flags: np.ndarray, size: int) -> np.ndarray:
    """Whether any element within a window of `size` (odd) is set, for a 1-D bool array."""
    return _slide(flags, size, 0, np.logical_or)
