"""Low-order colour models of regions: a constant, a plane or a quadratic per channel.

Flat designs fill areas with one colour or a linear gradient (a quadratic also follows gentle
radial ones), so a polynomial of degree <= 2 in (x, y) describes a region's colour everywhere,
including where another object hides it. That is what completes backgrounds and occluded shapes
without any learned prior; where no polynomial fits, `completion.push_pull` fills instead.

The fits are least squares from normal equations. Their sums are accumulated for every unit at
once with ``np.bincount`` (one pass per product term, on a sampling grid for large pictures), so
the models of any union of units (a text line, a background made of several pieces) are just
sums of rows, with no second pass over the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TERMS = 6  # 1, x, y, x^2, xy, y^2
DEGREE_TERMS = {0: 1, 1: 3, 2: 6}
# Degrees are tried upwards until the RMS error is at most GOOD_FIT levels (0-255); a model is
# used for completion when it reaches USABLE_FIT.
GOOD_FIT = 2.0
USABLE_FIT = 3.0
# The polynomial terms are summed over a regular grid of at most this many pixels (a fit
# needs far fewer); counts and colour means use every pixel, so small units stay exact.
MAX_SAMPLES = 300_000
MIN_SAMPLES = 24  # fewer grid samples than this: the unit gets its exact constant colour


def _features(ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, 6) float64 terms on coordinates normalised to about [-1, 1]."""
    scale = max(h, w) / 2.0
    x = (xs.astype(np.float64) - w / 2.0) / scale
    y = (ys.astype(np.float64) - h / 2.0) / scale
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


@dataclass
class UnitSums:
    """Per-unit sums. On the sampling grid: ff (n, 6, 6), fc (n, 6, 3), cc (n, 3), count (n,)
    (all scaled up to the full picture) and samples (n,); over every pixel: pixels (n,),
    colour (n, 3) and squares (n, 3)."""

    ff: np.ndarray
    fc: np.ndarray
    cc: np.ndarray
    count: np.ndarray
    samples: np.ndarray
    pixels: np.ndarray
    colour: np.ndarray
    squares: np.ndarray
    h: int
    w: int

    def total(self, units: list[int] | np.ndarray) -> UnitSums:
        """Sums of a union of units, as a one-row UnitSums."""
        idx = np.asarray(units, np.int64)
        rows = [
            getattr(self, name)[idx].sum(0, keepdims=True)
            for name in ("ff", "fc", "cc", "count", "samples", "pixels", "colour", "squares")
        ]
        return UnitSums(*rows, self.h, self.w)

    def mean_colour(self) -> np.ndarray:
        """(n, 3) exact mean colour of each row, 0-255."""
        return self.colour / np.maximum(self.pixels, 1)[:, None]

    def constant_rms(self) -> np.ndarray:
        """(n,) exact RMS of each row about its mean colour (the degree-0 fit)."""
        n = np.maximum(self.pixels, 1)[:, None]
        var = self.squares / n - (self.colour / n) ** 2
        return np.sqrt(np.maximum(var, 0.0).mean(axis=1))


def accumulate(labels: np.ndarray, rgb: np.ndarray, count: int) -> UnitSums:
    """Sums of the pixels of units 1..count (label 0 is ignored)."""
    h, w = labels.shape
    size = count + 1
    flat_labels = labels.ravel()
    flat_rgb = rgb.reshape(-1, 3)
    inside = flat_labels > 0
    lab_all = flat_labels[inside]
    rgb_all = flat_rgb[inside].astype(np.float64)
    pixels = np.bincount(lab_all, minlength=size).astype(np.float64)
    colour = np.stack([np.bincount(lab_all, rgb_all[:, c], minlength=size) for c in range(3)], 1)
    squares = np.stack(
        [np.bincount(lab_all, rgb_all[:, c] ** 2, minlength=size) for c in range(3)], 1
    )
    del lab_all, rgb_all

    step = max(1, int(np.ceil(np.sqrt(labels.size / MAX_SAMPLES))))
    sub = labels[::step, ::step]
    ys, xs = np.nonzero(sub > 0)
    lab = sub[ys, xs].astype(np.int64)
    colours = rgb[::step, ::step][ys, xs].astype(np.float64)
    feats = _features(ys * step, xs * step, h, w)
    scale = float(step * step)
    samples = np.bincount(lab, minlength=size).astype(np.float64)
    ff = np.zeros((size, TERMS, TERMS))
    for i in range(TERMS):
        for j in range(i, TERMS):
            total = np.bincount(lab, feats[:, i] * feats[:, j], minlength=size) * scale
            ff[:, i, j] = total
            ff[:, j, i] = total
    fc = np.zeros((size, TERMS, 3))
    cc = np.zeros((size, 3))
    for c in range(3):
        for i in range(TERMS):
            fc[:, i, c] = np.bincount(lab, feats[:, i] * colours[:, c], minlength=size) * scale
        cc[:, c] = np.bincount(lab, colours[:, c] ** 2, minlength=size) * scale
    return UnitSums(ff, fc, cc, samples * scale, samples, pixels, colour, squares, h, w)


@dataclass
class ColourModel:
    """A fitted polynomial colour (0-255) and its RMS error over the pixels it was fitted on."""

    degree: int
    coef: np.ndarray  # (6, 3), zero beyond the degree's terms
    rms: float
    h: int
    w: int

    @property
    def good(self) -> bool:
        return self.rms <= USABLE_FIT

    def evaluate(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """(height, width, 3) float32 colour 0-255 on the box at (top, left).

        Built from a row and a column of coordinates by broadcasting, so a full 16-megapixel
        background costs a few float32 planes and no (pixels x terms) matrix.
        """
        scale = max(self.h, self.w) / 2.0
        x = ((np.arange(left, left + width, dtype=np.float64) - self.w / 2.0) / scale)[None, :]
        y = ((np.arange(top, top + height, dtype=np.float64) - self.h / 2.0) / scale)[:, None]
        out = np.empty((height, width, 3), np.float32)
        for c in range(3):
            k = self.coef[:, c]
            out[..., c] = k[0] + k[1] * x + k[2] * y + k[3] * x * x + k[4] * x * y + k[5] * y * y
        return out


def solve(sums: UnitSums, terms: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (n, terms, 3) and RMS (n,) of each row's fit with the first `terms` terms."""
    a = sums.ff[:, :terms, :terms].copy()
    b = sums.fc[:, :terms, :]
    ridge = 1e-6 * np.maximum(sums.count, 1)
    a[:, np.arange(terms), np.arange(terms)] += ridge[:, None]
    coef = np.linalg.solve(a, b)
    # Sum of squared residuals: cc - 2 coef.b + coef.A.coef, per channel.
    sse = (
        sums.cc
        - 2.0 * np.einsum("nic,nic->nc", coef, b)
        + np.einsum("nic,nij,njc->nc", coef, sums.ff[:, :terms, :terms], coef)
    )
    rms = np.sqrt(np.maximum(sse.sum(-1), 0.0) / (3.0 * np.maximum(sums.count, 1)))
    return coef, rms


def fit_rows(sums: UnitSums) -> tuple[np.ndarray, np.ndarray]:
    """RMS of the constant and of the quadratic fit for every row: (rms0 (n,), rms2 (n,)).

    Rows with too few grid samples for a quadratic get their constant RMS for both.
    """
    rms0 = sums.constant_rms()
    _, rms2 = solve(sums, 6)
    return rms0, np.where(sums.samples >= MIN_SAMPLES, rms2, rms0)


def _constant(sums: UnitSums) -> ColourModel:
    coef = np.zeros((TERMS, 3))
    coef[0] = sums.mean_colour()[0]
    return ColourModel(0, coef, float(sums.constant_rms()[0]), sums.h, sums.w)


def fit(sums: UnitSums) -> ColourModel:
    """The lowest-degree model of a one-row UnitSums that fits (else the quadratic)."""
    if sums.pixels[0] <= 0:
        return ColourModel(0, np.zeros((TERMS, 3)), 0.0, sums.h, sums.w)
    best = _constant(sums)
    if best.rms <= GOOD_FIT or sums.samples[0] < MIN_SAMPLES:
        return best
    for degree, terms in DEGREE_TERMS.items():
        if degree == 0:
            continue
        if sums.samples[0] < 4 * terms:
            break
        coef, rms = solve(sums, terms)
        full = np.zeros((TERMS, 3))
        full[:terms] = coef[0]
        best = ColourModel(degree, full, float(rms[0]), sums.h, sums.w)
        if best.rms <= GOOD_FIT:
            break
    return best
