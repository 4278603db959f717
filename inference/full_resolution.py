"""Bring layers a model made at its working resolution back to the input's full resolution.

Models decompose at a fixed bucket (Qwen-Image-Layered: 640 or 1024 px on the long side),
but a poster may be 4096 px wide: plain upscaling would give blurry layer edges and soft
colours. Two things restore detail, both taken from the original picture, which is the one
thing known exactly at full resolution:

- Alpha is upsampled with a guided filter (He et al., "Guided Image Filtering", and its fast
  variant): per low-resolution window the alpha is fitted as a linear function of the
  picture's colour, and the fitted coefficients, upsampled, are applied to the full-resolution
  picture. Edges of the layer therefore snap to the picture's real edges. Only the band around
  the layer's edges (found at low resolution) takes the guided fit; elsewhere alpha is plainly
  upsampled, so the filter never invents alpha far from the layer.
- Where a layer is the visible one (nothing above it covers the pixel), its colour is solved
  from the original so that compositing it over the layers below gives the picture back.
  Elsewhere (hidden parts) it is the model's colour, upsampled premultiplied so transparent
  pixels' colour does not bleed into edges.

What is still off after this (hidden areas, layers the model got wrong) is left to
`inference.exact_recomposition.recomposite_exact`, which makes the stack recomposite exactly.

Everything at full resolution runs in strips of rows, all layers of a strip together, with
float planes that fit the CPU cache (`inference.upsample` resamples the low-resolution planes
row by row): a 4096 x 4096 picture never has a full-size float array, and each layer is worked
on only in the rows where its alpha can be non-zero. Values are rounded to 8 bits in the
strip, and the colour solve and coverage use the rounded alpha that is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from layerlift.inference import compose
from layerlift.inference.filters import box_mean, window_any, window_max, window_min
from layerlift.inference.heap import steady_heap
from layerlift.inference.layers import as_rgba8
from layerlift.inference.upsample import RowResampler, Taps
from PIL import Image

# Guided-filter window radius (in low-resolution pixels) and regulariser: small windows
# keep thin strokes, eps ~ (0.1)^2 treats colour steps above ~0.1 as edges.
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-2
# Colour is solved from the original only where the layer is this opaque and nothing above
# covers more than this: below it, dividing by alpha amplifies noise.
SOLVE_MIN_ALPHA = 0.25
COVER_MAX = 1.0 / 255.0
F255 = np.float32(255.0)
ONE = np.float32(1.0)
ZERO = np.float32(0.0)


def _box(array: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, per channel, edges reflected."""
    return box_mean(array, radius)


def _inverse3(matrix: np.ndarray) -> np.ndarray:
    """Inverses of a stack (..., 3, 3) of symmetric positive definite matrices.

    By cofactors, in float64 then back to float32: ten times faster than `np.linalg.inv` on
    hundreds of thousands of 3x3 systems, and exact enough (the regulariser keeps them far
    from singular).
    """
    m = matrix.astype(np.float64)
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 1], m[..., 1, 2], m[..., 2, 2]
    inverse = np.empty(m.shape, np.float64)
    inverse[..., 0, 0] = d * f - e * e
    inverse[..., 0, 1] = inverse[..., 1, 0] = c * e - b * f
    inverse[..., 0, 2] = inverse[..., 2, 0] = b * e - c * d
    inverse[..., 1, 1] = a * f - c * c
    inverse[..., 1, 2] = inverse[..., 2, 1] = b * c - a * e
    inverse[..., 2, 2] = a * d - b * b
    determinant = a * inverse[..., 0, 0] + b * inverse[..., 0, 1] + c * inverse[..., 0, 2]
    inverse /= determinant[..., None, None]
    return inverse.astype(np.float32)


class GuidedFit:
    """The colour-guided filter's fit against one guide, shared by every layer.

    The guide's window means and inverted covariances (with the regulariser) are computed
    once; each layer then costs four box filters and a 3x3 product per pixel.
    """

    def __init__(self, guide: np.ndarray, radius: int = GUIDE_RADIUS,
                 eps: float = GUIDE_EPS) -> None:
        self.guide = np.asarray(guide, np.float32)
        self.radius = radius
        self.mean = _box(self.guide, radius)
        outer = self.guide[..., :, None] * self.guide[..., None, :]
        shape = self.guide.shape[:2]
        sigma = _box(outer.reshape(*shape, 9), radius).reshape(*shape, 3, 3)
        sigma -= self.mean[..., :, None] * self.mean[..., None, :]
        sigma += np.float32(eps) * np.eye(3, dtype=np.float32)
        self.inverse = _inverse3(sigma)

    def coefficients(self, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a: (h, w, 3), b: (h, w)), window-averaged, with source ~ a.guide + b."""
        mean_p = _box(source, self.radius)
        cov = _box(self.guide * source[..., None], self.radius) - self.mean * mean_p[..., None]
        a = np.einsum("hwij,hwj->hwi", self.inverse, cov)
        b = mean_p - np.einsum("hwc,hwc->hw", a, self.mean)
        return _box(a, self.radius), _box(b, self.radius)


def guided_coefficients(
    guide: np.ndarray, source: np.ndarray, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """Colour-guided filter coefficients (a: (h, w, 3), b: (h, w)) with source ~ a.guide + b."""
    return GuidedFit(guide, radius, eps).coefficients(np.asarray(source, np.float32))


def guide_at(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The picture as a premultiplied float RGB guide, area-averaged to (width, height)."""
    picture = Image.fromarray(as_rgba8(image), mode="RGBA").convert("RGBa")
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.BOX)
    return np.asarray(picture, dtype=np.float32)[..., :3] / 255.0


class _Alpha:
    """One layer's alpha at full resolution, as 8-bit levels, one strip of rows at a time."""

    def __init__(self, alpha8: np.ndarray, fit: GuidedFit | None, height: int,
                 width: int) -> None:
        """`fit` is None when the picture is not larger than the layers: shrinking, plain
        (antialiased) resampling is all alpha needs, and there are no finer edges to snap to.
        """
        self.alpha8 = alpha8
        low_h, low_w = alpha8.shape
        self.same = (low_h, low_w) == (height, width)
        rows, cols = Taps.between(low_h, height), Taps.between(low_w, width)
        reach = 2 * GUIDE_RADIUS + 3
        # Full-resolution rows whose alpha can be non-zero: both neighbouring low rows are
        # taken within the filters' reach of a non-zero low-resolution alpha.
        live = window_any(alpha8.any(axis=1), reach + 2)
        self.live = live[rows.first] | live[rows.second]
        if self.same:
            return
        # The band where alpha changes by more than a level within the filter's reach.
        band = (window_max(alpha8, reach) - window_min(alpha8, reach)) > 1
        self.all_band = bool(band.all())
        self.coefficients = None
        if fit is not None and band.any():
            a, b = fit.coefficients(alpha8.astype(np.float32) / F255)
            planes = np.concatenate([np.moveaxis(a, -1, 0), b[None]]).astype(np.float32)
            self.coefficients = RowResampler(planes, height, width)
        self.band = band
        self.band_rows, self.band_cols = rows.nearest(), cols.nearest()
        self.plain = Image.fromarray(alpha8, mode="L")
        self.scale = (low_h / height, low_w / width)
        self.width = width

    def levels(self, top: int, bottom: int, guide: np.ndarray) -> np.ndarray | None:
        """Alpha levels (rows, W) in 0..255 as float32 for rows top:bottom; None if all 0.

        `guide` is the picture's premultiplied colour for those rows, planar (3, rows, W).
        """
        if not self.live[top:bottom].any():
            return None
        if self.same:
            return self.alpha8[top:bottom].astype(np.float32)
        band = None if self.coefficients is None or self.all_band else (
            self.band[self.band_rows[top:bottom]][:, self.band_cols])
        plain = None
        if self.coefficients is None or not self.all_band:
            box = (0.0, top * self.scale[0], self.plain.width, bottom * self.scale[0])
            plain = np.asarray(self.plain.resize((self.width, bottom - top),
                                                 Image.Resampling.BICUBIC, box=box),
                               dtype=np.float32)
            if band is None or not band.any():
                return plain
        fit = self.coefficients.rows_out(top, bottom)
        guided = fit[3]
        for channel in range(3):
            fit[channel] *= guide[channel]
            guided += fit[channel]
        guided *= F255
        np.rint(guided, out=guided)
        np.clip(guided, 0.0, 255.0, out=guided)
        if band is not None:
            np.copyto(guided, plain, where=~band)
        return guided


class _Colour:
    """One layer's straight colour at full resolution (premultiplied resampling)."""

    def __init__(self, low: np.ndarray, height: int, width: int) -> None:
        self.low = low
        self.same = low.shape[:2] == (height, width)
        if not self.same:
            self.resampler = RowResampler(compose.premultiplied(low), height, width)

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """Straight colour planes (3, rows, W) in [0, 1] for rows top:bottom."""
        if self.same:
            return compose.planar(self.low[top:bottom])[:3]
        planes = self.resampler.rows_out(top, bottom)
        alpha = planes[3]
        colour = planes[:3]
        colour /= np.where(alpha > 0, alpha, ONE)
        np.clip(colour, 0.0, 1.0, out=colour)
        return colour


def restore_layers(layers_low: Sequence[np.ndarray], image: np.ndarray) -> list[np.ndarray]:
    """Full-resolution straight-alpha RGBA8 layers (bottom first) from low-resolution ones.

    `layers_low` are (h, w, 4) uint8 arrays all of one size; `image` is the (H, W, 4) uint8
    original they decompose. Works for any scale, down as well as up. Colour is 0 wherever
    alpha is 0.
    """
    if not layers_low:
        raise ValueError("no layers to restore")
    pixels = as_rgba8(image)
    height, width = pixels.shape[:2]
    lows = [as_rgba8(layer) for layer in layers_low]
    shape = lows[0].shape
    if any(low.shape != shape for low in lows):
        raise ValueError("all low-resolution layers must have the same size")
    with steady_heap():
        larger = height > shape[0] or width > shape[1]
        fit = GuidedFit(guide_at(pixels, shape[1], shape[0])) if larger else None
        alphas = [_Alpha(low[..., 3], fit, height, width) for low in lows]
        colours = [_Colour(low, height, width) for low in lows]
        restored = [np.zeros((height, width, 4), np.uint8) for _ in lows]

        def band(start: int, end: int) -> None:
            for top, bottom in compose.strips(end, width, start):
                guide = compose.premultiplied(pixels[top:bottom])[:3]
                levels = [alpha.levels(top, bottom, guide) for alpha in alphas]
                _restore_strip(levels, colours, guide, [out[top:bottom] for out in restored],
                               top, bottom)

        compose.in_bands(band, height, width)
    return restored


def _restore_strip(levels: list[np.ndarray | None], colours: list[_Colour], guide: np.ndarray,
                   outs: list[np.ndarray], top: int, bottom: int) -> None:
    """Colour and store one strip of every layer, bottom up, given their alpha levels."""
    alphas = [None if level is None else level / F255 for level in levels]
    # Where nothing above a layer covers it: coverage above is 1 - prod(1 - alpha_above).
    above = np.zeros(guide.shape[1:], np.float32)
    uncovered: list[np.ndarray | None] = [None] * len(alphas)
    for index in range(len(alphas) - 1, -1, -1):
        alpha = alphas[index]
        if alpha is None:
            continue
        uncovered[index] = above <= COVER_MAX
        above += alpha * (ONE - above)
    del above

    # Solve each visible layer's colour from the original, over the composite below it.
    live = [index for index, alpha in enumerate(alphas) if alpha is not None]
    below = np.zeros_like(guide)
    for index in live:
        alpha, level, out = alphas[index], levels[index], outs[index]
        visible = (alpha >= SOLVE_MIN_ALPHA) & uncovered[index]
        solved = None
        if visible.any():
            solved = below * (ONE - alpha)
            np.subtract(guide, solved, out=solved)
            solved /= np.maximum(alpha, np.float32(1e-6))
            np.clip(solved, 0.0, 1.0, out=solved)
        if solved is not None and visible.all():
            rgb = solved  # the model's colour would be replaced everywhere: not resampled
        else:
            rgb = colours[index].rows(top, bottom)
            if solved is not None:
                np.copyto(rgb, solved, where=visible)
        del solved
        rgb *= F255
        np.rint(rgb, out=rgb)
        transparent = level == 0
        if transparent.any():
            np.copyto(rgb, ZERO, where=transparent)
        np.copyto(np.moveaxis(out, -1, 0)[:3], rgb, casting="unsafe")
        np.copyto(out[..., 3], level, casting="unsafe")
        if index == live[-1]:
            break
        # What the next layer up sees beneath it: the stored (rounded) values composited.
        rgb /= F255
        rgb *= alpha
        below *= ONE - alpha
        below += rgb


def upsample_alpha(
    alpha_low: np.ndarray, guide_full: np.ndarray, guide_low: np.ndarray | None = None
) -> np.ndarray:
    """Edge-aware upsampling of a float alpha (h, w) to the guide's (H, W), in [0, 1].

    `guide_full` is a float RGB picture (H, W, 3); `guide_low` its low-resolution version
    (area-averaged from `guide_full` when not given). The alpha of one layer, as
    `restore_layers` computes it.
    """
    height, width = guide_full.shape[:2]
    low_h, low_w = alpha_low.shape
    alpha8 = np.clip(np.rint(alpha_low * 255.0), 0, 255).astype(np.uint8)
    if guide_low is None:
        guide_low = np.stack([
            np.asarray(Image.fromarray(np.ascontiguousarray(guide_full[..., c], np.float32),
                                       mode="F").resize((low_w, low_h), Image.Resampling.BOX))
            for c in range(3)], axis=-1)
    plan = _Alpha(alpha8, GuidedFit(guide_low), height, width)
    out = np.zeros((height, width), np.float32)
    with steady_heap():
        for top, bottom in compose.strips(height, width):
            guide = np.ascontiguousarray(np.moveaxis(guide_full[top:bottom], -1, 0), np.float32)
            levels = plan.levels(top, bottom, guide)
            if levels is not None:
                out[top:bottom] = levels / F255
    return out
