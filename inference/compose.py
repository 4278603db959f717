"""Flattening a stack, fast: premultiplied compositing in cache-sized strips, channel-planar.

How a stack looks (`LayerStack.composite`), what the PSD and ORA writers store as the merged
image, and what exact recomposition (`inference.exact_recomposition`) measures itself against
must be the same numbers, so they all come from here. The arithmetic is float32 Porter-Duff
`over` on premultiplied colour, rounded to 8 bits once at the end. It runs top layer first, each
layer slid beneath what is above it (`C += L * (1 - C_alpha)`): the same `over`, associated so
that the composite of everything above the bottom layer is a step on the way, which is what
exact recomposition solves the bottom layer against.

Speed: a 4096 x 4096 canvas is 16 M pixels and compositing is some twenty passes per layer.
Two things make those passes cheap in numpy:
- strips of rows that fit the L2 cache, so no pass goes to main memory (and the float
  working set is a few megabytes whatever the canvas);
- planar float arrays, (4, rows, cols): every operation runs over contiguous memory, where
  numpy uses SIMD, instead of over strided views of interleaved RGBA.
Each layer is touched only inside its own bounds, and the float buffers are allocated once
per canvas (`Scratch`): a fresh half-megabyte array per strip is fresh memory from the kernel,
and its page faults cost more than the arithmetic.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from layerlift.inference.heap import steady_heap

# Pixels per strip: planar float RGBA arrays of this many pixels stay within an L2 cache.
STRIP_PIXELS = 1 << 15
ONE = np.float32(1.0)
F255 = np.float32(255.0)

# Threads that share a canvas, each taking a band of rows (numpy and Pillow release the GIL
# in their loops, so a strip loop scales with the cores; a 2-core machine gets 2).
WORKERS = max(1, min(os.cpu_count() or 1, 8))
T = TypeVar("T")

# A layer as the compositor sees it: straight-alpha RGBA8 pixels and their (x, y) offset.
Placed = tuple[np.ndarray, int, int]


def strip_rows(width: int) -> int:
    """Rows per strip for a canvas `width` pixels wide."""
    return max(1, STRIP_PIXELS // max(width, 1))


def strips(height: int, width: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """(top, bottom) row ranges of about STRIP_PIXELS pixels each, covering rows
    start:height."""
    rows = strip_rows(width)
    for top in range(start, height, rows):
        yield top, min(height, top + rows)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def in_bands(work: Callable[[int, int], T], height: int, width: int,
             workers: int | None = None) -> list[T]:
    """`work(top, bottom)` for contiguous bands of rows, one per thread, results in order.

    Bands are whole strips, so a band's strip loop (`strips(bottom, width, top)`) meets the
    same strips as one loop over the canvas; a canvas of few strips is one band.
    """
    rows = strip_rows(width)
    strip_count = _ceil_div(height, rows)
    count = max(1, min(workers or WORKERS, strip_count // 2))
    per_band = _ceil_div(strip_count, count) * rows
    bands = [(top, min(height, top + per_band)) for top in range(0, height, per_band)]
    if len(bands) == 1:
        return [work(*bands[0])]
    with ThreadPoolExecutor(len(bands), thread_name_prefix="layerlift-strips") as pool:
        return list(pool.map(lambda band: work(*band), bands))


def window(layer: Placed, top: int, bottom: int, width: int):
    """The part of `layer` on canvas rows top:bottom, as (pixels, row slice, column slice).

    The slices are relative to the strip (rows) and the canvas (columns); None when the layer
    has nothing there.
    """
    pixels, x, y = layer
    r0, r1 = max(top, y), min(bottom, y + pixels.shape[0])
    c0, c1 = max(0, x), min(width, x + pixels.shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    return (pixels[r0 - y : r1 - y, c0 - x : c1 - x], slice(r0 - top, r1 - top),
            slice(c0, c1))


class Scratch:
    """Float buffers for strips of up to `rows` x `width` pixels, reused strip after strip."""

    def __init__(self, rows: int, width: int) -> None:
        self.src = np.empty((4, rows, width), np.float32)
        self.out = np.empty((4, rows, width), np.float32)
        self.keep = np.empty((rows, width), np.float32)
        self.levels = np.empty((4, rows, width), np.float32)
        self.goal = np.empty((4, rows, width), np.float32)
        self.upper = np.empty((4, rows, width), np.float32)

    @classmethod
    def for_canvas(cls, height: int, width: int) -> Scratch:
        return cls(min(height, strip_rows(width)), width)


def planar(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGBA8 pixels (..., 4) as straight float32 planes (4, ...) in [0, 1], into `out`.

    Divides by 255 rather than multiplying by its inverse: these are the very numbers
    `inference.layers.psnr` compares, so error sums here match its figures to the last bit.
    """
    if out is None:
        out = np.empty((4, *pixels.shape[:-1]), np.float32)
    np.copyto(out, np.moveaxis(pixels, -1, 0), casting="unsafe")
    np.divide(out, F255, out=out)
    return out


def premultiply(values: np.ndarray) -> np.ndarray:
    """Straight float planes (4, ...) premultiplied in place; returns them."""
    np.multiply(values[:3], values[3], out=values[:3])
    return values


def premultiply_into(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Straight float planes (4, ...) premultiplied into `out`; returns it."""
    np.multiply(values[:3], values[3], out=out[:3])
    np.copyto(out[3], values[3])
    return out


def premultiplied(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Premultiplied float32 planes (4, ...) of straight RGBA8 pixels (..., 4)."""
    return premultiply(planar(pixels, out))


def beneath(out: np.ndarray, src: np.ndarray, free: np.ndarray | None = None) -> None:
    """Slide premultiplied planes `src` (4, ...) beneath `out`, in place; `src` is consumed.

    `out = out + src * (1 - out_alpha)`, i.e. `out over src`.
    """
    free = np.subtract(ONE, out[3], out=free)
    np.multiply(src, free, out=src)
    np.add(out, src, out=out)


def composite_rows(layers: Sequence[Placed], top: int, bottom: int, width: int,
                   scratch: Scratch | None = None, stop: int = 0) -> np.ndarray:
    """Premultiplied float planes (4, rows, width) of the composite of rows top:bottom.

    Only `layers[stop:]` are composited: with `stop=1` the result is what lies above the
    bottom layer, and `add_beneath(result, layers[0], ...)` completes the same composite.
    With `scratch` the result lives in its buffer: use it before the next call.
    """
    rows_n = bottom - top
    scratch = scratch or Scratch(rows_n, width)
    out = scratch.out[:, :rows_n]
    out.fill(0.0)
    for layer in reversed(layers[stop:]):
        add_beneath(out, layer, top, bottom, width, scratch)
    return out


def add_beneath(out: np.ndarray, layer: Placed, top: int, bottom: int, width: int,
                scratch: Scratch) -> None:
    """One more layer beneath the composite `out` of rows top:bottom (see `composite_rows`)."""
    part = window(layer, top, bottom, width)
    if part is None:
        return
    pixels, rows, cols = part
    shape = pixels.shape[:2]
    src = premultiplied(pixels, scratch.src[:, : shape[0], : shape[1]])
    beneath(out[:, rows, cols], src, scratch.keep[: shape[0], : shape[1]])


def straight(composite: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Straight-alpha float planes (4, ...) of premultiplied ones (colour 0 where alpha is 0).

    Where alpha is 0 every layer was transparent there, so the premultiplied colour is 0 too.
    """
    if out is None:
        out = np.empty_like(composite)
    alpha = composite[3]
    np.copyto(out[3], alpha)
    np.copyto(out[3], ONE, where=alpha <= 0)
    np.divide(composite[:3], out[3], out=out[:3])
    np.copyto(out[3], alpha)
    return out


def quantized(composite: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The 8-bit levels (as float32 planes) a premultiplied composite is stored as."""
    levels = straight(composite, out)
    np.multiply(levels, F255, out=levels)
    np.rint(levels, out=levels)
    np.clip(levels, 0, 255, out=levels)
    return levels


def to_rgba8(composite: np.ndarray, out: np.ndarray | None = None,
             scratch: Scratch | None = None) -> np.ndarray:
    """The straight-alpha RGBA8 pixels (..., 4) of premultiplied planes (4, ...)."""
    work = None if scratch is None else scratch.levels[:, : composite.shape[1]]
    levels = quantized(composite, work)
    if out is None:
        out = np.empty((*levels.shape[1:], 4), np.uint8)
    np.copyto(np.moveaxis(out, -1, 0), levels, casting="unsafe")
    return out


@steady_heap()
def composite8(layers: Sequence[Placed], width: int, height: int) -> np.ndarray:
    """The (height, width, 4) RGBA8 composite of `layers` (bottom first) over transparency."""
    out = np.empty((height, width, 4), np.uint8)

    def band(start: int, end: int) -> None:
        scratch = Scratch.for_canvas(height, width)
        for top, bottom in strips(end, width, start):
            to_rgba8(composite_rows(layers, top, bottom, width, scratch), out[top:bottom],
                     scratch)

    in_bands(band, height, width)
    return out


@steady_heap()
def composite_float(layers: Sequence[Placed], width: int, height: int) -> np.ndarray:
    """The straight-alpha float composite, unrounded, as (height, width, 4) in [0, 1]."""
    out = np.empty((height, width, 4), np.float32)

    def band(start: int, end: int) -> None:
        scratch = Scratch.for_canvas(height, width)
        for top, bottom in strips(end, width, start):
            np.moveaxis(out[top:bottom], -1, 0)[...] = straight(
                composite_rows(layers, top, bottom, width, scratch))

    in_bands(band, height, width)
    return out


def squared_errors(composite: np.ndarray, target: np.ndarray,
                   scratch: Scratch | None = None) -> np.ndarray:
    """Per-pixel squared error, as `inference.layers.psnr` counts it, of a premultiplied
    composite once stored as 8-bit straight alpha, against premultiplied target planes."""
    work = None if scratch is None else scratch.levels[:, : composite.shape[1]]
    return level_errors(quantized(composite, work), target)


def level_errors(levels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`squared_errors` from the stored 8-bit levels (float planes, consumed)."""
    np.divide(levels, F255, out=levels)
    premultiply(levels)
    np.subtract(levels, target, out=levels)
    np.multiply(levels, levels, out=levels)
    return levels.sum(axis=0)


@steady_heap()
def squared_error_sum(reference: np.ndarray, test: np.ndarray) -> float:
    """Sum over pixels and RGBA of the squared premultiplied difference of two RGBA8 images.

    What `inference.layers.psnr` needs, computed in strips (float64 sums) so that comparing
    two 4096 px pictures never builds their float copies.
    """
    height, width = reference.shape[:2]

    def band(start: int, end: int) -> list[float]:
        scratch = Scratch.for_canvas(height, width)
        sums = []
        for top, bottom in strips(end, width, start):
            rows = bottom - top
            ref = premultiplied(reference[top:bottom], scratch.src[:, :rows])
            tst = premultiplied(test[top:bottom], scratch.out[:, :rows])
            np.subtract(ref, tst, out=ref)
            np.multiply(ref, ref, out=ref)
            sums.append(float(ref.sum(dtype=np.float64)))
        return sums

    return float(sum(value for sums in in_bands(band, height, width) for value in sums))
