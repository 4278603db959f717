"""Z-order of the elements and the extent each one is completed to.

An object partly hidden by another shows a bite: its visible part is not convex where the
occluder cuts it, so its convex hull reaches into the occluder's territory, while the occluder's
hull stays within its own. "A's extent covers part of B" is therefore evidence that A lies under
B, weighed by how much more of B it covers than B's extent covers of A (`_weighed`). The
extent is also what a layer is completed to:

- shapes: the convex hull of the visible part (a circle under a card becomes a full circle);
- photos: their rectangle; textures: their territory with holes filled;
- text: its glyphs only (nothing is hidden under a letter that belongs to it).

A see-through shape adds a second, stronger piece of evidence (`see_through_evidence`): where
it lies over another element, its colour beside that element's outline is its tint over that
element's colour, which only holds with it on top.

The order is built bottom-up, greedily: the next layer is the one the fewest remaining elements
are evidently under; ties go by kind (photos, then shapes, then text) and then to the larger
element (big things tend to be further down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.facts import Box
from layerlift.inference.backends.classic.grouping import Element
from layerlift.inference.backends.classic.masks import dilate
from layerlift.inference.backends.classic.shapes import convex_hull, ellipse_completion
from scipy import ndimage

NOISE = 0.02  # evidence below this share is rasterisation noise
NOISE_PX = 20  # on a clean picture, evidence of fewer pixels is rasterisation noise too
SEE_THROUGH_REACH = 3  # px each side of an outline where a tint over a neighbour is checked
SEE_THROUGH_SIDE = 12  # pixels needed on each side
SEE_THROUGH_FIT = 10.0  # levels: largest misfit of "tint over the neighbour's colour"
SEE_THROUGH_MARGIN = 6.0  # levels the fit must beat the reverse order's fit by
SEE_THROUGH_MIN_ALPHA = 0.3  # a fainter tint leaves almost any colour beneath in the cube
SEE_THROUGH_AROUND = 0.75  # of a piece's outline a see-through shape must hold to enclose it
# Levels the colour beneath must lie inside the cube by: the tint's error is magnified by
# 1 / (1 - a) in it, and a piece on top whose colour is the tint's own, darker or lighter,
# gives a colour beneath just at the cube's edge.
SEE_THROUGH_INSIDE = 16.0
SEE_THROUGH_MATCH = 24.0  # levels: what a see-through shape hides matches the shape beneath
# Without evidence, photos go under shapes and text over them, as designs are usually built.
KIND_RANK = {
    "background": 0, "photo": 1, "texture": 1, "effect": 1, "shape": 2, "detail": 3, "text": 3,
}


@dataclass
class Extent:
    """A boolean mask of what an element covers once completed, within `box`.

    `evidence`, when set, is the wider mask (same box) the z-order weighs instead: what the
    element may plausibly cover, which is not yet sure enough to complete it to.
    """

    box: Box
    mask: np.ndarray
    evidence: np.ndarray | None = None


def territory_boxes(emap: np.ndarray, count: int) -> list[Box | None]:
    slices = ndimage.find_objects(emap + 1, max_label=count)
    return [None if s is None else (s[0].start, s[1].start, s[0].stop, s[1].stop) for s in slices]


def extent(
    element: Element,
    index: int,
    emap: np.ndarray,
    box: Box,
    background: int | None = None,
    on_curve: float | None = None,
) -> Extent:
    """What `element` (number `index` in `emap`) covers once completed.

    `on_curve`: a looser outline tolerance for noisy pictures (see `_shape_extent`).
    """
    if element.kind == "shape" and background is not None:
        return _shape_extent(index, emap, box, background, on_curve)
    top, left, bottom, right = box
    own = emap[top:bottom, left:right] == index
    if element.kind == "background":
        return Extent((0, 0, emap.shape[0], emap.shape[1]), np.ones(emap.shape, bool))
    if element.kind == "photo" and element.rect is not None:
        rt, rl, rb, rr = element.rect
        return Extent(element.rect, np.ones((rb - rt, rr - rl), bool))
    if element.kind == "text":
        return Extent(box, own)
    if element.kind in ("texture", "effect"):
        return Extent(box, ndimage.binary_fill_holes(own))
    return Extent(box, convex_hull(own))


def _shape_extent(
    index: int, emap: np.ndarray, box: Box, background: int, on_curve: float | None = None
) -> Extent:
    """A shape's hull, plus the ellipse its outline against the background implies.

    A disc mostly hidden under a card shows as a cap whose hull ends at the card's edge, but
    the arc of the cap continues: the fitted ellipse reaches under the card, which is the
    evidence that the cap lies beneath it.

    On a noisy picture the arc's outline wanders and the clean fit is refused, so a cap cut
    by a straight edge keeps a hull that never crosses it and gives no evidence at all. An
    ellipse within the looser `on_curve` tolerance then counts as evidence only: where it is
    wrong the completion would be, while a wrong vote is outweighed by the other pairs.
    """
    h, w = emap.shape
    grow_y, grow_x = (box[2] - box[0]) // 2 + 1, (box[3] - box[1]) // 2 + 1
    top, left = max(0, box[0] - grow_y), max(0, box[1] - grow_x)
    bottom, right = min(h, box[2] + grow_y), min(w, box[3] + grow_x)
    crop = emap[top:bottom, left:right]
    own = crop == index
    mask = convex_hull(own)
    below = crop == background
    above = (crop >= 0) & ~own & ~below
    ellipse = ellipse_completion(own, above, below)
    if ellipse is not None:
        return Extent((top, left, bottom, right), mask | ellipse)
    if on_curve is not None:
        loose = ellipse_completion(own, above, below, on_curve)
        if loose is not None:
            return Extent((top, left, bottom, right), mask, mask | loose)
    return Extent((top, left, bottom, right), mask)


def _side_means(
    emap: np.ndarray, rgb: np.ndarray, top: int, left: int, bottom: int, right: int,
    a: int, b: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean colours of `a` and of `b` within SEE_THROUGH_REACH px of their shared outline."""
    crop = emap[top:bottom, left:right]
    own_a, own_b = crop == a, crop == b
    side_a = own_a & dilate(own_b, SEE_THROUGH_REACH)
    side_b = own_b & dilate(own_a, SEE_THROUGH_REACH)
    if side_a.sum() < SEE_THROUGH_SIDE or side_b.sum() < SEE_THROUGH_SIDE:
        return None
    colours = rgb[top:bottom, left:right].astype(np.float64)
    return colours[side_a].mean(axis=0), colours[side_b].mean(axis=0)


def _over_misfit(element: Element, seen: np.ndarray, beneath: np.ndarray) -> float:
    """How far `seen` is from the element's tint laid over `beneath` (inf without a tint)."""
    if element.tint is None:
        return float("inf")
    return float(np.abs(element.tint.over(beneath) - seen).max())


def see_through_evidence(
    elements: list[Element], emap: np.ndarray, rgb: np.ndarray, background: int | None
) -> list[tuple[int, int]]:
    """(upper, lower) pairs read from the colour of a see-through shape beside another element.

    Where see-through A lies over B, A's pixels along B's visible outline show A's tint over
    B's colour, ``a_A c_A + (1 - a_A) B``, with B's pixels just across the outline; with B on
    top the colours there follow B's tint over A instead. Shapes that lie entirely inside
    another, or only abut, fit neither and give no evidence; a fit that does not clearly beat
    the reverse order gives none either. Only shapes are weighed: text lies on top and
    effects beneath their shape whatever the colours say.
    """
    h, w = emap.shape
    pairs: list[tuple[int, int]] = []
    for upper, element in enumerate(elements):
        if element.tint is None or element.kind != "shape" or upper == background:
            continue
        rows, cols = np.nonzero(emap == upper)
        if not rows.size:
            continue
        top = max(0, int(rows.min()) - SEE_THROUGH_REACH - 1)
        left = max(0, int(cols.min()) - SEE_THROUGH_REACH - 1)
        bottom = min(h, int(rows.max()) + SEE_THROUGH_REACH + 2)
        right = min(w, int(cols.max()) + SEE_THROUGH_REACH + 2)
        crop = emap[top:bottom, left:right]
        ring = dilate(crop == upper, SEE_THROUGH_REACH) & (crop != upper) & (crop >= 0)
        for lower in np.unique(crop[ring]).tolist():
            if elements[lower].kind != "shape":
                continue  # text, effects and photos have their own place in the stack
            means = _side_means(emap, rgb, top, left, bottom, right, upper, lower)
            if means is None:
                continue
            mine, theirs = means
            if enclosed_by(emap, lower) == upper and shows_under(element, rgb, emap, lower):
                pairs.append((upper, lower))
                continue
            fit = _over_misfit(element, mine, theirs)
            reverse = _over_misfit(elements[lower], theirs, mine)
            if fit <= SEE_THROUGH_FIT and fit + SEE_THROUGH_MARGIN <= reverse:
                pairs.append((upper, lower))
    return pairs


def enclosed_by(emap: np.ndarray, index: int) -> int | None:
    """The element holding SEE_THROUGH_AROUND of the ring around `index`'s pixels, or None."""
    rows, cols = np.nonzero(emap == index)
    if not rows.size:
        return None
    h, w = emap.shape
    top, left = max(0, int(rows.min()) - 2), max(0, int(cols.min()) - 2)
    bottom, right = min(h, int(rows.max()) + 3), min(w, int(cols.max()) + 3)
    if top == 0 or left == 0 or bottom == h or right == w:
        return None
    crop = emap[top:bottom, left:right]
    mine = crop == index
    ring = crop[dilate(mine, 1) & ~mine]
    ring = ring[ring >= 0]
    if not ring.size:
        return None
    counts = np.bincount(ring)
    best = int(counts.argmax())
    return best if counts[best] >= SEE_THROUGH_AROUND * ring.size else None


def shows_under(element: Element, rgb: np.ndarray, emap: np.ndarray, lower: int) -> bool:
    """Is what `lower` shows the see-through `element`'s tint over some colour in the cube?

    A shape seen only through a see-through one around it looks like a piece lying on top of
    it: no outline of it shows outside to tell the order. A piece on top can have any colour,
    while one beneath shows the tint over its own colour: with the tint taken off, its pixels
    must be a colour well inside the cube. Most colours of a piece on top fail that for a
    strong tint.
    """
    assert element.tint is not None
    if element.tint.alpha < SEE_THROUGH_MIN_ALPHA:
        return False
    beneath = _beneath_colours(element, rgb[emap == lower].astype(np.float64).mean(axis=0))
    return bool(beneath.min() >= SEE_THROUGH_INSIDE and beneath.max() <= 255 - SEE_THROUGH_INSIDE)


def _beneath_colours(element: Element, colours: np.ndarray) -> np.ndarray:
    """What lies beneath a see-through element's pixels: its tint taken off them."""
    assert element.tint is not None
    return element.tint.off(colours)


def hidden_under_see_through(
    elements: list[Element],
    emap: np.ndarray,
    rgb: np.ndarray,
    background: int | None,
    upper: int,
    lower: int,
    extent_lower: Extent,
) -> Extent:
    """`lower`'s extent grown by the pixels of see-through `upper` that show it beneath.

    Where a see-through shape covers part of another, the covered part is seen through it:
    its tint taken off those pixels gives the lower shape's colour, not the background's. The
    lower shape is completed there (hull of what it shows plus what shows through), even
    when its visible part alone is a convex strip whose hull stops at the upper's edge.
    """
    top, left, bottom, right = extent_lower.box
    rows, cols = np.nonzero(emap == upper)
    top, left = min(top, int(rows.min())), min(left, int(cols.min()))
    bottom, right = max(bottom, int(rows.max()) + 1), max(right, int(cols.max()) + 1)
    crop = emap[top:bottom, left:right]
    colours = rgb[top:bottom, left:right].astype(np.float64)
    means = _side_means(emap, rgb, top, left, bottom, right, upper, lower)
    if means is None:
        return extent_lower
    mine_upper = crop == upper
    beneath = _beneath_colours(elements[upper], colours[mine_upper])
    distance = np.abs(beneath - means[1]).max(axis=1)
    shows = distance <= SEE_THROUGH_MATCH
    ground = (crop == background) & dilate(mine_upper, SEE_THROUGH_REACH)
    if background is not None and ground.sum() >= SEE_THROUGH_SIDE:
        shows &= distance < np.abs(beneath - colours[ground].mean(axis=0)).max(axis=1)
    claimed = np.zeros(crop.shape, bool)
    claimed[mine_upper] = shows
    own = crop == lower
    labels, _ = ndimage.label(claimed)
    touching = np.unique(labels[dilate(own, 2) & claimed])
    claimed = np.isin(labels, touching[touching > 0])
    if not claimed.any():
        return extent_lower
    mask = np.zeros(crop.shape, bool)
    et, el, eb, er = extent_lower.box
    mask[et - top : eb - top, el - left : er - left] = extent_lower.mask
    return Extent((top, left, bottom, right), mask | convex_hull(own | claimed))


def _weighed(covered: np.ndarray, area: np.ndarray, clean: bool) -> np.ndarray:
    """under[a, b]: how evidently a lies under b, from `covered[a, b]` (pixels of b within
    a's extent) and the elements' areas; 0 where the evidence is noise.

    A bite is the size of the things involved: a disc a card hides a third of shows a bite
    of a few hundred pixels, a large share of the disc but a small one of a card several
    times its size, so weighed by the covered element's area it fell under NOISE whenever
    the occluder was the larger, and a rounded card's corner, filled by the shape beneath,
    outweighed it. On a clean picture the pair's evidence is therefore the difference of
    what each covers of the other, in pixels, as a share of the smaller of the two, and at
    least NOISE_PX pixels. On a noisy picture small pieces are often bits of texture, grain
    or a JPEG fringe, whose hulls are as unsure as they are small: there each share stays
    that of the covered element.
    """
    if clean:
        smaller = np.minimum(area[:, None], area[None, :])
        under = (covered - covered.T) / np.maximum(smaller, 1.0)
        under[np.abs(covered - covered.T) < NOISE_PX] = 0.0
    else:
        share = covered / np.maximum(area, 1.0)[None, :]
        under = share - share.T
    under[np.abs(under) < NOISE] = 0.0
    return under


def z_order(
    elements: list[Element],
    emap: np.ndarray,
    background: int | None,
    rgb: np.ndarray | None = None,
    on_curve: float | None = None,
) -> tuple[list[int], list[Extent | None]]:
    """(element indices bottom first, extent per element; None for an element with no pixels).

    `on_curve`: the ellipse tolerance a noisy picture's outlines need (None: the clean one).
    """
    n = len(elements)
    boxes = territory_boxes(emap, n)
    extents: list[Extent | None] = [
        None if boxes[i] is None
        else extent(elements[i], i, emap, boxes[i], background, on_curve)
        for i in range(n)
    ]
    area = np.bincount(emap[emap >= 0].ravel(), minlength=n).astype(np.float64)
    covered = np.zeros((n, n))
    for index, ext in enumerate(extents):
        if ext is None or index == background:
            continue
        top, left, bottom, right = ext.box
        reach = ext.mask if ext.evidence is None else ext.evidence
        inside = emap[top:bottom, left:right][reach]
        covered[index] = np.bincount(inside[inside >= 0], minlength=n)[:n]
    np.fill_diagonal(covered, 0.0)
    under = _weighed(covered, area, clean=on_curve is None)  # under[a, b] > 0: a lies under b
    see_through = [] if rgb is None else see_through_evidence(elements, emap, rgb, background)
    for upper, lower in see_through:
        under[lower, upper], under[upper, lower] = 1.0, -1.0

    order = [background] if background is not None else []
    remaining = [i for i in range(n) if i != background and extents[i] is not None]
    while remaining:
        def cost(x: int, rest: list[int] = remaining) -> tuple[float, int, float, int]:
            penalty = sum(max(under[y, x], 0.0) for y in rest if y != x)
            return (round(penalty, 3), KIND_RANK.get(elements[x].kind, 2), -area[x], x)

        best = min(remaining, key=cost)
        order.append(best)
        remaining.remove(best)
    if rgb is not None:
        for upper, lower in see_through:
            lower_extent = extents[lower]
            if lower_extent is not None and order.index(upper) > order.index(lower):
                extents[lower] = hidden_under_see_through(
                    elements, emap, rgb, background, upper, lower, lower_extent
                )
    return order, extents
