"""Soft effects (drop shadows, glows) lifted off the background as layers of their own.

A soft shadow or glow is one colour C over the background B at an opacity e(x) that varies
smoothly: ``p = e C + (1 - e) B``. Its pixels are too soft to form regions, so they end up
in the background layer, which then shows a dark or light smudge that moves with nothing.

The background of a design is a flat colour or a gradient, which a low-order polynomial
follows; a smudge is where the background layer leaves that model. Fitted robustly (the
smudge's pixels are outliers), the model is B; the residual p - B of a smudge's pixels points
from B towards C in every pixel, so C is found along those directions, at the edge of the
colour cube (the deepest shadow or brightest glow that explains the pixels with the least
opacity: a designer's shadow is near-black, a glow near-white), and e by unmixing. Under the
objects that hide part of the effect its opacity follows the caster's outline: the effect is
fitted as the caster's coverage, offset, blurred and spread (an editor's drop shadow or outer
glow), and drawn as that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.alpha import unmix
from layerlift.inference.backends.classic.masks import dilate
from scipy import ndimage

SQUARE = np.ones((3, 3), bool)

DEGREE = 3  # polynomial degree of the background model (a gradient, gently curved)
SAMPLES = 8_000  # grid samples the model is fitted on
FIT_ROUNDS = 4
# Levels: the model's misfit on background pixels that are no effect. A cubic follows a
# designer's gradient only to a few levels, so a tighter bound drops good background pixels
# from the fit; an effect's seeds are THRESHOLD (10) levels off, still outliers at 6.
INLIER = 6.0
MIN_INLIERS = 0.6  # share of the background's own pixels the model must explain
MAX_INLIER_RMS = 2.5  # levels
THRESHOLD = 10.0  # levels a pixel leaves the model by to seed an effect
MIN_AREA = 0.004  # of the picture: a smaller smudge is not worth a layer
# An effect's strongest opacity must reach this. Unmixed against the deepest colour of the
# cube, a tinted shadow (a dark blue, not black) reads fainter than it was drawn, and half
# hidden under its caster its strongest part is gone: 0.1 is still well above the seed
# THRESHOLD (10 levels, about 0.04), so it admits no noise.
MIN_STRENGTH = 0.1
# The one-colour story must hold this well (a tinted shadow's colour is estimated at the
# cube's edge, so its pixels sit a few levels off the line from it to the background) ...
UNMIX_TOLERANCE = 10.0 / 255.0
UNMIX_SHARE = 0.7  # ... on this share of the effect's seed pixels
# px beyond the seed where the effect's soft tail is still measured: a shadow blurred by
# 10 px still shows, a few levels deep, 20 px past where it is 10 levels deep.
REACH = 20
STYLE_GRID = 128  # px: the long side of the grid a layer style is fitted on
STYLE_SIGMAS = (0.008, 0.015, 0.025, 0.035, 0.05, 0.065)  # blur, of the short side
STYLE_SHIFT = 0.07  # of the short side: the farthest a shadow is offset from its caster
STYLE_SPREADS = (1.0, 1.5, 2.5)  # a glow's blurred coverage is boosted, then clipped
STYLE_MIN_FIT = 0.45  # share of the measured opacity's variance the style must explain


@dataclass
class Effect:
    """A soft effect layer over the whole canvas: colour (0-1) and opacity per pixel."""

    colour: np.ndarray  # (3,)
    alpha: np.ndarray  # (h, w) float32: measured where the background shows, else 0
    kind: str  # "shadow" or "glow"
    seed: np.ndarray  # (h, w) bool: the pixels that left the background model


def _features(
    ys: np.ndarray, xs: np.ndarray, h: int, w: int, centre: tuple[float, float] | None = None
) -> np.ndarray:
    """Polynomial terms up to DEGREE, or with `centre` (y, x) the terms of a radial gradient.

    A radial gradient's colour grows with the distance from its centre, a cone that no
    low-order polynomial follows near its apex.
    """
    scale = max(h, w) / 2.0
    x = (xs.astype(np.float64) - w / 2.0) / scale
    y = (ys.astype(np.float64) - h / 2.0) / scale
    if centre is not None:
        r = np.hypot(x - centre[1], y - centre[0])
        return np.stack([np.ones_like(x), x, y, r, r * r], axis=-1)
    terms = [np.ones_like(x)]
    for degree in range(1, DEGREE + 1):
        terms += [x ** (degree - i) * y**i for i in range(degree + 1)]
    return np.stack(terms, axis=-1)


def _robust_fit(feats: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(coefficients, inlier mask) of a least-squares fit that drops outliers, or None."""
    keep = np.ones(len(values), bool)
    for _ in range(FIT_ROUNDS):
        if keep.sum() < feats.shape[1] * 4:
            return None
        chosen = feats[keep]
        gram = chosen.T @ chosen + 1e-9 * np.eye(feats.shape[1])
        coef = np.linalg.solve(gram, chosen.T @ values[keep])
        misfit = np.abs(feats @ coef - values).max(axis=1)
        keep = misfit <= INLIER
    return coef, keep


def _centres(feats: np.ndarray, values: np.ndarray, keep: np.ndarray) -> list[tuple[float, float]]:
    """Candidate centres of a radial gradient: where a quadratic fit to the colour peaks."""
    quad = feats[:, :6]
    coef, *_ = np.linalg.lstsq(quad[keep], values[keep], rcond=None)
    out = []
    for c in range(values.shape[1]):
        _, bx, by, axx, axy, ayy = coef[:, c]
        hessian = np.array([[2 * axx, axy], [axy, 2 * ayy]])
        if abs(np.linalg.det(hessian)) < 1e-9:
            continue
        x, y = np.linalg.solve(hessian, [-bx, -by])
        if abs(x) < 1.5 and abs(y) < 1.5:
            out.append((float(y), float(x)))
    return out


def background_model(colour: np.ndarray, own: np.ndarray) -> np.ndarray | None:
    """The background's smooth colour (h, w, 3, 0-255) fitted robustly on `own`, or None.

    A polynomial follows flat colours and linear gradients, a cone radial ones; the better
    of the two is kept. None when neither explains most of the background (a texture, a
    photo): then there is no smooth background to lift effects off.
    """
    h, w = own.shape
    step = max(1, int(np.sqrt(h * w / SAMPLES)))
    ys, xs = np.nonzero(own[::step, ::step])
    if ys.size < 64:
        return None
    ys, xs = ys * step, xs * step
    values = colour[ys, xs].astype(np.float64)
    feats = _features(ys, xs, h, w)
    fitted = _robust_fit(feats, values)
    if fitted is None:
        return None
    best = (fitted[1].mean(), None, fitted[0])
    for centre in _centres(feats, values, fitted[1]):
        radial = _robust_fit(_features(ys, xs, h, w, centre), values)
        if radial is not None and radial[1].mean() > best[0]:
            best = (radial[1].mean(), centre, radial[0])
    share, centre, coef = best
    misfit = np.abs(_features(ys, xs, h, w, centre) @ coef - values).max(axis=1)
    inliers = misfit <= INLIER
    if share < MIN_INLIERS or np.sqrt((misfit[inliers] ** 2).mean()) > MAX_INLIER_RMS:
        return None
    return _evaluate(coef, h, w, centre)


def _evaluate(coef: np.ndarray, h: int, w: int, centre: tuple[float, float] | None) -> np.ndarray:
    """The model (h, w, 3) over the canvas, one term at a time from a row and a column.

    The terms are products of a function of x and one of y (or of the distance to the
    centre), so no (h * w, terms) matrix is ever built.
    """
    scale = max(h, w) / 2.0
    x = ((np.arange(w, dtype=np.float32) - w / 2.0) / scale)[None, :]
    y = ((np.arange(h, dtype=np.float32) - h / 2.0) / scale)[:, None]
    if centre is not None:
        r = np.hypot(x - np.float32(centre[1]), y - np.float32(centre[0]))
        terms = [np.ones((1, 1), np.float32), x, y, r, r * r]
    else:
        terms = [np.ones((1, 1), np.float32)]
        for degree in range(1, DEGREE + 1):
            terms += [x ** (degree - i) * y**i for i in range(degree + 1)]
    out = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        plane = out[..., c]
        for term, value in zip(terms, coef[:, c].astype(np.float32), strict=True):
            plane += term * value
    return out


def _edge_colour(pixels: np.ndarray, model: np.ndarray) -> np.ndarray:
    """C (0-1): the median of each pixel's ray from the model through it to the cube's edge."""
    span = pixels - model
    length = np.linalg.norm(span, axis=1, keepdims=True)
    direction = span / np.maximum(length, 1e-6)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_top = np.where(direction > 1e-6, (1.0 - model) / direction, np.inf)
        to_bottom = np.where(direction < -1e-6, -model / direction, np.inf)
    reach = np.minimum(to_top, to_bottom).min(axis=1, keepdims=True)
    return np.clip(np.median(model + reach * direction, axis=0), 0.0, 1.0)


def find_effects(colour: np.ndarray, own: np.ndarray, model: np.ndarray) -> list[Effect]:
    """Soft effects in the background layer `colour` (h, w, 3, 0-255) against `model`.

    `own`: the background's own pixels (where it shows); elsewhere objects hide it. A
    shadow darkens and a glow lightens, so where the two run into each other the darker and
    the lighter pixels are told apart.
    """
    h, w = own.shape
    difference = colour - model
    off = np.abs(difference).max(axis=2) > THRESHOLD
    off &= own
    if np.count_nonzero(off) < MIN_AREA * h * w:
        return []
    darker = difference.sum(axis=2) < 0
    pixels = colour.astype(np.float32) / 255.0
    base = np.clip(model, 0.0, 255.0) / 255.0
    effects = []
    for side in (darker, ~darker):
        seeds, count = ndimage.label(off & side)
        sizes = np.bincount(seeds.ravel(), minlength=count + 1)
        for label in np.flatnonzero(sizes >= MIN_AREA * h * w):
            if label == 0:
                continue
            effect = _effect(seeds == label, own, pixels, base)
            if effect is not None:
                effects.append(effect)
    return effects


def effect_at(
    seed: np.ndarray, colour: np.ndarray, own: np.ndarray, model: np.ndarray
) -> Effect | None:
    """The effect whose seed is `seed` (h, w bool) in `colour` against `model` (both 0-255),
    or None (see `find_effects`): a part of a smudge told apart from the rest."""
    if np.count_nonzero(seed) < MIN_AREA * seed.size:
        return None
    pixels = colour.astype(np.float32) / 255.0
    return _effect(seed, own, pixels, np.clip(model, 0.0, 255.0) / 255.0)


def _effect(
    seed: np.ndarray, own: np.ndarray, pixels: np.ndarray, base: np.ndarray
) -> Effect | None:
    """One smudge's effect layer, or None if one colour at varying opacity does not explain it."""
    colour = _edge_colour(pixels[seed], base[seed])
    a, res = unmix(pixels[seed], np.broadcast_to(colour, (int(seed.sum()), 3)), base[seed])
    fits = np.isfinite(a) & (res <= UNMIX_TOLERANCE)
    if fits.mean() < UNMIX_SHARE or np.nanmax(a) < MIN_STRENGTH:
        return None
    near = dilate(seed, REACH, SQUARE) & own
    a, res = unmix(pixels[near], np.broadcast_to(colour, (int(near.sum()), 3)), base[near])
    a = np.where(np.isfinite(a) & (res <= UNMIX_TOLERANCE), np.nan_to_num(a), 0.0)
    alpha = np.zeros(own.shape, np.float32)
    alpha[near] = a
    dark = float(colour.sum()) < float(base[seed].mean(axis=0).sum())
    kind = "shadow" if dark else "glow"
    return Effect(colour.astype(np.float32), alpha, kind, seed)


def _reduce_mean(values: np.ndarray, factor: int) -> np.ndarray:
    h, w = values.shape
    h2, w2 = h // factor, w // factor
    return values[: h2 * factor, : w2 * factor].reshape(h2, factor, w2, factor).mean(axis=(1, 3))


def fit_style(
    measured: np.ndarray, known: np.ndarray, caster: np.ndarray
) -> tuple[float, np.ndarray] | None:
    """The opacity of a drop shadow or outer glow of `caster` that best explains `measured`.

    An editor's shadow or glow is the caster's coverage, offset, blurred, boosted by a
    spread and clipped, at some opacity. Where the caster hides it, only that model can say
    what the effect is; it is fitted where the effect is seen (`known` pixels, where
    `measured` holds the unmixed opacity, zeros included). None when no style explains the
    measurement.
    """
    h, w = known.shape
    factor = max(1, -(-max(h, w) // STYLE_GRID))
    side = min(h, w) / factor
    a = _reduce_mean(np.where(known, measured, 0.0), factor)
    weight = _reduce_mean(known.astype(np.float32), factor) > 0.99
    cover = _reduce_mean(caster.astype(np.float32), factor)
    if weight.sum() < 32:
        return None
    values = a[weight]
    total = float(((values - values.mean()) ** 2).sum())
    if total <= 0:
        return None
    reach = max(1, round(STYLE_SHIFT * side))
    target = np.where(weight, a, 0.0).astype(np.float32)
    mask = weight.astype(np.float32)
    padded = np.zeros((a.shape[0] + 2 * reach, a.shape[1] + 2 * reach), np.float32)
    padded[reach:-reach, reach:-reach] = cover
    energy = float(values.astype(np.float64) @ values)
    best: tuple[float, float, float, float, int, int] | None = None
    for sigma in STYLE_SIGMAS:
        blurred = ndimage.gaussian_filter(padded, sigma * side, mode="constant")
        for spread in STYLE_SPREADS:
            boosted = np.minimum(blurred * spread, 1.0)
            # Every offset at once: sums of target * model and model^2 over the known pixels.
            am = _correlate_valid(boosted, target)
            mm = _correlate_valid(boosted * boosted, mask)
            with np.errstate(divide="ignore", invalid="ignore"):
                misfit = np.where(mm > 1e-6, energy - am * am / mm, np.inf)
            i, j = np.unravel_index(int(np.argmin(misfit)), misfit.shape)
            if best is None or misfit[i, j] < best[0]:
                best = (
                    float(misfit[i, j]),
                    float(am[i, j] / mm[i, j]),
                    sigma,
                    spread,
                    reach - int(i),
                    reach - int(j),
                )
    if best is None or 1.0 - best[0] / total < STYLE_MIN_FIT:
        return None
    misfit, strength, sigma, spread, dy, dx = best
    # Drawn on the fitting grid and enlarged: the effect is a blur at least a grid step wide,
    # and blurring at full size would cost far more than the rest of the fit.
    blurred = ndimage.gaussian_filter(padded, sigma * side, mode="constant")
    window = blurred[reach - dy : reach - dy + a.shape[0], reach - dx : reach - dx + a.shape[1]]
    small = np.clip(strength * np.minimum(window * spread, 1.0), 0.0, 1.0)
    return 1.0 - misfit / total, _enlarge(small.astype(np.float32), factor, h, w)


def _enlarge(small: np.ndarray, factor: int, h: int, w: int) -> np.ndarray:
    """A grid of `factor` x `factor` block values, bilinearly enlarged onto (h, w)."""
    if factor == 1:
        big = small
    else:
        big = ndimage.zoom(small, factor, order=1, mode="nearest", grid_mode=True)
    out = np.empty((h, w), np.float32)
    bh, bw = min(h, big.shape[0]), min(w, big.shape[1])
    out[:bh, :bw] = big[:bh, :bw]
    out[bh:, :bw] = out[bh - 1 : bh, :bw]
    out[:, bw:] = out[:, bw - 1 : bw]
    return out


def _correlate_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """`image` correlated with the smaller `kernel` at every offset where it fits whole.

    numpy's FFT rather than scipy.signal: the CPU bundle leaves scipy.signal and scipy.fft out
    (packaging/flavours.py), and a circular correlation at the image's own size has no
    wrap-around in the offsets kept. In double precision: numpy transforms float32 in single
    precision, whose rounding (a millionth of the whole sum) swamps the sums at offsets where
    the model barely reaches the known pixels, and a misfit there came out below zero.
    """
    rows, cols = image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1
    image, kernel = image.astype(np.float64), kernel.astype(np.float64)
    spectrum = np.fft.rfft2(image, image.shape) * np.conj(np.fft.rfft2(kernel, image.shape))
    return np.fft.irfft2(spectrum, image.shape)[:rows, :cols]
