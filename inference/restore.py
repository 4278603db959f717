"""Bring layers a model made at its working resolution back to the input's full resolution.

Models decompose at a fixed bucket (Qwen-Image-Layered: 640 or 1024 px on the long side),
but a poster may be 4096 px wide: plain upscaling would give blurry layer edges and soft
colours. Two things restore detail, both taken from the original picture, which is the one
thing known exactly at full resolution:

- Alpha is upsampled with a guided filter (He et al., "Guided Image Filtering", and its fast
  variant): per low-resolution window the alpha is fitted as a linear function of the
  picture's colour, and the fitted coefficients, upsampled, are applied to the full-resolution
  picture. Edges of the layer therefore snap to the picture's real edges.
- Where a layer is the visible one (nothing above it covers the pixel), its colour is solved
  from the original so that compositing it over the layers below gives the picture back.

What is still off after this (hidden areas, layers the model got wrong) is left to
`inference.refine.recomposite_exact`, which makes the stack recomposite exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from layerlift.inference.layers import as_rgba8, to_float
from PIL import Image
from scipy import ndimage

# Guided-filter window radius (in low-resolution pixels) and regulariser: small windows
# keep thin strokes, eps ~ (0.1)^2 treats colour steps above ~0.1 as edges.
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-2
# Colour is solved from the original only where the layer is this opaque and nothing above
# covers more than this: below it, dividing by alpha amplifies noise.
SOLVE_MIN_ALPHA = 0.25
COVER_MAX = 1.0 / 255.0


def _resize_channels(array: np.ndarray, width: int, height: int, method: Image.Resampling):
    """Resize a float (h, w, c) array channel by channel in float precision."""
    if array.shape[1] == width and array.shape[0] == height:
        return array.astype(np.float32, copy=True)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(array[..., c], np.float32), mode="F").resize(
                (width, height), method
            )
        )
        for c in range(array.shape[2])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


def _box(array: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, per channel, edges reflected."""
    size = (2 * radius + 1, 2 * radius + 1) + (1,) * (array.ndim - 2)
    return ndimage.uniform_filter(array, size=size, mode="reflect")


def guided_coefficients(
    guide: np.ndarray, source: np.ndarray, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """Colour-guided filter coefficients (a: (h, w, 3), b: (h, w)) with source ~ a.guide + b."""
    mean_i = _box(guide, radius)
    mean_p = _box(source, radius)
    corr_ip = _box(guide * source[..., None], radius)
    cov_ip = corr_ip - mean_i * mean_p[..., None]
    outer = guide[..., :, None] * guide[..., None, :]
    sigma = _box(outer.reshape(*guide.shape[:2], 9), radius).reshape(*guide.shape[:2], 3, 3)
    sigma -= mean_i[..., :, None] * mean_i[..., None, :]
    sigma += eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(sigma, cov_ip[..., None])[..., 0]
    b = mean_p - np.einsum("hwc,hwc->hw", a, mean_i)
    return _box(a, radius), _box(b, radius)


def guide_at(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The picture as a premultiplied float RGB guide, area-averaged to (width, height)."""
    picture = Image.fromarray(as_rgba8(image), mode="RGBA").convert("RGBa")
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.BOX)
    return np.asarray(picture, dtype=np.float32)[..., :3] / 255.0


def _taps(size_low: int, size_full: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps (i0, i1, weight of i1) mapping full-resolution pixel centres to low-res."""
    position = np.clip((np.arange(size_full) + 0.5) * size_low / size_full - 0.5, 0,
                       size_low - 1)
    i0 = np.floor(position).astype(np.intp)
    i1 = np.minimum(i0 + 1, size_low - 1)
    return i0, i1, (position - i0).astype(np.float32)


def _bilinear(plane: np.ndarray, rows: tuple, cols: tuple) -> np.ndarray:
    """Separable bilinear upsampling of a float (h, w) plane with precomputed taps."""
    r0, r1, fy = rows
    c0, c1, fx = cols
    tall = plane[r0] * (1.0 - fy)[:, None] + plane[r1] * fy[:, None]
    return tall[:, c0] * (1.0 - fx) + tall[:, c1] * fx


def _bilinear_at(plane: np.ndarray, rows: tuple, cols: tuple, ys: np.ndarray,
                 xs: np.ndarray) -> np.ndarray:
    """The same bilinear upsampling, evaluated only at full-resolution pixels (ys, xs)."""
    r0, r1, fy = rows[0][ys], rows[1][ys], rows[2][ys]
    c0, c1, fx = cols[0][xs], cols[1][xs], cols[2][xs]
    top = plane[r0, c0] * (1.0 - fx) + plane[r0, c1] * fx
    bottom = plane[r1, c0] * (1.0 - fx) + plane[r1, c1] * fx
    return top * (1.0 - fy) + bottom * fy


def upsample_alpha(
    alpha_low: np.ndarray, guide_full: np.ndarray, guide_low: np.ndarray | None = None
) -> np.ndarray:
    """Edge-aware upsampling of a float alpha (h, w) to the guide's (H, W), in [0, 1].

    Flat areas are plainly upsampled; only the band around the layer's edges (found at low
    resolution, where it is cheap) takes the guided fit, so the filter can move an edge onto
    the picture's edge but never invents alpha far from the layer.
    """
    height, width = guide_full.shape[:2]
    low_h, low_w = alpha_low.shape
    alpha8 = np.clip(np.rint(alpha_low * 255.0), 0, 255).astype(np.uint8)
    if (low_w, low_h) == (width, height):
        return alpha8.astype(np.float32) / 255.0
    plain = np.asarray(
        Image.fromarray(alpha8, mode="L").resize((width, height), Image.Resampling.BICUBIC)
    ).astype(np.float32) / 255.0
    reach = 2 * GUIDE_RADIUS + 3
    spread = ndimage.maximum_filter(alpha_low, size=reach) - ndimage.minimum_filter(
        alpha_low, size=reach
    )
    rows, cols = _taps(low_h, height), _taps(low_w, width)
    band = spread > 1.0 / 255.0
    if not band.any():
        return plain
    band_full = band[np.rint(rows[0] + rows[2]).astype(np.intp)[:, None],
                     np.rint(cols[0] + cols[2]).astype(np.intp)[None, :]]
    if guide_low is None:
        guide_low = _resize_channels(guide_full, low_w, low_h, Image.Resampling.BOX)
    a, b = guided_coefficients(guide_low, alpha_low.astype(np.float32))
    if band.mean() > 0.25:  # mostly edges (noise, text): evaluate everywhere, vectorised
        guided = _bilinear(b, rows, cols)
        for channel in range(3):
            guided += _bilinear(a[..., channel], rows, cols) * guide_full[..., channel]
        out = np.where(band_full, np.clip(guided, 0.0, 1.0), plain)
    else:  # the usual case: a thin band along the layer's outline
        ys, xs = np.nonzero(band_full)
        guided = _bilinear_at(b, rows, cols, ys, xs)
        for channel in range(3):
            guided += _bilinear_at(a[..., channel], rows, cols, ys, xs) * guide_full[
                ys, xs, channel
            ]
        out = plain
        out[ys, xs] = np.clip(guided, 0.0, 1.0)
    out[out < 0.5 / 255.0] = 0.0
    out[out > 1.0 - 0.5 / 255.0] = 1.0
    return out


def upsample_colour(
    rgba_low: np.ndarray, width: int, height: int, box: tuple[slice, slice] | None = None
) -> np.ndarray:
    """Straight RGB in [0, 1] of a low-resolution RGBA8 layer upsampled to (height, width).

    Only the full-resolution region `box` (rows, cols) is computed when given. Pillow resizes
    RGBA premultiplied, so transparent pixels' hidden colour does not bleed into the edges;
    8-bit precision is enough because the visible parts are re-solved from the original.
    """
    low_h, low_w = rgba_low.shape[:2]
    rows, cols = box or (slice(0, height), slice(0, width))
    source = (cols.start * low_w / width, rows.start * low_h / height,
              cols.stop * low_w / width, rows.stop * low_h / height)
    up = Image.fromarray(rgba_low, mode="RGBA").resize(
        (cols.stop - cols.start, rows.stop - rows.start), Image.Resampling.LANCZOS, box=source
    )
    return np.asarray(up.convert("RGB"), dtype=np.float32) / 255.0


def restore_layers(layers_low: Sequence[np.ndarray], image: np.ndarray) -> list[np.ndarray]:
    """Full-resolution straight-alpha RGBA8 layers (bottom first) from low-resolution ones.

    `layers_low` are (h, w, 4) uint8 arrays all of one size; `image` is the (H, W, 4) uint8
    original they decompose. Works for any scale, down as well as up.
    """
    if not layers_low:
        raise ValueError("no layers to restore")
    original = to_float(as_rgba8(image))
    height, width = original.shape[:2]
    guide = original[..., :3] * original[..., 3:4]
    lows = [as_rgba8(layer) for layer in layers_low]
    shape = lows[0].shape
    if any(low.shape != shape for low in lows):
        raise ValueError("all low-resolution layers must have the same size")

    guide_low = guide_at(image, shape[1], shape[0])
    alphas = [
        upsample_alpha(low[..., 3].astype(np.float32) / 255.0, guide, guide_low) for low in lows
    ]

    # Where nothing above a layer covers it: coverage above is 1 - prod(1 - alpha_above).
    above = np.zeros((height, width), np.float32)
    uncovered = []
    for alpha in reversed(alphas):
        uncovered.append(above <= COVER_MAX)
        above += alpha * (1.0 - above)
    uncovered.reverse()
    del above

    # Solve each visible layer's colour from the original, bottom up, over the composite below.
    # One layer at a time and in place: at 4096 px every float RGB plane is 200 MB.
    same_size = shape[:2] == (height, width)
    below_premul = np.zeros((height, width, 3), np.float32)
    restored = []
    for low, alpha, open_above in zip(lows, alphas, uncovered, strict=True):
        layer = np.zeros((height, width, 4), np.uint8)
        rows = np.flatnonzero(alpha.any(axis=1))
        if rows.size == 0:
            restored.append(layer)
            continue
        cols = np.flatnonzero(alpha.any(axis=0))
        # Work inside the layer's bounds only: most objects cover a small part of the canvas.
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        rgb = (to_float(low[box][..., :3]) if same_size
               else upsample_colour(low, width, height, box))
        a = alpha[box][..., None]
        visible = (a[..., 0] >= SOLVE_MIN_ALPHA) & open_above[box]
        solved = guide[box] - below_premul[box] * (1.0 - a)
        solved /= np.maximum(a, 1e-6)
        np.clip(solved, 0.0, 1.0, out=solved)
        np.copyto(rgb, solved, where=visible[..., None])
        del solved
        below_premul[box] *= 1.0 - a
        below_premul[box] += rgb * a
        layer[(*box, slice(0, 3))] = np.rint(rgb * 255.0)
        layer[..., 3] = np.rint(alpha * 255.0)
        restored.append(layer)
    return restored
