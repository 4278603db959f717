"""Separable bilinear resampling of low-resolution float planes, a strip of output rows at a time.

Restoring a 640 px model output to a 4096 px picture resamples, per layer, the guided filter's
four coefficient planes and the layer's premultiplied colour: eight float planes of 16 M
pixels each. Done whole, each plane is a 64 MB array and every pass over it misses the cache;
done by Pillow ("F" mode, one plane per call) it is the slowest part of restoring. Here the
output is produced in strips that the caller consumes at once:

- each low-resolution row is resampled horizontally once (to the full width; a block of rows
  per call) and cached until no later strip needs it;
- the full-resolution rows between two low-resolution rows are one multiply-add of those two
  cached rows, `t0 + fy * (t1 - t0)`, written straight into the caller's buffer.

Pixel centres map as Pillow's and OpenCV's bilinear do (`(i + 0.5) * low / full - 0.5`, clamped
at the borders), for up- and downscaling alike.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

# Low-resolution rows resampled horizontally per numpy call.
ROW_BLOCK = 16


@dataclass(frozen=True)
class Taps:
    """For each full-resolution index: the two low-resolution neighbours and the weight of the
    second (float32)."""

    first: np.ndarray
    second: np.ndarray
    weight: np.ndarray

    @classmethod
    def between(cls, size_low: int, size_full: int) -> Taps:
        position = np.clip((np.arange(size_full) + 0.5) * size_low / size_full - 0.5, 0,
                           size_low - 1)
        first = np.floor(position).astype(np.intp)
        second = np.minimum(first + 1, size_low - 1)
        return cls(first, second, (position - first).astype(np.float32))

    def nearest(self) -> np.ndarray:
        """The low-resolution index closest to each full-resolution one."""
        return np.where(self.weight >= 0.5, self.second, self.first)


class RowResampler:
    """Planes (P, h, w) resampled to (P, height, width), produced strip by strip, top down.

    Each thread keeps its own row cache, so threads may each walk down a band of their own.
    """

    def __init__(self, planes: np.ndarray, height: int, width: int) -> None:
        self.planes = np.ascontiguousarray(planes, np.float32)
        low_h, low_w = self.planes.shape[1:]
        self.rows = Taps.between(low_h, height)
        self.cols = Taps.between(low_w, width)
        self.width = width
        self._local = threading.local()

    @property
    def _cache(self) -> dict[int, np.ndarray]:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        return cache

    def _row(self, index: int) -> np.ndarray:
        """Low-resolution row `index` of every plane, resampled to the full width (P, W).

        Rows are resampled ROW_BLOCK at a time (one numpy call per block, not per row).
        """
        cache = self._cache
        row = cache.get(index)
        if row is None:
            end = min(self.planes.shape[1], index + ROW_BLOCK)
            source = self.planes[:, index:end]
            block = np.take(source, self.cols.first, axis=2)
            step = np.take(source, self.cols.second, axis=2)
            step -= block
            step *= self.cols.weight
            block += step
            for offset in range(end - index):
                cache[index + offset] = block[:, offset]
            row = cache[index]
        return row

    def rows_out(self, top: int, bottom: int, out: np.ndarray | None = None) -> np.ndarray:
        """Full-resolution rows top:bottom of every plane, (P, bottom - top, W), into `out`."""
        count = self.planes.shape[0]
        if out is None:
            out = np.empty((count, bottom - top, self.width), np.float32)
        first = self.rows.first[top:bottom]
        cache = self._cache
        for index in [i for i in cache if i < first[0]]:
            del cache[index]
        starts = np.flatnonzero(np.diff(first)) + 1
        for start, end in zip([0, *starts], [*starts, bottom - top], strict=True):
            low = int(first[start])
            row = self._row(low)
            step = self._row(int(self.rows.second[top + start])) - row
            block = out[:, start:end]
            np.multiply(self.rows.weight[top + start : top + end, None], step[:, None, :],
                        out=block)
            block += row[:, None, :]
        return out
