"""Translucent shapes: telling a see-through object from the colours it makes.

A shape of colour F at opacity a shows as ``a F + (1 - a) U`` over whatever U lies beneath it,
so one translucent shape becomes several flat regions, one per thing it covers. Two pieces of
evidence recover (a, F):

- overlap: where the shape X lies over the background W and, next to it, over another shape Z
  (the piece Y), ``X - Y = (1 - a)(W - Z)``. The colour difference across the hidden outline of
  Z is the difference beneath, scaled by the transparency. If the two differences are parallel
  and the scale is in (0, 1), the shape is translucent, and X and Y are one layer;
- gradient: over a background gradient (or a soft shadow), the shape's colour just inside its
  outline follows the colour just outside it, scaled by (1 - a). Pieces of one shape found
  this way with the same (a, F) are one layer.

Over a flat background a translucent shape is indistinguishable from an opaque one of the
blended colour, and stays opaque: the stack recomposites exactly either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.facts import UnitFacts
from layerlift.inference.backends.classic.masks import dilate

MIN_CONTRAST = 20.0  # levels: the colours beneath must differ this much to measure anything
TOLERANCE = 12.0  # levels of disagreement allowed in X - Y = (1 - a)(W - Z)
MIN_ALPHA, MAX_ALPHA = 0.05, 0.9
BOUNDARY_REACH = 4  # px each side of a boundary where pairs of colours are measured
MIN_SIDE = 12  # pixels needed on each side
MIN_SPREAD = 6.0  # levels (std) the colour beneath must vary along a boundary
FIT_RMS = 4.0  # levels: largest misfit of a tint fitted along a boundary
MIN_TILES = 4
SAME_ALPHA, SAME_COLOUR = 0.08, 16.0


@dataclass(frozen=True)
class Tint:
    """A translucent layer: constant colour (0-255) at constant opacity."""

    alpha: float
    colour: tuple[float, float, float]

    def over(self, under: np.ndarray) -> np.ndarray:
        """What the tint shows over colour(s) `under`: a F + (1 - a) U."""
        return self.alpha * np.asarray(self.colour, np.float64) + (1.0 - self.alpha) * under

    def off(self, seen: np.ndarray) -> np.ndarray:
        """What lies beneath colour(s) `seen`: the tint taken off them (the inverse of `over`)."""
        return (seen - self.alpha * np.asarray(self.colour, np.float64)) / (1.0 - self.alpha)


def _solve_tint(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, z: np.ndarray
) -> tuple[float, Tint] | None:
    """(misfit, tint) if X over W and Y over Z are one translucent colour, else None."""
    beneath = w - z
    length = float(beneath @ beneath)
    if np.sqrt(length) < MIN_CONTRAST:
        return None
    seen = x - y
    k = float(seen @ beneath) / length
    misfit = float(np.abs(seen - k * beneath).max())
    alpha = 1.0 - k
    if misfit > TOLERANCE or not MIN_ALPHA <= alpha <= MAX_ALPHA:
        return None
    tint = _tint_in_cube(alpha, (x - k * w) / alpha)
    return None if tint is None else (misfit, tint)


def _across(facts: UnitFacts, a: int, b: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean colours of `a` and of `b` within BOUNDARY_REACH px of their shared boundary.

    Measured side by side, a pair compares what one shape looks like over two things at the
    same place, which holds even over gradients and soft shadows.
    """
    box_a, box_b = facts.boxes[a], facts.boxes[b]
    if box_a is None or box_b is None:
        return None
    h, w = facts.own.shape
    top = max(0, min(box_a[0], box_b[0]) - 1)
    left = max(0, min(box_a[1], box_b[1]) - 1)
    bottom = min(h, max(box_a[2], box_b[2]) + 1)
    right = min(w, max(box_a[3], box_b[3]) + 1)
    own = facts.own[top:bottom, left:right]
    labels = facts.labels[top:bottom, left:right]
    near_b = dilate(own == b, BOUNDARY_REACH)
    near_a = dilate(own == a, BOUNDARY_REACH)
    side_a, side_b = (labels == a) & near_b, (labels == b) & near_a
    if side_a.sum() < MIN_SIDE or side_b.sum() < MIN_SIDE:
        return None
    rgb = facts.rgb[top:bottom, left:right].astype(np.float64)
    return rgb[side_a].mean(axis=0), rgb[side_b].mean(axis=0)


def overlap_tints(facts: UnitFacts, candidates: list[int]) -> list[tuple[int, int, Tint]]:
    """(X, Y, tint): units X and Y that are one translucent shape, over W and over Z.

    W and Z may be one unit seen at two places (a gradient under a see-through shape).
    """
    allowed = set(candidates)
    found: list[tuple[float, int, int, Tint]] = []
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray] | None] = {}

    def across(a: int, b: int) -> tuple[np.ndarray, np.ndarray] | None:
        if (a, b) not in cache:
            cache[(a, b)] = _across(facts, a, b)
        return cache[(a, b)]

    for x in candidates:
        for y in facts.neighbours.get(x, {}):
            if y not in allowed or y <= x:
                continue
            for first, second in ((x, y), (y, x)):
                for w in facts.neighbours.get(first, {}):
                    if w in (x, y):
                        continue
                    pair_w = across(first, w)
                    if pair_w is None:
                        continue
                    for z in facts.neighbours.get(second, {}):
                        if z in (x, y):
                            continue
                        if z != w and w not in facts.neighbours.get(z, {}):
                            continue  # Z's outline must continue out from under the shape
                        pair_z = across(second, z)
                        if pair_z is None:
                            continue
                        result = _solve_tint(pair_w[0], pair_z[0], pair_w[1], pair_z[1])
                        if result is not None:
                            found.append((result[0], x, y, result[1]))
    found.sort(key=lambda item: (item[0], item[1], item[2]))
    used: set[int] = set()
    pairs = []
    for _, x, y, tint in found:
        if x in used or y in used:
            continue
        used.update((x, y))
        pairs.append((x, y, tint))
    return pairs


def shows_tint(facts: UnitFacts, unit: int, tint: Tint, beside: int) -> bool:
    """Is `unit` the see-through `tint` over `beside`, the unit across its boundary?

    A see-through shape over the background and over other shapes breaks into pieces; one
    whose tint was measured tells what its other pieces look like: a F + (1 - a) U over
    whatever U lies beside them, read side by side along the boundary (so it holds over a
    gradient). The piece must differ from U (MIN_CONTRAST) to tell anything.
    """
    pair = _across(facts, unit, beside)
    if pair is None:
        return False
    seen, under = pair
    if np.sqrt(float(((seen - under) ** 2).sum())) < MIN_CONTRAST:
        return False
    return bool(np.abs(tint.over(under) - seen).max() <= TOLERANCE)


def gradient_tint(facts: UnitFacts, unit: int, beneath: int) -> Tint | None:
    """A tint for `unit` from how its colour follows a varying `beneath` along their boundary.

    The boundary is cut into tiles; in each tile the unit's colour and the colour beneath
    (just outside) are averaged. A translucent shape repeats the variation beneath, scaled by
    (1 - a); an opaque one does not vary at all.
    """
    pair = _boundary_tiles(facts, unit, beneath)
    return None if pair is None else tint_over(*pair)


def _boundary_tiles(
    facts: UnitFacts, a: int, b: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-tile mean colours (n, 3) of `a` and of `b` along their shared boundary."""
    box_a, box_b = facts.boxes[a], facts.boxes[b]
    if box_a is None or box_b is None:
        return None
    h, w = facts.own.shape
    top, left = max(0, box_a[0] - 1), max(0, box_a[1] - 1)
    bottom, right = min(h, box_a[2] + 1), min(w, box_a[3] + 1)
    own = facts.own[top:bottom, left:right]
    labels = facts.labels[top:bottom, left:right]
    side_a = (labels == a) & dilate(own == b, BOUNDARY_REACH)
    side_b = (labels == b) & dilate(own == a, BOUNDARY_REACH)
    if side_a.sum() < MIN_SIDE or side_b.sum() < MIN_SIDE:
        return None
    tile = max(8, min(h, w) // 32)
    ys, xs = np.mgrid[0 : bottom - top, 0 : right - left]
    index = (ys // tile) * ((right - left) // tile + 1) + xs // tile
    rgb = facts.rgb[top:bottom, left:right].astype(np.float64)
    size = int(index.max()) + 1
    means = []
    for side in (side_a, side_b):
        count = np.bincount(index[side], minlength=size)
        sums = np.stack([np.bincount(index[side], rgb[side][:, c], minlength=size)
                         for c in range(3)], axis=1)
        means.append((count, sums))
    keep = (means[0][0] >= 4) & (means[1][0] >= 4)
    if keep.sum() < MIN_TILES:
        return None
    return tuple(sums[keep] / count[keep][:, None] for count, sums in means)


def same_tint(a: Tint, b: Tint) -> bool:
    """Are two tints one see-through colour measured twice?"""
    colour = np.abs(np.subtract(a.colour, b.colour)).max()
    return abs(a.alpha - b.alpha) <= SAME_ALPHA and colour <= SAME_COLOUR


def tint_over(seen: np.ndarray, under: np.ndarray, to_cube: bool = False) -> Tint | None:
    """A tint for a shape whose pixels `seen` (n, 3, 0-255) lie over the colours `under` it.

    Where what lies beneath a shape varies (a soft shadow or glow drawn under it), a
    see-through shape repeats that variation scaled by (1 - a); an opaque one shows none of
    it: seen = a * colour + (1 - a) * under, fitted by least squares on the deviations from
    the means. `gradient_tint` feeds it boundary tiles and their neighbour's colour;
    `effects` feeds it pixels and the effect lifted beneath them.

    With `to_cube`, a colour outside the colour cube is brought to its edge by the least
    opacity that allows it, when that still fits: a fitted effect is weakest where its caster
    hides it, and an effect drawn too faint beneath a shape reads as too little opacity.
    """
    mean_s, mean_u = seen.mean(axis=0), under.mean(axis=0)
    ds, du = seen - mean_s, under - mean_u
    spread = float(np.sqrt((du * du).sum(axis=1).mean()))
    if spread < MIN_SPREAD:
        return None
    k = float((ds * du).sum() / (du * du).sum())
    alpha = 1.0 - k
    if to_cube and MIN_ALPHA <= alpha <= MAX_ALPHA:
        alpha = max(alpha, _least_opacity(mean_s, mean_u))
        k = 1.0 - alpha
    misfit = float(np.sqrt(((ds - k * du) ** 2).sum(axis=1).mean()))
    if misfit > FIT_RMS or not MIN_ALPHA <= alpha <= MAX_ALPHA:
        return None
    return _tint_in_cube(alpha, (mean_s - k * mean_u) / alpha)


def _tint_in_cube(alpha: float, colour: np.ndarray) -> Tint | None:
    """The tint of `colour` (3,) at `alpha`, or None when the colour leaves the cube by more
    than TOLERANCE: an unmixed colour far outside it means the one-tint story is wrong."""
    if colour.min() < -TOLERANCE or colour.max() > 255.0 + TOLERANCE:
        return None
    colour = np.clip(colour, 0.0, 255.0)
    return Tint(alpha, (float(colour[0]), float(colour[1]), float(colour[2])))


def _least_opacity(seen: np.ndarray, under: np.ndarray) -> float:
    """The least opacity of a colour in the cube that makes `under` (3,) look `seen` (3,)."""
    d = seen - under
    room = np.where(d > 0, 255.0 - under, under)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(np.abs(d) > 1e-9, np.abs(d) / np.maximum(room, 1e-9), 0.0)
    return float(need.max())
