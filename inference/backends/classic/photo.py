"""Photo inserts: rectangles of rich content kept whole as one layer.

A photo on a slide shows as a patchwork: texture pieces, smooth areas (a sky) and specks. None of
them alone is the photo, but together they span an opaque axis-aligned rectangle, in which the
background does not show. Starting from a complex unit, neighbours that are not flat colour
are added while their bounding box stays clear of the background; the box is then the photo.
Flat units inside it that are text, or large enough to be a badge or a shape placed on the
photo, stay separate objects above it; the rest is photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.facts import Box, UnitFacts, box_within
from scipy import ndimage

# A photo is an opaque rectangle: the background may show in at most this share of its box
# (the anti-aliased rim), and a little more while it is being grown (a sky added before its
# sun leaves a notch).
MAX_BACKGROUND = 0.1
GROW_BACKGROUND = 0.2
NEAR = 0.06  # of the picture's short side: how far from the members growth looks
# A photo has fine detail: at least this share of its pixels curve (|Laplacian| of the grey
# level) by more than DETAIL_LEVELS. Shadows and glows are smooth to a fraction of a level.
MIN_DETAIL = 0.03
DETAIL_LEVELS = 2.0
DETAIL_SIDE = 256
MIN_COMPLEX = 2  # complex units a photo with no texture piece holds at least (see _patchwork)
MIN_SHARE, MAX_SHARE = 0.01, 0.8  # of the picture; larger is a textured background
MIN_SEED_SHARE = 0.003
STRAY_SHARE = 0.0005  # of the picture: smaller members sticking out of a photo are specks
STRIP = 2  # px: members this thin sticking out of a photo are rim strips
SNAP_STEPS, SNAP_LEVELS, SNAP_SHARE = 2, 8, 0.6  # see _snap
PHOTO_COLOUR = 24.0  # a "glyph" this close to the photo's colour around it is photo
OVERLAY_SHARE = 0.02  # of the photo: a flat unit at least this large is an object on it
# A "photo" within a text line's box grown by LINE_REACH of its height (LINE_INSIDE of it at
# least) and at most LINE_HEIGHTS line heights tall is a glyph (see _in_text_line).
LINE_REACH, LINE_INSIDE, LINE_HEIGHTS = 0.25, 0.75, 1.25
EDGE = 1  # px: a rectangle this close to the picture's edge runs off it
# A placed photo's sides are hard edges. Beyond a side that fades out (the colour still changing
# the same way 2, 4, 6 and 8 px out, by SOFT_STEP levels per 2 px: steeper than a designer's
# gradient, gentler than an edge) along SOFT_SIDE of its length lies the tail of a soft shadow
# or glow: the rectangle is see-through shapes and their effects, not a photo (see _soft_sided).
SOFT_STEP = (2.5, 16.0)
SOFT_TAIL = 0.5  # levels per 2 px the fade must still change by further out
SOFT_REACH = 8  # px beyond the side looked at
SOFT_SIDE = 0.6


@dataclass
class Photo:
    rect: Box
    members: set[int]
    overlays: set[int]


@dataclass
class Photos:
    """The photos found, and what rectangles turned down for their soft sides held: the
    units grown into them (`faded`) and the smaller units inside them that would have been
    photo (`bits`)."""

    photos: list[Photo]
    faded: set[int]
    bits: set[int]


def _union_box(facts: UnitFacts, members: set[int]) -> Box:
    """Bounding box of the members' defining pixels (territories can leak past a hard edge)."""
    boxes = [facts.core_boxes[u] for u in members if facts.core_boxes[u] is not None]
    if not boxes:
        boxes = [facts.boxes[u] for u in members if facts.boxes[u] is not None]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


class BackgroundShare:
    """Share of a box that the background (or transparency) owns, in constant time per box.

    Growing a photo asks this for hundreds of trial boxes; a summed-area table of the
    background mask answers each with four look-ups instead of a pass over the box.
    """

    def __init__(self, own: np.ndarray, background: set[int]) -> None:
        mask = np.isin(own, list(background)) | (own < 0)
        h, w = mask.shape
        self.table = np.zeros((h + 1, w + 1), np.int64)
        np.cumsum(mask, axis=0, out=self.table[1:, 1:])
        np.cumsum(self.table[1:, 1:], axis=1, out=self.table[1:, 1:])

    def __call__(self, box: Box) -> float:
        top, left, bottom, right = box
        area = max(bottom - top, 0) * max(right - left, 0)
        if not area:
            return 1.0
        t = self.table
        count = t[bottom, right] - t[top, right] - t[bottom, left] + t[top, left]
        return int(count) / area


def _grow(
    own: np.ndarray,
    facts: UnitFacts,
    seed: int,
    taken: set[int],
    background_share: BackgroundShare,
    candidates: list[int],
) -> set[int]:
    """Add non-flat units next to or near the members while their box stays clear of the
    background. "Near" matters: a row of letters or a ridge of pieces can cut a sky off from
    the ground below it without touching both."""
    h, w = own.shape
    margin = max(4, int(NEAR * min(h, w)))
    members = {seed}
    changed = True
    while changed:
        changed = False
        box = _union_box(facts, members)
        frontier: dict[int, int] = {}
        for unit in members:
            for other, length in facts.neighbours.get(unit, {}).items():
                if other not in members and other not in taken and not facts.is_flat(other):
                    frontier[other] = frontier.get(other, 0) + length
        for other in candidates:
            other_box = facts.boxes[other]
            if other in members or other in taken or other in frontier or other_box is None:
                continue
            if (other_box[0] < box[2] + margin and other_box[2] > box[0] - margin
                    and other_box[1] < box[3] + margin and other_box[3] > box[1] - margin):
                frontier[other] = 0
        for other in sorted(frontier, key=lambda u: (-frontier[u], u)):
            trial = members | {other}
            if background_share(_union_box(facts, trial)) <= GROW_BACKGROUND:
                members = trial
                changed = True
    return members


def _without_strays(
    facts: UnitFacts,
    members: set[int],
    background_share: BackgroundShare,
    n_pixels: int,
    framed: tuple[int, int] | None = None,
) -> set[int]:
    """`members` less the specks and rim strips whose boxes stick out of the rest's, when
    only those let the background into the rectangle (or, `framed` = the picture's shape on
    a scenic background, make it run off the picture's edge).

    Growth takes what is near, and a sliver of a shape's rim (a few pixels of blend along an
    ellipse beside the photo, a strip along a card's edge) is near too; it stretches the box
    over the background, and the photo would be turned down for pieces never part of it.
    """

    def clean(box: Box) -> bool:
        on_edge = framed is not None and _on_edge(box, framed)
        return background_share(box) <= MAX_BACKGROUND and not on_edge

    if clean(_union_box(facts, members)):
        return members
    limit = STRAY_SHARE * n_pixels
    solid = {u for u in members if facts.area[u] >= limit and not _strip(facts.boxes[u])}
    if not solid or solid == members:
        return members
    box = _union_box(facts, solid)
    if not clean(box):
        return members
    inside = {u for u in members - solid
              if facts.boxes[u] is not None and box_within(facts.boxes[u], box)}
    return solid | inside


def _strip(box: Box | None) -> bool:
    """A box at most STRIP px across: the blend along an edge, not a piece of a picture."""
    return box is not None and min(box[2] - box[0], box[3] - box[1]) <= STRIP


def _inside_share(own: np.ndarray, unit: int, rect: Box, facts: UnitFacts) -> float:
    box = facts.boxes[unit]
    if box is None:
        return 0.0
    top, left = max(box[0], rect[0]), max(box[1], rect[1])
    bottom, right = min(box[2], rect[2]), min(box[3], rect[3])
    if bottom <= top or right <= left:
        return 0.0
    inside = int((own[top:bottom, left:right] == unit).sum())
    return inside / max(int(facts.area[unit]), 1)


def _patchwork(facts: UnitFacts, members: set[int]) -> bool:
    """Is the content a photo's patchwork: a texture piece, or MIN_COMPLEX complex units?

    A photo's detail breaks it into several pieces that are not flat colour. See-through
    shapes over one another, one of them shaded by a glow or a shadow beneath it, make one
    complex unit among flat ones: their edges read as detail, but no piece holds any. A
    JPEG's photo may have lost its detail to the compression and smoothing: not told.
    """
    if facts.blocky:
        return True
    units = list(members)
    return bool(facts.texture[units].any() or facts.complex[units].sum() >= MIN_COMPLEX)


def _detail_share(facts: UnitFacts, members: set[int], rect: Box) -> float:
    """Share of the members' inner pixels in `rect` with fine detail (see MIN_DETAIL).

    Measured at a scale where the picture's short side is about DETAIL_SIDE pixels, so that a
    photo enlarged four times (smoother per pixel) reads the same as the original.
    """
    top, left, bottom, right = rect
    step = max(1, round(min(facts.rgb.shape[:2]) / DETAIL_SIDE))
    height, width = (bottom - top) // step * step, (right - left) // step * step
    if height < 3 * step or width < 3 * step:
        return 0.0
    picture = facts.rgb if facts.raw is None else facts.raw
    crop = picture[top : top + height, left : left + width].astype(np.float32).mean(axis=-1)
    mine = np.isin(facts.labels[top : top + height, left : left + width], list(members))
    shape = (height // step, step, width // step, step)
    grey = crop.reshape(shape).mean(axis=(1, 3))
    inner = ndimage.binary_erosion(mine.reshape(shape).all(axis=(1, 3)), iterations=2)
    if not inner.any():
        return 0.0
    return float((np.abs(ndimage.laplace(grey))[inner] > DETAIL_LEVELS).mean())


def _snap(rgb: np.ndarray, rect: Box) -> Box:
    """Grow `rect` over the lines of pixels just outside it that are not background.

    A photo's outermost rows and columns are as near to the background's region pixels as to
    the photo's, so the territories can leave them out; a line belongs to the photo when it
    differs from the line beyond it (a hard edge) along most of its length.
    """
    h, w = rgb.shape[:2]
    top, left, bottom, right = rect
    image = rgb.astype(np.int16)

    def differs(line: np.ndarray, beyond: np.ndarray) -> bool:
        return bool((np.abs(line - beyond).max(axis=-1) > SNAP_LEVELS).mean() >= SNAP_SHARE)

    for _ in range(SNAP_STEPS):
        grown = False
        if top > 1 and differs(image[top - 1, left:right], image[top - 2, left:right]):
            top, grown = top - 1, True
        if bottom < h - 1 and differs(image[bottom, left:right], image[bottom + 1, left:right]):
            bottom, grown = bottom + 1, True
        if left > 1 and differs(image[top:bottom, left - 1], image[top:bottom, left - 2]):
            left, grown = left - 1, True
        if right < w - 1 and differs(image[top:bottom, right], image[top:bottom, right + 1]):
            right, grown = right + 1, True
        if not grown:
            break
    return top, left, bottom, right


def _photo_coloured(facts: UnitFacts, unit: int, members: set[int]) -> bool:
    """Is `unit` the colour of the photo around it (a bit of photo between letters)?

    Compared with each photo piece it touches, or that touches a letter it touches, as
    measured around it: a photo's colours vary too much for one mean to say.
    """
    box = facts.boxes[unit]
    if box is None:
        return False
    near = set()
    for step in facts.neighbours.get(unit, {}):
        near.add(step)
        near.update(facts.neighbours.get(step, {}))
    hosts = [u for u in near & members if u != unit]
    for host in hosts:
        local = facts.local_colour(host, box)
        if local is not None and np.abs(facts.colour[unit] - local).max() <= PHOTO_COLOUR:
            return True
    return False


def _in_text_line(rect: Box, lines: list[Box]) -> bool:
    """Does `rect` lie on a text line, no taller than its letters (an outlined glyph)?

    Thick outlines and anti-aliasing make a bold glyph a patch of dense edges that fills
    its box, as a photo fills its rectangle; but a photo is not the height of a line of
    letters and set among them.
    """
    height = rect[2] - rect[0]
    for line in lines:
        reach = LINE_REACH * (line[2] - line[0])
        if height > LINE_HEIGHTS * (line[2] - line[0]):
            continue
        top, left = max(rect[0], line[0] - reach), max(rect[1], line[1] - reach)
        bottom, right = min(rect[2], line[2] + reach), min(rect[3], line[3] + reach)
        inside = max(0, bottom - top) * max(0, right - left)
        if inside >= LINE_INSIDE * height * (rect[3] - rect[1]):
            return True
    return False


def _on_edge(rect: Box, shape: tuple[int, ...]) -> bool:
    """Does `rect` reach the picture's edge (within EDGE px)?"""
    h, w = shape[:2]
    return rect[0] <= EDGE or rect[1] <= EDGE or rect[2] >= h - EDGE or rect[3] >= w - EDGE


def _outside_lines(image: np.ndarray, rect: Box) -> list[np.ndarray]:
    """For each side of `rect` with room beyond it, its outermost line and the lines at 2, 4,
    6 and 8 px outside it (5, n, 3), innermost first."""
    h, w = image.shape[:2]
    top, left, bottom, right = rect
    steps = range(0, SOFT_REACH + 1, 2)
    sides = []
    if top - SOFT_REACH >= 0:
        sides.append(np.stack([image[top - d if d else top, left:right] for d in steps]))
    if bottom - 1 + SOFT_REACH < h:
        sides.append(np.stack([image[bottom - 1 + d, left:right] for d in steps]))
    if left - SOFT_REACH >= 0:
        sides.append(np.stack([image[top:bottom, left - d if d else left] for d in steps]))
    if right - 1 + SOFT_REACH < w:
        sides.append(np.stack([image[top:bottom, right - 1 + d] for d in steps]))
    return sides


def _soft_sided(rgb: np.ndarray, rect: Box) -> bool:
    """Does a side of `rect` fade into what lies beyond it (see SOFT_SIDE)?

    A photo's side is a step onto the background or an object beside it, flat or gently
    graded beyond (or fading, when the photo casts a drop shadow: the step comes first); the
    box around see-through shapes and their soft shadows or glows has a side running through
    the blurred tail, which keeps fading the same way for pixels on end, with no step at the
    side. Measured on the channel that changes most just outside, per position along it.
    """
    for lines in _outside_lines(rgb.astype(np.float32), rect):
        change = lines[:-1] - lines[1:]  # (4, n, 3): at the side 0-2 px out, 2-4, 4-6, 6-8
        channel = np.abs(change[1]).argmax(axis=-1)[None, :, None]
        fade = np.take_along_axis(change, channel, axis=-1)[..., 0]
        size = np.abs(fade)
        soft = (size[1] > SOFT_STEP[0]) & (size[:3] <= SOFT_STEP[1]).all(axis=0)
        soft &= (size[2:] > SOFT_TAIL).all(axis=0) & (fade[2:] * fade[1] > 0).all(axis=0)
        if soft.size and soft.mean() >= SOFT_SIDE:
            return True
    return False


def find_photos(
    own: np.ndarray,
    facts: UnitFacts,
    background: set[int],
    text_units: set[int],
    lines: list[Box] | None = None,
    scenery: bool = False,
) -> Photos:
    """Photo rectangles, their member units and the units lying on them as separate objects.

    `lines`: boxes of the text lines found, on which no photo is looked for. `scenery`: the
    background is itself a photograph or texture; then a rectangle of rich content that runs
    off the picture's edge is more of it (a band of sky, a patch of blurred lights), as a
    designer places a photo insert inside the frame.
    """
    n_pixels = own.size
    seeds = [
        int(u)
        for u in np.flatnonzero(facts.complex)
        if u not in background and facts.area[u] >= max(64, MIN_SEED_SHARE * n_pixels)
    ]
    seeds.sort(key=lambda u: -int(facts.area[u]))
    rich = [
        int(u) for u in range(1, len(facts.area))
        if facts.area[u] > 0 and not facts.is_flat(int(u)) and int(u) not in background
    ]
    found = Photos([], set(), set())
    if not seeds:
        return found
    used = set(background)
    background_share = BackgroundShare(own, background)
    for seed in seeds:
        if seed in used:
            continue
        members = _grow(own, facts, seed, used | text_units, background_share, rich)
        members = _without_strays(
            facts, members, background_share, n_pixels, own.shape if scenery else None
        )
        rect = _union_box(facts, members)
        area = (rect[2] - rect[0]) * (rect[3] - rect[1])
        if not MIN_SHARE * n_pixels <= area <= MAX_SHARE * n_pixels:
            continue
        if background_share(rect) > MAX_BACKGROUND or _in_text_line(rect, lines or []):
            continue
        if scenery and _on_edge(rect, own.shape):
            continue
        if _detail_share(facts, members, rect) < MIN_DETAIL:
            continue  # smooth all over: a glow or a shadow, not a photo
        if not _patchwork(facts, members):
            continue  # one shaded piece among flat ones: shapes over one another
        rect = _snap(facts.rgb, rect)
        grown = set(members)
        overlays = _inner_units(own, facts, rect, area, members, used, text_units)
        if _soft_sided(facts.rgb, rect):
            found.faded |= grown
            found.bits |= members - grown
            used |= members
            continue
        found.photos.append(Photo(rect, members, overlays))
        used |= members
    return found


def _inner_units(
    own: np.ndarray,
    facts: UnitFacts,
    rect: Box,
    area: int,
    members: set[int],
    used: set[int],
    text_units: set[int],
) -> set[int]:
    """Sort the units inside `rect` into objects lying on it (returned) and more of its
    content (added to `members`). `area`: the rectangle's as grown, before `_snap`."""
    top, left, bottom, right = rect
    overlays: set[int] = set()
    for unit in (int(u) for u in np.unique(own[top:bottom, left:right]) if u > 0):
        if unit in members or unit in used:
            continue
        if _inside_share(own, unit, rect, facts) < 0.9:
            continue
        if unit in text_units:
            on_top = not _photo_coloured(facts, unit, members)
        else:
            on_top = facts.is_flat(unit) and facts.area[unit] >= OVERLAY_SHARE * area
        (overlays if on_top else members).add(unit)
    return overlays
