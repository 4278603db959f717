"""Which unit is the background, and which other units are just more of it.

The background is what the picture's border shows most: posters and slides put objects inside
the frame. When transparency owns more of the border than any colour does, the picture has no
background layer at all (a logo cut out on transparency). Pieces of the background cut off by
an object (a band across a gradient, the counter of a letter) are recognised by colour, against
the background's own model where it lies, and join it.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.facts import UnitFacts
from scipy import ndimage

# Max colour difference (levels) for a piece to count as more background.
MATCH_TOLERANCE = 8.0
# Textured backgrounds (wood, marble, grain, a landscape): no unit owns this share of the
# border, and it takes TEXTURE_UNITS units or more to cover TEXTURE_COVER of it.
TEXTURE_BORDER = 0.6
TEXTURE_UNITS, TEXTURE_COVER = 3, 0.8
BAND = 0.03  # of the short side: the border band whose colours sample the texture
BIN = 8  # levels per colour bin of the texture's palette
MIN_BIN_SHARE = 0.0005  # a bin holds at least this share of the band's pixels to count
TEXTURE_SIDES = 3  # ... on at least this many of the picture's four sides
TEXTURE_MEMBER = 0.8  # share of a unit's pixels in the palette for it to be texture
TEXTURE_PIECE_MEMBER = 0.6  # the same for a texture piece (see textured_members)
# A group owning this share of the picture's perimeter is scenery cut by the frame when the
# background is textured and the group richly shaded (border_textures).
BORDER_TEXTURE_SHARE = 0.03
SCENERY_RMS = 5.5  # levels: see border_textures (a soft shadow or glow leaves about 4-5)
# A complex background whose border is shared with other complex units owning at least this
# share of it is scenery too (a field under a sky: see is_textured).
SCENERY_BORDER = 0.25
# Bokeh (light_discs): at least BOKEH_DISCS round flat units, each lighter than the background
# around it by BOKEH_LIGHT levels in every channel, of DISC_AREA of the picture at most.
BOKEH_DISCS = 5
BOKEH_LIGHT = 6.0
DISC_AREA = (20, 0.04)  # px, share of the picture
DISC_ASPECT = 0.75  # the box's short side over its long side, at least
DISC_RAMP = 0.5  # of a disc's radius: how far its soft edge reaches beyond its box
RAMP_TOLERANCE = 12.0  # levels: see _ramp
DISC_FILL = (0.6, 0.9)  # share of its box a disc's defining pixels fill (a circle: 0.785)
# A disc cut by what lies on it (a glyph, a shape): its own pixels fill at least CUT_FILL of
# its box, the background no more than 1 - DISC_FILL[0], and it is no larger than CUT_SIZE
# times the largest whole disc (see light_discs). A cut near its rim also shortens its box
# on one side: its short side is at least CUT_ASPECT of its long side.
CUT_FILL, CUT_SIZE, CUT_ASPECT = 0.35, 1.25, 0.6
# ... and where the picture's frame cuts it too, at least FRAME_ASPECT.
FRAME_ASPECT = 0.4


def pick_background(own: np.ndarray, facts: UnitFacts) -> int | None:
    """The unit owning most of the border (ties: the larger), or None for transparency."""
    edge = np.concatenate([own[0], own[-1], own[1:-1, 0], own[1:-1, -1]])
    transparent = int((edge < 0).sum())
    counts = facts.border
    if counts.sum() == 0 or transparent > counts.max():
        return None
    best = counts.max()
    tied = np.flatnonzero(counts == best)
    return int(tied[np.argmax(facts.area[tied])])


def matching_pieces(background: int, facts: UnitFacts, candidates: list[int]) -> list[int]:
    """Flat units among `candidates` whose colour is the background's where they lie.

    Only units that touch the background or the picture's border: something inside a photo
    that happens to share the background's colour is not background.
    """
    touching = facts.neighbours.get(background, {})
    return [
        unit
        for unit in candidates
        if unit != background
        and not facts.complex[unit]
        and (unit in touching or facts.border[unit] > 0)
        and facts.colour_near(unit, background, MATCH_TOLERANCE)
    ]


def textured_members(own: np.ndarray, facts: UnitFacts, background: int | None) -> list[int]:
    """Units that are more of a textured background, or [] when the background is not one.

    Sets `facts.texture_pixels` to the pixels of the texture's palette when it is one.

    A texture shows on the border as many units, none of them owning most of it. Its
    palette is read from a band along the border, from the colours found on three sides
    or more (objects seldom run along the border); a unit
    whose pixels are nearly all of that palette (give or take one bin) is texture. Objects
    are drawn in colours that stand out from the background, or they would not be seen.
    """
    if background is None:
        return []
    counts = np.sort(facts.border[1:])[::-1]
    total = counts.sum()
    if not total or counts[0] >= TEXTURE_BORDER * total:
        return []
    if np.searchsorted(np.cumsum(counts), TEXTURE_COVER * total) + 1 < TEXTURE_UNITS:
        return []
    picture = facts.rgb if facts.raw is None else facts.raw
    h, w = own.shape
    band = max(2, int(BAND * min(h, w)))
    bins = 256 // BIN
    index = _bin_index(picture, bins)
    valid = own >= 0
    sides = np.zeros(bins**3, np.int32)
    for side in (np.s_[:band], np.s_[-band:], np.s_[:, :band], np.s_[:, -band:]):
        found = index[side][valid[side]]
        counts = np.bincount(found, minlength=bins**3)
        sides += counts >= max(1, MIN_BIN_SHARE * 4 * found.size)
    # A colour of the texture shows along most sides; an object touching the border, on
    # one or two.
    palette = (sides >= TEXTURE_SIDES).reshape(bins, bins, bins)
    palette = ndimage.binary_dilation(palette, np.ones((3, 3, 3), bool)).ravel()
    facts.texture_pixels = palette[index]
    labels = facts.labels
    defined = labels > 0
    inside = np.bincount(labels[defined], palette[index[defined]], minlength=len(facts.area))
    size = np.bincount(labels[defined], minlength=len(facts.area))
    share = inside / np.maximum(size, 1)
    # Texture pieces (dense edge pixels) also hold the anti-aliased rims of what lies on the
    # texture, so less of them need be in its palette.
    needed = np.where(facts.texture, TEXTURE_PIECE_MEMBER, TEXTURE_MEMBER)
    return [int(u) for u in np.flatnonzero((share >= needed) & (size > 0)) if u != background]


def _bin_index(picture: np.ndarray, bins: int) -> np.ndarray:
    q = (picture // (256 // bins)).astype(np.int32)
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def border_textures(
    facts: UnitFacts, groups: dict[int, list[int]], background: list[int]
) -> list[int]:
    """Roots of groups that are more of a textured background running off the picture's edge.

    A photographic background (a landscape: sky, a mountain band, fields) is several textures
    at once, and the palette read along the border (`textured_members`) rarely holds all of
    them. What gives the others away is the border: a designer places objects inside the
    frame, while a band of scenery is cut by it. So when the background is itself textured,
    a group that owns a stretch of the border of at least BORDER_TEXTURE_SHARE of the
    perimeter and whose largest unit is a richly shaded region (a quadratic leaves more than
    SCENERY_RMS), or whose units are all complex (a mountain band a shade too smooth for
    SCENERY_RMS, left alone as an "effect"), is background too. Flat and gradient-filled
    objects crossing the edge stay objects: their main unit is smooth, however complex the
    pieces of their shadow or rim; a textured object shows as a texture piece (dense edges),
    not as a shaded region.
    """
    if not is_textured(facts, background):
        return []
    h, w = facts.own.shape
    needed = BORDER_TEXTURE_SHARE * 2 * (h + w)
    found = []
    for root, units in groups.items():
        if int(facts.border[units].sum()) < needed:
            continue
        largest = units[int(np.argmax(facts.area[units]))]
        shaded = facts.rms2[largest] > SCENERY_RMS or bool(facts.complex[units].all())
        if shaded and not facts.texture[largest]:
            found.append(root)
    return found


def is_textured(facts: UnitFacts, background: list[int]) -> bool:
    """Was a texture palette found on the background, or is its main unit texture or scenery?

    A landscape can show as two units only (a gently shaded field and a sky above it); then
    no palette is read and the field alone may be smooth enough to pass for a rich gradient.
    What gives it away is that other complex units own a large stretch of the border too: a
    designer keeps inserts inside the frame, while scenery is cut by it.
    """
    if facts.texture_pixels is not None:
        return True
    largest = background[int(np.argmax(facts.area[background]))]
    if facts.texture[largest] or facts.rms2[largest] > SCENERY_RMS:
        return True
    if not facts.complex[largest]:
        return False
    others = np.ones(len(facts.area), bool)
    others[background] = False
    shared = facts.border[others & facts.complex].sum()
    return bool(shared >= SCENERY_BORDER * max(1, facts.border[1:].sum()))


def light_discs(facts: UnitFacts, background: int | None, units: list[int]) -> list[int]:
    """Units that are discs of light on the background (bokeh), or [] when there are few.

    A photograph's blurred background shows out-of-focus lights as round patches, each the
    background made lighter (light adds: every channel rises). A designer places a shape or
    two; a scatter of BOKEH_DISCS or more small round patches lighter than what surrounds
    them is the background's own pattern, and each of them is more of the background.
    """
    if background is None:
        return []
    h, w = facts.own.shape
    discs = [u for u in units if _light_disc(facts, background, u, h * w)]
    if len(discs) < BOKEH_DISCS:
        return []
    found = set(discs)
    found.update(_cut_discs(facts, background, [u for u in units if u not in found], discs))
    for disc in discs:
        found.update(_ramp(facts, background, disc))
    fresh = set(found)
    while fresh:  # where discs overlap, their edges and overlaps add up
        fresh = _overlaps(facts, background, found, fresh)
        found |= fresh
    return sorted(found)


def _overlaps(facts: UnitFacts, background: int, found: set[int], fresh: set[int]) -> set[int]:
    """Units next to `fresh` that are more light on the background: where discs overlap.

    Light adds up, so such a unit is no darker than the background and no lighter than the
    background plus the light of all the found units it touches; it lies within their boxes
    grown by DISC_RAMP of the largest one's radius.
    """
    candidates = {n for u in fresh for n in facts.neighbours.get(u, {})} - found
    candidates.discard(background)
    more = set()
    for unit in sorted(candidates):
        box = facts.boxes[unit]
        touching = [n for n in facts.neighbours.get(unit, {})
                    if n in found and facts.boxes[n] is not None]
        under = None if box is None else facts.local_colour(background, box)
        if not touching or under is None:
            continue
        boxes = np.array([facts.boxes[n] for n in touching], np.float64)
        reach = max(2.0, DISC_RAMP * float((boxes[:, 2] - boxes[:, 0]).max()) / 2)
        if (box[0] < boxes[:, 0].min() - reach or box[2] > boxes[:, 2].max() + reach
                or box[1] < boxes[:, 1].min() - reach or box[3] > boxes[:, 3].max() + reach):
            continue
        light = np.maximum(facts.colour[touching] - under, 0.0).sum(axis=0)
        colour = facts.colour[unit]
        if (colour >= under - RAMP_TOLERANCE).all() and (
                colour <= under + light + RAMP_TOLERANCE).all():
            more.add(unit)
    return more


def _ramp(facts: UnitFacts, background: int, disc: int) -> list[int]:
    """The pieces of a disc's soft edge: the ring of blends between it and the background.

    They touch the disc, lie within its box grown by DISC_RAMP of its radius, and their
    colour is the disc's over the background at some opacity (within RAMP_TOLERANCE).
    """
    box = facts.boxes[disc]
    under = None if box is None else facts.local_colour(background, box)
    if under is None:
        return []
    reach = max(2.0, DISC_RAMP * (box[2] - box[0]) / 2)
    span = facts.colour[disc] - under
    ring = []
    for unit in facts.neighbours.get(disc, {}):
        inner = facts.boxes[unit]
        if unit == background or inner is None:
            continue
        if not (inner[0] >= box[0] - reach and inner[2] <= box[2] + reach
                and inner[1] >= box[1] - reach and inner[3] <= box[3] + reach):
            continue
        share = float(np.clip(np.dot(facts.colour[unit] - under, span) / np.dot(span, span),
                              0.0, 1.0))
        if np.abs(under + share * span - facts.colour[unit]).max() <= RAMP_TOLERANCE:
            ring.append(unit)
    return ring


def _cut_discs(facts: UnitFacts, background: int, units: list[int], discs: list[int]) -> list[int]:
    """Discs of a confirmed bokeh that a glyph or a shape lying on them cuts.

    Such a disc keeps its round box, but the cut leaves its own pixels short of the fill a
    circle has; what fills its box instead of the background is the object on it. So in a
    picture already shown to be bokeh, a light flat patch whose box the background fills no
    more than a whole disc's corners do, and no larger than the discs found, is one too.
    """
    largest = CUT_SIZE * max(_extent(facts, u) for u in discs)
    n_pixels = facts.own.size
    return [
        u
        for u in units
        if _light_disc(facts, background, u, n_pixels, cut=True) and _extent(facts, u) <= largest
    ]


def _extent(facts: UnitFacts, unit: int) -> int:
    """The long side of a unit's defining pixels' box (0 when it has none)."""
    box = facts.core_boxes[unit]
    return 0 if box is None else max(box[2] - box[0], box[3] - box[1])


def _light_disc(
    facts: UnitFacts, background: int, unit: int, n_pixels: int, cut: bool = False
) -> bool:
    """Is `unit` a small flat round patch lighter than the background in every channel?

    `cut`: the patch may be a disc cut by an object on it (see _cut_discs).
    """
    box = facts.core_boxes[unit]
    area = facts.area[unit]
    if box is None or unit == background or not facts.is_flat(unit):
        return False
    if area < DISC_AREA[0] or area > DISC_AREA[1] * n_pixels:
        return False
    top, left, bottom, right = box
    bh, bw = bottom - top, right - left
    h, w = facts.own.shape
    framed = cut and (top == 0 or left == 0 or bottom == h or right == w)
    aspect = FRAME_ASPECT if framed else CUT_ASPECT if cut else DISC_ASPECT
    if min(bh, bw) < 5 or min(bh, bw) < aspect * max(bh, bw):
        return False
    fill = float((facts.labels[top:bottom, left:right] == unit).mean())
    if cut:
        open_share = float((facts.own[top:bottom, left:right] == background).mean())
        if fill < CUT_FILL or fill >= DISC_FILL[0] or open_share > 1 - DISC_FILL[0]:
            return False
    elif not DISC_FILL[0] <= fill <= DISC_FILL[1]:
        return False
    under = facts.local_colour(background, facts.boxes[unit])
    return under is not None and bool((facts.colour[unit] - under).min() >= BOKEH_LIGHT)
