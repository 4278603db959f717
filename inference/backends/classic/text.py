"""Text: many small pieces of one colour in a row, and the look-alikes that are not text.

Glyphs are found as same-colour pieces whose boxes sit close together on a line (a union-find
over near pairs from a k-d tree), then whole words are joined along the line. Four kinds of
look-alike are told apart and dropped: a shape cut into pieces by an object lying across it
(the pieces and the object fill their convex hull), what shows through the gaps between the
letters of another text (it borders that text's letters), the anti-aliased blend between
letters and background (its colour lies between theirs), and pieces far taller than the
line's letters (a shape the text crosses).
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.alpha import unmix
from layerlift.inference.backends.classic.facts import Box, UnitFacts
from layerlift.inference.backends.classic.shapes import convex_hull
from layerlift.inference.backends.classic.unionfind import UnionFind
from scipy.spatial import cKDTree

TEXT_TOLERANCE = 20.0  # glyph colours (levels)
TEXT_MAX_AREA = 0.02  # of the picture, per glyph
TEXT_MAX_HEIGHT = 0.35  # of the picture height, per glyph
TEXT_MIN_GLYPHS = 3
GLYPH_SIZE_RATIO = 2.5  # a "glyph" taller than this many typical glyphs of its line is not one
GAP_X, GAP_Y = 1.5, 0.5  # link glyphs this close, in units of the taller glyph's height
LINE_GAP_X = 6.0  # words of one line: same colour, overlapping rows, this close
OCCLUDER_INSIDE, HULL_FILLED = 0.7, 0.85  # a cut shape: see split_occluded
BLEND_TOLERANCE = 8.0 / 255.0
GAP_SHARE = 0.5  # "glyphs" bordering other glyphs this much are the gaps between them


def group_text(
    boxes: np.ndarray,
    colours: np.ndarray,
    min_size: int = TEXT_MIN_GLYPHS,
    gap_x: float = GAP_X,
    gap_y: float = GAP_Y,
) -> list[list[int]]:
    """Indices of same-colour boxes (top, left, bottom, right) that sit together like glyphs.

    Returns the groups of at least `min_size` indices.
    """
    n = len(boxes)
    if n < min_size or n == 0:
        return []
    heights = (boxes[:, 2] - boxes[:, 0]).astype(np.float64)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    # Linked glyphs have centres at most (widths)/2 + GAP_X * height apart, and less vertically.
    reach = float((boxes[:, 3] - boxes[:, 1]).max()) + (gap_x + gap_y + 1.0) * float(heights.max())
    pairs = cKDTree(centres).query_pairs(reach, output_type="ndarray")
    uf = UnionFind(n)
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        m = np.maximum(heights[i], heights[j])
        dx = np.maximum(
            0, np.maximum(boxes[i, 1], boxes[j, 1]) - np.minimum(boxes[i, 3], boxes[j, 3])
        )
        dy = np.maximum(
            0, np.maximum(boxes[i, 0], boxes[j, 0]) - np.minimum(boxes[i, 2], boxes[j, 2])
        )
        same = np.abs(colours[i] - colours[j]).max(axis=1) <= TEXT_TOLERANCE
        near = (dx <= gap_x * m) & (dy <= gap_y * m)
        for a, b in zip(i[same & near], j[same & near], strict=True):
            uf.join(int(a), int(b))
    groups: dict[int, list[int]] = {}
    for index in range(n):
        groups.setdefault(uf.find(index), []).append(index)
    return [g for g in groups.values() if len(g) >= min_size]


def find_text(
    facts: UnitFacts, pieces: list[list[int]], h: int, w: int
) -> list[list[int]]:
    """Units of glyph-like pieces (small, flat, one colour) that sit together like text.

    A piece is a set of units already known to be one thing (letters of a word that touch).
    A group counts as text when it holds at least TEXT_MIN_GLYPHS units.
    """
    glyphs = []
    for piece in pieces:
        if not all(facts.is_flat(u) and facts.boxes[u] is not None for u in piece):
            continue
        box = box_of(facts, piece)
        too_big = facts.area[piece].sum() > TEXT_MAX_AREA * h * w
        if too_big or box[2] - box[0] > TEXT_MAX_HEIGHT * h:
            continue
        glyphs.append(piece)
    if not glyphs:
        return []
    boxes = np.array([box_of(facts, p) for p in glyphs], np.float64)
    colours = np.array([colour_of(facts, p) for p in glyphs])
    groups = []
    for group in group_text(boxes, colours, 1):
        # Letters of a line are of a size; a far taller piece is a shape the text crosses.
        # The line's height is the span most pieces share (thin letters break into arcs
        # and dots, whose own heights say little about the line's).
        typical = float(np.percentile(boxes[group, 2], 90) - np.percentile(boxes[group, 0], 10))
        kept = [i for i in group if boxes[i, 2] - boxes[i, 0] <= GLYPH_SIZE_RATIO * typical]
        groups.append([u for i in kept for u in glyphs[i]])
    lines = _join_lines(facts, groups)
    return [line for line in lines if len(line) >= TEXT_MIN_GLYPHS]


def box_of(facts: UnitFacts, units: list[int]) -> Box:
    boxes = [facts.boxes[u] for u in units if facts.boxes[u] is not None]
    return (
        min(b[0] for b in boxes), min(b[1] for b in boxes),
        max(b[2] for b in boxes), max(b[3] for b in boxes),
    )


def colour_of(facts: UnitFacts, units: list[int]) -> np.ndarray:
    weights = np.maximum(facts.sums.pixels[units], 1).astype(np.float64)
    return (facts.colour[units] * weights[:, None]).sum(axis=0) / weights.sum()


def _join_lines(facts: UnitFacts, groups: list[list[int]]) -> list[list[int]]:
    """Join text groups of one colour that continue each other (a glyph lost between words).

    At group level the height is the whole line's, so the same gap rule bridges a missing
    letter that the glyph-level pass, measuring against an x-height, could not.
    """
    if len(groups) < 2:
        return groups
    boxes = np.array(
        [
            [
                min(facts.boxes[u][0] for u in g), min(facts.boxes[u][1] for u in g),
                max(facts.boxes[u][2] for u in g), max(facts.boxes[u][3] for u in g),
            ]
            for g in groups
        ],
        np.float64,
    )
    colours = np.array([facts.colour[g].mean(axis=0) for g in groups])
    lines = group_text(boxes, colours, 1, gap_x=LINE_GAP_X, gap_y=0.0)
    return [[u for i in line for u in groups[i]] for line in lines]


def split_occluded(
    facts: UnitFacts, own: np.ndarray, groups: list[list[int]], background: int | None
) -> tuple[list[list[int]], list[list[int]]]:
    """Tell text from one shape cut into pieces by an object lying across it.

    Both are same-colour pieces close together. But the pieces of a cut shape, together with
    the object that cuts them, fill their convex hull, and that object lies mostly inside the
    hull; letters leave gaps to the background, or sit on a card that reaches far beyond them.
    Returns (text groups, cut shapes).
    """
    text, shapes = [], []
    for group in groups:
        top, left, bottom, right = box_of(facts, group)
        crop = own[top:bottom, left:right]
        mine = np.isin(crop, group)
        hull = convex_hull(mine)
        inside = crop[hull & ~mine]
        inside = inside[(inside > 0) & (inside != (background or 0))]
        cut = False
        if inside.size:
            counts = np.bincount(inside)
            other = int(np.argmax(counts))
            filled = (mine.sum() + counts[other]) / max(hull.sum(), 1)
            cut = counts[other] >= OCCLUDER_INSIDE * facts.area[other] and filled >= HULL_FILLED
        (shapes if cut else text).append(group)
    return text, shapes


def drop_blends(
    facts: UnitFacts, groups: list[list[int]], background: int | None
) -> tuple[list[list[int]], list[list[int]]]:
    """Tell apart "text" whose colour is a blend of another text's and the background's.

    Small print is anti-aliased all over; the blend between letters, or a counter that is
    the background slightly tinted, can be flat enough to form pieces of its own, in a row
    like glyphs. Returns (text, pieces that are mostly background).
    """
    if background is None or len(groups) < 2:
        return groups, []
    boxes = [box_of(facts, g) for g in groups]
    colours = [colour_of(facts, g) for g in groups]
    kept, background_like = [], []
    for index, group in enumerate(groups):
        under = facts.local_colour(background, boxes[index], margin=8)
        share = None
        for other, box in enumerate(boxes):
            if other == index or under is None or len(groups[other]) < len(group):
                continue
            if min(box[2], boxes[index][2]) <= max(box[0], boxes[index][0]):
                continue  # not on the same line
            over = colours[other] / 255.0
            a, res = unmix(colours[index][None] / 255.0, over[None], under[None] / 255.0)
            if np.isfinite(a[0]) and a[0] < 0.9 and res[0] <= BLEND_TOLERANCE:
                share = float(a[0])
                break
        if share is None:
            kept.append(group)
        elif share < 0.5:
            background_like.append(group)
    return kept, background_like


def drop_gaps(facts: UnitFacts, groups: list[list[int]]) -> list[list[int]]:
    """Drop "text" that is really what shows between the letters of another text.

    A shape behind a word shows through the gaps between its letters as small pieces of one
    colour in a row, just like glyphs; but those pieces border the letters of the word, not
    the things around them. Two texts that border each other (a fill and its outline) must
    not both go: the one that borders the other most goes first, and the other is judged
    against what remains.
    """
    owner = {unit: index for index, group in enumerate(groups) for unit in group}
    alive = set(range(len(groups)))

    def share(index: int) -> float:
        total = other = 0
        for unit in groups[index]:
            for neighbour, length in facts.neighbours.get(unit, {}).items():
                total += length
                theirs = owner.get(neighbour, index)
                if theirs != index and theirs in alive:
                    other += length
        return other / total if total else 0.0

    while alive:
        shares = {index: share(index) for index in alive}
        worst = max(sorted(alive), key=lambda i: shares[i])
        if shares[worst] < GAP_SHARE:
            break
        alive.discard(worst)
    return [group for index, group in enumerate(groups) if index in alive]


STRAY_TOLERANCE = 2.0 * TEXT_TOLERANCE  # a stray glyph piece's colour, off its line's (levels)
STRAY_SLACK = 0.25  # line heights a stray piece may reach above or below its line
STRAY_REACH = LINE_GAP_X  # line heights a stray piece may lie beyond its line's ends (as words)


def stray_glyphs(
    facts: UnitFacts, lines: list[list[int]], pieces: list[list[int]], background: int | None
) -> dict[int, int]:
    """Pieces of a text line's glyphs that the line left out: piece index -> line index.

    Thin or small letters, anti-aliased and (in a JPEG) ringing, break into arcs whose colour
    drifts from the line's, so a few fall out of the glyph grouping; left alone each becomes
    a tiny "shape" stacked under or beside the text, which the layer count then pairs with
    some other object. A piece that lies within a line's rows (give or take STRAY_SLACK),
    no further beyond its ends than the next word of the line may be, no larger than the
    line, and whose colour is near the line's (and nearer to it than to the background
    around it) is a piece of that line. One that touches another such piece is left to it:
    it is more likely a piece of a shape (or of a style around the text) than a letter.
    """
    if not lines or not pieces:
        return {}
    boxes = [box_of(facts, line) for line in lines]
    colours = [colour_of(facts, line) for line in lines]
    areas = [float(facts.area[line].sum()) for line in lines]
    owner = {unit: index for index, piece in enumerate(pieces) for unit in piece}
    found: dict[int, int] = {}
    for index, piece in enumerate(pieces):
        if not all(facts.boxes[u] is not None and not facts.complex[u] for u in piece):
            continue
        if _touches_other(facts, piece, owner, index):
            continue
        top, left, bottom, right = box_of(facts, piece)
        colour = colour_of(facts, piece)
        area = float(facts.area[piece].sum())
        box = (top, left, bottom, right)
        under: np.ndarray | None = None  # the background's colour around the piece, read once
        read = background is None
        best, best_diff = None, STRAY_TOLERANCE
        for line, (t, lft, b, r) in enumerate(boxes):
            height = b - t
            if area > areas[line]:
                continue
            slack, reach = STRAY_SLACK * height, STRAY_REACH * height
            if top < t - slack or bottom > b + slack or left < lft - reach or right > r + reach:
                continue
            diff = float(np.abs(colour - colours[line]).max())
            if diff > best_diff:
                continue
            if not read:
                under, read = facts.local_colour(background, box, margin=8), True
            if under is not None and float(np.abs(colour - under).max()) <= diff:
                continue
            best, best_diff = line, diff
        if best is not None:
            found[index] = best
    return found


def _touches_other(
    facts: UnitFacts, piece: list[int], owner: dict[int, int], index: int
) -> bool:
    """Whether a unit of `piece` borders a unit of another piece (`owner`: unit -> piece)."""
    return any(
        owner.get(neighbour, index) != index
        for unit in piece
        for neighbour in facts.neighbours.get(unit, {})
    )
