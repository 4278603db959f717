"""Shape completion beyond the convex hull: boxes and ellipses.

The convex hull of a shape's visible part is a safe completion (it never invents more than the
visible part implies) but it cuts corners: a card with a corner under a badge gets a diagonal
corner, and a circle with a quarter hidden gets a chord. Flat designs are mostly boxes and
ellipses, so two stronger completions are tried once the z-order is known:

- box: when the shape's bounding box holds, apart from the shape, only things above it (and a
  few pixels of rounded corners), the shape continues under them to its box;
- ellipse: an ellipse is fitted (Fitzgibbon's direct least squares, in Halir and Flusser's
  stable form) to the shape's *free* boundary, the part that borders what lies beneath it,
  which is the shape's true outline. It is accepted only if it contains the visible part and
  spills nowhere but under the objects above.

Both only ever add pixels that lie under objects above the shape, so the visible picture is
never contradicted.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.masks import dilate
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

BOX_CORNER_SHARE = 0.04  # share of the box that may be beneath (rounded corners)
ELLIPSE_MIN_POINTS = 12
ELLIPSE_COVER = 0.97  # the ellipse must hold this share of the visible part
ELLIPSE_SPILL = 0.03  # and may put at most this share of its area onto what lies beneath
ELLIPSE_ON_CURVE = 1.0  # px: 90 % of the outline must lie this close to the ellipse
# On a noisy picture (JPEG, resampled, grain) the outline found wanders about half a pixel
# further: a disc's arc there fails the clean tolerance and is left a cut-off hull.
NOISY_ON_CURVE = 1.5


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """`mask` filled to its convex hull (through pixel centres), same shape."""
    edge = mask & ~ndimage.binary_erosion(mask)
    ys, xs = np.nonzero(edge)
    if len(xs) < 3:
        return mask
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # collinear: a line is its own hull
        return mask
    image = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    vertices = [(float(x), float(y)) for x, y in points[hull.vertices]]
    ImageDraw.Draw(image).polygon(vertices, fill=1, outline=1)
    return np.asarray(image, bool) | mask


def box_completion(own: np.ndarray, above: np.ndarray, below: np.ndarray) -> np.ndarray | None:
    """The shape's bounding box as its extent, or None when the box is not plausible.

    Arrays are the element's working box; the result has the same shape.
    """
    ys, xs = np.nonzero(own)
    if ys.size == 0:
        return None
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    area = (bottom - top) * (right - left)
    inside_above = above[top:bottom, left:right].sum()
    inside_below = below[top:bottom, left:right].sum()
    if inside_above == 0 or inside_below > BOX_CORNER_SHARE * area:
        return None
    extent = np.zeros(own.shape, bool)
    extent[top:bottom, left:right] = True
    return extent


def _fit_conic(xs: np.ndarray, ys: np.ndarray) -> np.ndarray | None:
    """Conic coefficients (a, b, c, d, e, f) of the best ellipse through the points, or None."""
    x = xs.astype(np.float64)
    y = ys.astype(np.float64)
    d1 = np.stack([x * x, x * y, y * y], axis=1)
    d2 = np.stack([x, y, np.ones_like(x)], axis=1)
    s1, s2, s3 = d1.T @ d1, d1.T @ d2, d2.T @ d2
    try:
        t = -np.linalg.solve(s3, s2.T)
    except np.linalg.LinAlgError:
        return None
    m = s1 + s2 @ t
    m = np.array([m[2] / 2.0, -m[1], m[0] / 2.0])
    try:
        _, vectors = np.linalg.eig(m)
    except np.linalg.LinAlgError:
        return None
    vectors = np.real(vectors)
    cond = 4.0 * vectors[0] * vectors[2] - vectors[1] ** 2
    picks = np.flatnonzero(cond > 0)
    if picks.size == 0:
        return None
    a1 = vectors[:, picks[0]]
    return np.concatenate([a1, t @ a1])


def ellipse_completion(
    own: np.ndarray, above: np.ndarray, below: np.ndarray, on_curve: float = ELLIPSE_ON_CURVE
) -> np.ndarray | None:
    """An ellipse fitted to the boundary the shape shares with what lies beneath, or None.

    `on_curve`: px, how close to the ellipse 90 % of that boundary must lie.
    """
    h, w = own.shape
    cross = ndimage.generate_binary_structure(2, 1)
    free = own & dilate(below, 1, cross)
    free[0, :] = free[-1, :] = False
    free[:, 0] = free[:, -1] = False
    ys, xs = np.nonzero(free)
    if ys.size < ELLIPSE_MIN_POINTS:
        return None
    cx, cy = xs.mean(), ys.mean()
    scale = max(xs.std(), ys.std(), 1.0)
    conic = _fit_conic((xs - cx) / scale, (ys - cy) / scale)
    if conic is None:
        return None
    a, b, c, d, e, f = conic
    # The outline must lie on the ellipse (Sampson distance, in pixels): a triangle's edges
    # also admit an ellipse that holds the triangle, but not one through its edges.
    px, py = (xs - cx) / scale, (ys - cy) / scale
    value_at = a * px * px + b * px * py + c * py * py + d * px + e * py + f
    grad = np.hypot(2 * a * px + b * py + d, b * px + 2 * c * py + e)
    distance = np.abs(value_at) / np.maximum(grad, 1e-12) * scale
    if np.percentile(distance, 90) > on_curve:
        return None
    gx = (np.arange(w, dtype=np.float64) - cx) / scale
    gy = (np.arange(h, dtype=np.float64) - cy) / scale
    value = (a * gx[None, :] ** 2 + b * gx[None, :] * gy[:, None] + c * gy[:, None] ** 2
             + d * gx[None, :] + e * gy[:, None] + f)
    # The inside is where the conic has the sign it has at the ellipse's centre.
    det = 4 * a * c - b * b
    if det <= 0:
        return None
    x0 = (b * e - 2 * c * d) / det
    y0 = (b * d - 2 * a * e) / det
    centre = a * x0 * x0 + b * x0 * y0 + c * y0 * y0 + d * x0 + e * y0 + f
    inside = value * np.sign(centre) > 0
    if not inside.any() or inside.all():
        return None
    # Measured one pixel in from both outlines: the fitted curve runs through the centres of
    # the shape's outermost pixels, so half of that ring is outside it by construction.
    core = ndimage.binary_erosion(own, cross)
    body = ndimage.binary_erosion(inside, cross)
    held = (inside & core).sum() / max(core.sum(), 1)
    spill = (body & below).sum() / max(body.sum(), 1)
    if held < ELLIPSE_COVER or spill > ELLIPSE_SPILL:
        return None
    return inside
