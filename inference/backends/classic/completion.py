"""Filling what a layer hides: smooth interpolation from the pixels that are known.

Where a colour model fits (flat colour, gradient) the model itself completes a layer; this
module is for the rest (textured backgrounds, photos under a caption). It uses push-pull
interpolation, a multigrid form of diffusion inpainting: known pixels are averaged down a
pyramid until every cell has a value, then the coarse answer is pulled back up, each level
keeping its own known values. A few Jacobi sweeps of the Laplace equation on the unknown pixels
then remove the blockiness. The cost is linear in the area, so it also serves 16-megapixel
backgrounds, where plain diffusion would need thousands of sweeps to cross a large hole.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SMOOTHING_SWEEPS = 12
# Below this share of unknown pixels in their box, `_relax` visits only those pixels.
SPARSE_UNKNOWN = 0.03


def _down(values: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum 2x2 blocks (padding odd sides with zero weight)."""
    h, w = weight.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        values = np.pad(values, ((0, ph), (0, pw), (0, 0)))
        weight = np.pad(weight, ((0, ph), (0, pw)))
    v = values[0::2, 0::2] + values[1::2, 0::2] + values[0::2, 1::2] + values[1::2, 1::2]
    wt = weight[0::2, 0::2] + weight[1::2, 0::2] + weight[0::2, 1::2] + weight[1::2, 1::2]
    return v, wt


def _spread(plane: np.ndarray, channels: int) -> np.ndarray:
    """An (h, w) plane repeated over `channels`: numpy multiplies two arrays of one shape
    several times faster than it broadcasts an (h, w, 1) factor over the channels."""
    return np.repeat(plane[..., None], channels, axis=-1)


def _up(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    """Double a level's size and soften the block edges."""
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    if h > 2 and w > 2:
        up = ndimage.uniform_filter(up, size=(3, 3, 1), mode="nearest")
    return up


def push_pull(values: np.ndarray, known: np.ndarray, sweeps: int = SMOOTHING_SWEEPS) -> np.ndarray:
    """Fill the pixels of (h, w, c) float32 `values` where `known` is False.

    Known pixels come back unchanged. With nothing known the result is all zeros.
    """
    values = np.asarray(values, np.float32)
    known = np.asarray(known, bool)
    if known.all() or not known.any():
        return values.copy() if known.all() else np.zeros_like(values)
    levels = []
    channels = values.shape[-1]
    v = values * _spread(known, channels)
    wt = known.astype(np.float32)
    while True:
        levels.append((v, wt))
        if wt.min() > 0 or wt.shape == (1, 1):
            break
        v, wt = _down(v, wt)
    v, wt = levels[-1]
    filled = v / _spread(np.maximum(wt, 1e-12), channels)
    for v, wt in reversed(levels[:-1]):
        h, w = wt.shape
        up = _up(filled, h, w)
        conf = _spread(np.minimum(wt, 1.0), channels)
        filled = v / _spread(np.maximum(wt, 1e-12), channels)
        filled *= conf
        conf = np.subtract(1.0, conf, out=conf)
        conf *= up
        filled += conf  # conf * (v / wt) + (1 - conf) * up
    filled[known] = values[known]
    return _relax(filled, known, sweeps)


def _relax(filled: np.ndarray, known: np.ndarray, sweeps: int) -> np.ndarray:
    """Jacobi sweeps of the 4-neighbour Laplace equation on the unknown pixels only."""
    if sweeps <= 0 or min(known.shape) < 3:
        return filled
    # Only the box around the unknown pixels changes; one pixel of margin feeds its edge.
    rows, cols = np.flatnonzero((~known).any(axis=1)), np.flatnonzero((~known).any(axis=0))
    top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, known.shape[0])
    left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, known.shape[1])
    unknown = ~known[top:bottom, left:right]
    if np.count_nonzero(unknown) <= SPARSE_UNKNOWN * unknown.size:
        filled[top:bottom, left:right] = _relax_sparse(filled[top:bottom, left:right], unknown,
                                                       sweeps)
        return filled
    crop = filled[top:bottom, left:right]
    padded = np.pad(crop, ((1, 1), (1, 1), (0, 0)), mode="edge")
    inner = padded[1:-1, 1:-1]
    # A mask of the values' own shape: numpy's masked copy is many times slower with a
    # broadcast one.
    where = np.repeat(unknown[..., None], inner.shape[-1], axis=-1)
    mean = np.empty_like(inner)  # one buffer for every sweep: the sums are done in place
    for _ in range(sweeps):
        np.add(padded[:-2, 1:-1], padded[2:, 1:-1], out=mean)
        mean += padded[1:-1, :-2]
        mean += padded[1:-1, 2:]
        mean *= 0.25
        np.copyto(inner, mean, where=where)
        # Keep the "edge" padding in step with the pixels it copies.
        padded[0, 1:-1], padded[-1, 1:-1] = padded[1, 1:-1], padded[-2, 1:-1]
        padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    filled[top:bottom, left:right] = inner
    return filled


def _relax_sparse(crop: np.ndarray, unknown: np.ndarray, sweeps: int) -> np.ndarray:
    """The sweeps of `_relax` on a box where few pixels are unknown: only those are visited.

    Each unknown pixel reads its four neighbours (clamped at the box's edge, as the edge
    padding does) and the sums are added in the same order, so the result is the same to the
    bit; the cost follows the number of unknown pixels instead of the box's area.
    """
    crop = np.ascontiguousarray(crop)
    h, w, c = crop.shape
    flat = crop.reshape(h * w, c)
    ys, xs = np.nonzero(unknown)
    here = ys * w + xs
    up = np.maximum(ys - 1, 0) * w + xs
    down = np.minimum(ys + 1, h - 1) * w + xs
    before = ys * w + np.maximum(xs - 1, 0)
    after = ys * w + np.minimum(xs + 1, w - 1)
    for _ in range(sweeps):
        total = flat[up]
        total += flat[down]
        total += flat[before]
        total += flat[after]
        total *= 0.25
        flat[here] = total
    return crop
