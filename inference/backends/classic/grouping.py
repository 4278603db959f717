"""From units to elements: what becomes one layer.

Units are joined with a union-find, in this order, each step only touching what earlier ones
left alone:

0. bokeh: on a background scattered with round patches of light (see
   `background.light_discs`), the patches and their soft edges are more of the background;
1. holes: a flat unit wrapped by a single other unit (the counter of an "o", the middle of a
   ring) that has the colour of a unit next to its wrapper is more of that unit, seen through;
2. background pieces: flat units with the background's colour where they lie;
3. same colour: touching flat units of one colour are one object;
4. text (see `text`): many small units of one colour in a row become one text element,
   less the slivers of an object's rim (`_drop_edge_rims`, `_drop_outline_rims`);
5. photos (see `photo`): rectangles of rich content, with what lies on them kept apart;
6. seen through: a small piece of a shape's colour two steps from it (between letters) is it;
7. translucency (see `translucency`): pieces of one see-through shape are one layer;
8. specks: tiny leftovers join the unit they share most boundary with;
9. styles: a text's outline, drop shadow and stray pieces (hugging its glyphs, inside its
   box) join the text, and an opaque shape's drop shadow joins the shape, as layer styles
   are part of their layer in an editor;
10. rims: a thin band of pieces along an object's edge (JPEG ringing, a blurred export)
   joins the object;
11. scenery: on a textured background, textured groups that run off the picture's edge
   (see `background.border_textures`) are more of the background.

What remains is one shape per unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.alpha import unmix
from layerlift.inference.backends.classic.background import (
    border_textures,
    is_textured,
    light_discs,
    matching_pieces,
    pick_background,
    textured_members,
)
from layerlift.inference.backends.classic.facts import Box, UnitFacts, box_within
from layerlift.inference.backends.classic.masks import dilate
from layerlift.inference.backends.classic.photo import Photos, find_photos
from layerlift.inference.backends.classic.text import (
    TEXT_MIN_GLYPHS,
    box_of,
    colour_of,
    drop_blends,
    drop_gaps,
    find_text,
    split_occluded,
    stray_glyphs,
)
from layerlift.inference.backends.classic.translucency import (
    Tint,
    gradient_tint,
    overlap_tints,
    same_tint,
    shows_tint,
)
from layerlift.inference.backends.classic.unionfind import UnionFind
from scipy import ndimage

HOLE_WRAP = 0.9  # share of a hole's boundary its wrapper must own
HOLE_TOLERANCE = 10.0
TINT_MIN_AREA = 0.001  # of the picture: smaller pieces are not worth a translucency guess
SPECK_SHARE = 0.0004  # of the picture
# An untinted object this much (of its area) made of rich pieces, fading into the background
# all round (median step under FADE_STEP levels over 3 px, at FADE_MIN_PAIRS boundary pairs
# at least), is a soft effect's falloff: see `_fade_into_background`.
SOFT_SHARE = 0.75
FADE_STEP = 24
FADE_MIN_PAIRS = 16
FADED_SHARE = 0.5  # of an object's area in texture pieces of a turned-down photo: an effect
SPECK_MIN = 12
RIM_WIDTH = 4.0  # px: see _absorb_rims
RIM_REACH = 3  # px
RIM_HOST = 10  # a rim's object has at least this many times its pieces' area
RIM_BAND = 4  # px: how wide JPEG ringing along an edge reaches
RIM_BLEND = 24.0 / 255.0  # most a rim's colour lies off the object-background blend line
OUTLINE_HOST = 0.01  # of the picture: a shape whose outline slivers lie on (not a letter)
OUTLINE_ALPHA = (0.1, 0.9)  # a sliver's colour lies this far between its two sides' colours
RIM_SIDE = 0.2  # share of a rim piece's boundary on each side: the object's and the background's
TEXTURE_EDGE = 1  # px around an object's defining pixels that stay its own on a texture
# A "text" group one unit of which has this many times the area of all the others is a
# shape with crumbs of itself (see _glyph_count).
SHAPE_WITH_CRUMBS = 5
STYLE_REACH = 0.35  # of a text's height: how far its outline and shadow reach beyond it
STYLE_INSIDE = 0.75  # share of a style piece's box inside the text's grown box
STYLE_MAX_AREA = 3.0  # an outline or shadow is at most this many times its text's area
STYLE_EDGES = 0.5  # ... unless this share of it is dense edges (see _attach_styles)
SHADOW_REACH = 0.3  # of a shape's larger side: how far its drop shadow reaches beyond it
SHADOW_MAX_AREA = 0.6  # of the shape's area
SHADOW_INK = 16.0  # levels: the colour a shadow darkens towards
SHADOW_MIN_SPAN = 24.0  # levels: a background darker than this shows no shadow
SHADOW_SLACK = 6.0  # levels a channel too dark to measure may still rise (noise)
SHADOW_ALPHA = (0.15, 0.85)  # opacity of a shadow as measured on a piece
SHADOW_SPREAD = 0.1  # most the per-channel opacities of one shadow piece may differ


@dataclass
class Element:
    """One future layer: its units, what kind of thing it is and, for photos, the rectangle."""

    kind: str  # background, shape, text, photo, texture, effect (soft shading), detail
    units: list[int]
    rect: Box | None = None
    name: str = ""
    tint: Tint | None = None


def _absorb_holes(
    facts: UnitFacts, uf: UnionFind, units: list[int], background: int | None
) -> None:
    """Join holes to the unit seen through them.

    Everything on the background is wrapped by it, so the background never counts as a
    wrapper; a hole is smaller than what wraps it, and what shows through it is larger still
    (else two letters of one colour on a card would count as holes of the card).
    """
    for unit in units:
        if not facts.is_flat(unit):
            continue
        touching = facts.neighbours.get(unit, {})
        total = sum(touching.values())
        if not total:
            continue
        wrapper, length = max(touching.items(), key=lambda kv: kv[1])
        if length < HOLE_WRAP * total or wrapper == background:
            continue
        if facts.area[wrapper] <= facts.area[unit]:
            continue
        hosts = [
            other
            for other in facts.neighbours.get(wrapper, {})
            if other != unit and facts.area[other] > facts.area[wrapper]
        ]
        hosts.sort(key=lambda u: -facts.neighbours[wrapper][u])
        for host in hosts:
            if facts.colour_near(unit, host, HOLE_TOLERANCE):
                uf.join(host, unit)
                break


def _absorb_seen_through(
    facts: UnitFacts,
    uf: UnionFind,
    units: list[int],
    skip: set[int],
    background: int | None,
    max_area: float,
) -> None:
    """Join a small flat unit to a larger unit of its colour two steps away.

    A piece of a card seen through the counter of a letter, or between two letters, touches
    only the letters (and perhaps the background beside them); the card itself is one step
    further. The step in between must not be the background, or any two objects of one
    colour on the same background would join.
    """
    bg_root = uf.find(background) if background is not None else -1
    for unit in units:
        if unit in skip or not facts.is_flat(unit) or facts.area[unit] > max_area:
            continue
        if uf.find(unit) == bg_root:
            continue
        hosts = set()
        for step in facts.neighbours.get(unit, {}):
            if uf.find(step) == bg_root:
                continue
            for host in facts.neighbours.get(step, {}):
                if uf.find(host) != uf.find(unit) and facts.area[host] > facts.area[unit]:
                    hosts.add(host)
        for host in sorted(hosts, key=lambda h: (-int(facts.area[h]), h)):
            if facts.colour_near(unit, host, HOLE_TOLERANCE):
                uf.join(host, unit)
                break


def _join_same_colour(
    facts: UnitFacts, uf: UnionFind, units: list[int], background: int | None
) -> None:
    """Join touching flat units of one colour (one object split by a thin stroke or an edge)."""
    members = set(units)
    bg_root = uf.find(background) if background is not None else -1
    for unit in sorted(units, key=lambda u: (-int(facts.area[u]), u)):
        if not facts.is_flat(unit):
            continue
        for other in facts.neighbours.get(unit, {}):
            if other not in members or not facts.is_flat(other):
                continue
            if uf.find(other) == uf.find(unit):
                continue
            small, large = sorted((unit, other), key=lambda u: (int(facts.area[u]), -u))
            if not facts.colour_near(small, large, HOLE_TOLERANCE):
                continue
            if uf.find(small) == bg_root:
                small, large = large, small
            uf.join(large, small)


def _absorb_specks(facts: UnitFacts, uf: UnionFind, units: list[int], min_area: int) -> None:
    for unit in sorted(units, key=lambda u: int(facts.area[u])):
        if facts.area[unit] >= min_area:
            continue
        touching = facts.neighbours.get(unit, {})
        if touching:
            host = max(touching, key=lambda u: (touching[u], int(facts.area[u])))
            uf.join(host, unit)


def form_elements(
    own: np.ndarray, facts: UnitFacts, count: int
) -> tuple[list[Element], int | None]:
    """Elements of a picture and the index of the background element (None: transparent)."""
    h, w = own.shape
    present = [u for u in range(1, count + 1) if facts.area[u] > 0]
    uf = UnionFind(count + 1)
    background = pick_background(own, facts)
    for unit in textured_members(own, facts, background):
        uf.join(background, unit)
    discs = light_discs(facts, background, present)
    for unit in discs:
        uf.join(background, unit)

    _absorb_holes(facts, uf, [u for u in present if u != background], background)
    if background is not None:
        free = [u for u in present if uf.find(u) == u and u != background]
        for unit in matching_pieces(background, facts, free):
            uf.join(background, unit)

    _join_same_colour(facts, uf, present, background)
    bg_root = uf.find(background) if background is not None else -1
    pieces: dict[int, list[int]] = {}
    for unit in present:
        if uf.find(unit) != bg_root:
            pieces.setdefault(uf.find(unit), []).append(unit)
    candidates = find_text(facts, list(pieces.values()), h, w)
    candidates, cut_shapes = split_occluded(facts, own, candidates, background)
    for group in cut_shapes:
        for unit in group[1:]:
            uf.join(group[0], unit)
    text_groups, tinted = drop_blends(facts, drop_gaps(facts, candidates), background)
    for group in tinted:
        for unit in group:
            uf.join(background, unit)
    text_groups, rims = _drop_edge_rims(facts, uf, text_groups, bg_root)
    text_groups, outlines = _drop_outline_rims(facts, uf, text_groups, bg_root)
    rims |= outlines
    text_units = {u for group in text_groups for u in group}
    taken = {u for u in present if uf.find(u) == bg_root}
    lines = [box_of(facts, group) for group in text_groups]
    scenery = bool(discs) or (bool(taken) and is_textured(facts, sorted(taken)))
    found = find_photos(own, facts, taken, text_units | rims, lines, scenery)
    photos = found.photos
    in_photos = {u for photo in photos for u in photo.members}
    text_groups = [[u for u in g if u not in in_photos] for g in text_groups]
    text_groups = [g for g in text_groups if len(g) >= TEXT_MIN_GLYPHS]
    text_units = {u for group in text_groups for u in group}
    for group in text_groups:
        for unit in group[1:]:
            uf.join(group[0], unit)
    photo_roots: dict[int, object] = {}
    for photo in photos:
        first = min(photo.members)
        for unit in photo.members:
            uf.join(first, unit)
        photo_roots[uf.find(first)] = photo
    skip = set(photo_roots) | {bg_root}
    _join_stray_glyphs(facts, uf, present, text_groups, skip, background)
    text_units = {u for group in text_groups for u in group}
    text_roots = {uf.find(g[0]) for g in text_groups}

    _absorb_seen_through(
        facts, uf, present, text_units | in_photos | {background}, background, 0.05 * h * w
    )
    tints = _find_tints(facts, uf, present, text_units | in_photos, background, h * w)
    protected = taken | text_units | {u for p in photos for u in p.members}
    leftovers = [u for u in present if u not in protected and uf.find(u) == u]
    min_area = max(SPECK_MIN, int(SPECK_SHARE * h * w))
    _absorb_specks(facts, uf, leftovers, min_area)
    text_roots = _attach_styles(facts, uf, present, text_roots, skip)
    tints = {uf.find(root): tint for root, tint in tints.items()
             if uf.find(root) not in text_roots}
    shapes = {
        uf.find(u) for u in present
        if uf.find(u) not in skip | text_roots | set(tints) and not facts.complex[uf.find(u)]
    }
    _attach_shadows(facts, uf, present, shapes, skip | text_roots | set(tints), background)
    _absorb_rims(facts, uf, present, skip | text_roots)
    if background is not None:
        _fade_into_background(
            facts, uf, present, found, skip | text_roots | set(tints), background
        )
        bg_units = _units_of(uf, present, background)
        for root in border_textures(facts, _root_groups(uf, present, skip | text_roots),
                                    bg_units):
            uf.join(background, root)

    members: dict[int, list[int]] = {}
    for unit in present:
        members.setdefault(uf.find(unit), []).append(unit)
    elements: list[Element] = []
    background_index = None
    for root, units in members.items():
        if background is not None and root == uf.find(background):
            background_index = len(elements)
            elements.append(Element("background", units))
        elif root in photo_roots:
            photo = photo_roots[root]
            elements.append(Element("photo", units, rect=photo.rect))
        elif root in text_roots:
            elements.append(Element("text", units))
        elif all(facts.complex[u] for u in units) and root not in tints:
            # A varying element with a measured tint is a see-through shape over a shadow.
            textured = any(facts.texture[u] for u in units)
            elements.append(Element("texture" if textured else "effect", units))
        else:
            elements.append(Element("shape", units, tint=tints.get(root)))
    return elements, background_index


def _join_stray_glyphs(
    facts: UnitFacts,
    uf: UnionFind,
    present: list[int],
    text_groups: list[list[int]],
    skip: set[int],
    background: int | None,
) -> None:
    """Join the glyph pieces each text line left out to it (see `text.stray_glyphs`).

    The pieces join the lines' unit lists too (in place), so that later steps treat them as
    text.
    """
    if not text_groups:
        return
    text_roots = {uf.find(g[0]) for g in text_groups}
    pieces = list(_root_groups(uf, present, skip | text_roots).values())
    found = stray_glyphs(facts, [list(g) for g in text_groups], pieces, background)
    for index, line in found.items():
        for unit in pieces[index]:
            uf.join(text_groups[line][0], unit)
        text_groups[line].extend(pieces[index])


def _fade_into_background(
    facts: UnitFacts,
    uf: UnionFind,
    present: list[int],
    found: Photos,
    skip: set[int],
    background: int,
) -> None:
    """Give the background the untinted shapes made mostly of soft pieces of a turned-down
    photo.

    A rectangle of see-through shapes and their soft shadows (see `photo._soft_sided`) falls
    apart into tinted shapes and the shadows' pieces: a blurred band breaks into texture
    pieces (dense small steps of colour) lined by flat slivers. As a shape they would be
    completed into an opaque slab under the see-through shapes; in the background they are
    lifted off it as the soft effect they are (`build.lift_effects`), drawn whole under its
    caster. A see-through shape seen over a shadow is a smooth gradient, not a texture
    piece, and stays a shape (FADED_SHARE). So do the box's small bits that were to be photo
    (a corner of a faint shadow between two shapes), which alone would be a speck of a
    layer. Pieces that are all rich already make an effect layer of their own.

    A shadow's falloff beyond its caster can also hold a flat band (where the shadow is near
    its full strength), so its pieces are not all rich and were a shape: completed into an
    opaque slab under the caster. Mostly rich (SOFT_SHARE of the area) and fading into the
    background with no step all round (`_fades_out`), they go to the background too, to be
    lifted with the rest of the shadow.
    """
    bg_units = _units_of(uf, present, background)
    for root, units in _root_groups(uf, present, skip).items():
        if all(facts.complex[u] for u in units):
            continue
        soft = sum(int(facts.area[u]) for u in units if u in found.faded and facts.texture[u])
        area = sum(int(facts.area[u]) for u in units)
        rich = sum(int(facts.area[u]) for u in units if facts.complex[u])
        faded = all(u in found.bits for u in units) or soft >= FADED_SHARE * area
        if faded or (rich >= SOFT_SHARE * area and _fades_out(facts, units, bg_units)):
            uf.join(background, root)


def _fades_out(facts: UnitFacts, units: list[int], bg_units: list[int]) -> bool:
    """Does a group of pieces fade into the background all along where they meet it?

    A soft shadow's or glow's falloff meets the background with no step: across any two
    pixels there the colour changes by a few levels. A shape's side, however faint or
    see-through, is a step of tens of levels within its anti-aliased pixel or two. Measured
    across each boundary pixel pair as the change over the two pixels either side of it; the
    median over the boundary must stay under FADE_STEP.

    Only a shadow's falloff (darker than the background beside it) counts: the rings of a
    glow around its caster, given to the background, can be so much of it that its smooth
    model follows the glow, which is then found nowhere.
    """
    box = box_of(facts, units)
    h, w = facts.own.shape
    top, left = max(0, box[0] - 2), max(0, box[1] - 2)
    bottom, right = min(h, box[2] + 2), min(w, box[3] + 2)
    own = facts.own[top:bottom, left:right]
    mine, theirs = np.isin(own, units), np.isin(own, bg_units)
    rgb = facts.rgb[top:bottom, left:right].astype(np.int16)
    steps = []
    for axis in (0, 1):
        a = np.take(mine, range(1, mine.shape[axis] - 2), axis=axis)
        b = np.take(theirs, range(2, mine.shape[axis] - 1), axis=axis)
        c = np.take(theirs, range(1, mine.shape[axis] - 2), axis=axis)
        d = np.take(mine, range(2, mine.shape[axis] - 1), axis=axis)
        meet = (a & b) | (c & d)  # a boundary between positions i and i + 1
        before = np.take(rgb, range(0, mine.shape[axis] - 3), axis=axis)
        after = np.take(rgb, range(3, mine.shape[axis]), axis=axis)
        steps.append(np.abs(after - before).max(axis=-1)[meet])
    found = np.concatenate(steps)
    if found.size < FADE_MIN_PAIRS or np.median(found) >= FADE_STEP:
        return False
    # Only a shadow's falloff: darker than the background beside it.
    near = dilate(mine, 3) & theirs
    return bool(rgb[mine].sum(axis=-1).mean() < rgb[near].sum(axis=-1).mean())


def _units_of(uf: UnionFind, present: list[int], unit: int) -> list[int]:
    """The present units joined with `unit` (all of a textured background's pieces)."""
    root = uf.find(unit)
    return [u for u in present if uf.find(u) == root]


def _root_groups(
    uf: UnionFind, present: list[int], skip: set[int]
) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for unit in present:
        root = uf.find(unit)
        if root not in skip:
            groups.setdefault(root, []).append(unit)
    return groups


def _touching(facts: UnitFacts, uf: UnionFind, units: list[int]) -> dict[int, int]:
    """Boundary length shared with each other root, by root."""
    mine = set(units)
    touching: dict[int, int] = {}
    for unit in units:
        for other, length in facts.neighbours.get(unit, {}).items():
            if other not in mine:
                root = uf.find(other)
                touching[root] = touching.get(root, 0) + length
    return touching


def _share_within(inner: Box, outer: Box, reach: float) -> float:
    """Share of box `inner` inside box `outer` grown by `reach` on every side."""
    top, left = max(inner[0], outer[0] - reach), max(inner[1], outer[1] - reach)
    bottom, right = min(inner[2], outer[2] + reach), min(inner[3], outer[3] + reach)
    size = max(1, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return max(0.0, bottom - top) * max(0.0, right - left) / size


def _union_box(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _attach_styles(
    facts: UnitFacts,
    uf: UnionFind,
    present: list[int],
    text_roots: set[int],
    skip: set[int],
) -> set[int]:
    """Join a text's outline, drop shadow and stray pieces to it; returns the text roots.

    An outline or a shadow is a layer style, part of its text's layer in an editor. In the
    picture it shows as pieces of another colour hugging the glyphs: they touch the glyphs
    and lie (STYLE_INSIDE of their box at least) within the text's box grown by STYLE_REACH
    of its height. A shape the text lies
    on, or beside, reaches beyond that box. Texts are taken largest first, so a line's
    fill absorbs its outline (which may have formed a text of its own) and not the reverse.
    `skip`: roots that are never joined (the background, photos).
    """
    groups = _root_groups(uf, present, skip)
    text_roots = {uf.find(r) for r in text_roots} & set(groups)
    boxes = {root: box_of(facts, units) for root, units in groups.items()}

    def edges(root: int) -> bool:
        """Dense edges in a clean picture: the outline and anti-aliasing of the glyphs."""
        units = groups[root]
        dense = facts.area[units][facts.texture[units]].sum()
        return not facts.smoothed and dense >= STYLE_EDGES * facts.area[units].sum()

    area = {root: int(facts.area[units].sum()) for root, units in groups.items()}
    for text in sorted(text_roots, key=lambda r: (-area[r], r)):
        if uf.find(text) != text:
            continue
        changed = True
        reach = STYLE_REACH * (boxes[text][2] - boxes[text][0])
        while changed:  # what joins grows the box along the line, which may then hold more
            changed = False
            touching = _touching(facts, uf, groups[text])
            for other in sorted(touching, key=lambda r: (-touching[r], r)):
                if other not in groups or other == text or uf.find(other) != other:
                    continue
                if _share_within(boxes[other], boxes[text], reach) < STYLE_INSIDE:
                    continue
                if area[other] > STYLE_MAX_AREA * area[text] and not edges(other):
                    continue
                uf.join(text, other)
                groups[text] += groups.pop(other)
                area[text] += area.pop(other)
                # The line may grow along itself (a last glyph that formed no region), not
                # across: what joins must not let a column of pieces climb off the line.
                grown = _union_box(boxes[text], boxes.pop(other))
                boxes[text] = (boxes[text][0], grown[1], boxes[text][2], grown[3])
                text_roots.discard(other)
                changed = True
    return {uf.find(r) for r in text_roots}


def _darkened(colour: np.ndarray, under: np.ndarray) -> bool:
    """Is `colour` the background colour `under` seen through a dark shadow?

    A shadow is near-black (SHADOW_INK) at some opacity a over the background, so every
    channel is darkened by about the same a. A blend with a coloured shape, or JPEG ringing,
    darkens the channels unequally. A channel too dark to darken (a deep red's green)
    measures nothing; it must merely not get lighter, and two channels must measure.
    """
    span = under - SHADOW_INK
    usable = span > SHADOW_MIN_SPAN
    if usable.sum() < 2 or (colour[~usable] > under[~usable] + SHADOW_SLACK).any():
        return False
    a = (under[usable] - colour[usable]) / span[usable]
    return bool(a.min() >= SHADOW_ALPHA[0] and a.max() <= SHADOW_ALPHA[1]
                and a.max() - a.min() <= SHADOW_SPREAD)


def _attach_shadows(
    facts: UnitFacts,
    uf: UnionFind,
    present: list[int],
    owners: set[int],
    skip: set[int],
    background: int | None,
) -> None:
    """Join an opaque shape's drop shadow to it, as a layer style.

    A drop shadow shows as soft dark pieces on one side of the shape: they touch it, lie
    within its box grown by SHADOW_REACH of its larger side, are smaller than it and are the
    background around them darkened evenly (see `_darkened`). Text and photos are never
    taken; shapes are visited largest first, so a shadow that formed a shape of its own
    joins its caster.
    """
    if background is None:
        return
    groups = _root_groups(uf, present, skip)
    owners = {uf.find(r) for r in owners} & set(groups)
    boxes = {root: box_of(facts, units) for root, units in groups.items()}
    area = {root: int(facts.area[units].sum()) for root, units in groups.items()}
    # A textured background is many units: the shadow is measured on those around it.
    ground = _units_of(uf, present, background)
    for shape in sorted(owners, key=lambda r: (-area[r], r)):
        if uf.find(shape) != shape:
            continue
        box = boxes[shape]
        reach = SHADOW_REACH * max(box[2] - box[0], box[3] - box[1])
        touching = _touching(facts, uf, groups[shape])
        for other in sorted(touching, key=lambda r: (-touching[r], r)):
            if other not in groups or uf.find(other) != other:
                continue
            if area[other] > SHADOW_MAX_AREA * area[shape]:
                continue
            if not box_within(boxes[other], box, reach):
                continue
            under = facts.local_colour(ground, boxes[other])
            if under is None:
                continue
            if not _darkened(colour_of(facts, groups[other]), under):
                continue
            uf.join(shape, other)
            groups[shape] += groups.pop(other)
            area[shape] += area.pop(other)


def _absorb_rims(
    facts: UnitFacts, uf: UnionFind, present: list[int], skip: set[int]
) -> None:
    """Join a thin rim of pieces along an object's edge to the object.

    JPEG ringing and chroma subsampling, or a blurred export, leave a band a pixel or two
    wide around every object, in colours between the object's and its neighbour's, that
    forms pieces of its own. Such a band is thin (its area is at most RIM_WIDTH times its
    box's half perimeter), touches the object and lies within its box grown by RIM_REACH.
    """
    groups = _root_groups(uf, present, skip)
    boxes = {root: box_of(facts, units) for root, units in groups.items()}
    area = {root: int(facts.area[units].sum()) for root, units in groups.items()}
    for rim in sorted(groups, key=lambda r: (area[r], r)):
        top, left, bottom, right = boxes[rim]
        if area[rim] > RIM_WIDTH * ((bottom - top) + (right - left)):
            continue
        touching = _touching(facts, uf, groups[rim])
        hosts = [
            r for r in touching
            if r in groups and r != rim and uf.find(r) == r and area[r] > area[rim]
            and box_within(boxes[rim], boxes[r], RIM_REACH)
        ]
        if not hosts:
            continue
        host = max(hosts, key=lambda r: (touching[r], r))
        uf.join(host, rim)
        groups[host] += groups.pop(rim)
        area[host] += area.pop(rim)


def _drop_edge_rims(
    facts: UnitFacts, uf: UnionFind, groups: list[list[int]], bg_root: int
) -> tuple[list[list[int]], set[int]]:
    """Take the pieces of an object's rim out of "text" groups and join them to the object.

    In a degraded picture the ringing band along a shape's edge breaks into small thin pieces
    of one colour in a row, which the glyph rule takes for letters. A glyph on a card is
    wrapped by the card and a glyph on the background by the background; a rim piece lies
    between the two: it borders the background (at least RIM_SIDE of its boundary) and all
    of it lies within RIM_BAND px of a far larger object that is no text. A group left with
    fewer than TEXT_MIN_GLYPHS pieces (as `_glyph_count` counts them) is no text. Returns
    (text groups, the pieces taken out of them), and as text pieces did, those stay out of
    photos.
    """
    if not facts.smoothed or bg_root < 0:
        return groups, set()
    text_units = {u for group in groups for u in group}
    return _take_rims(
        uf,
        groups,
        lambda unit: _rim_host(facts, uf, unit, text_units, bg_root),
        lambda rest: _glyph_count(facts, rest),
    )


def _take_rims(
    uf: UnionFind,
    groups: list[list[int]],
    host_of: Callable[[int], int | None],
    glyphs: Callable[[list[int]], int],
) -> tuple[list[list[int]], set[int]]:
    """Join each text unit that `host_of` names a host for to that host; a group left with
    fewer than TEXT_MIN_GLYPHS `glyphs` is no text. Returns (text groups, units taken out).

    Both rim rules (a degraded picture's ringing, a clean picture's outline slivers) differ
    only in how a host is found and how letters are counted.
    """
    kept, rims = [], set()
    for group in groups:
        rest = []
        for unit in group:
            host = host_of(unit)
            if host is None:
                rest.append(unit)
            else:
                uf.join(host, unit)
                rims.add(unit)
        if glyphs(rest) >= TEXT_MIN_GLYPHS:
            kept.append(rest)
        else:
            rims.update(rest)
    return kept, rims


def _glyph_count(facts: UnitFacts, group: list[int]) -> int:
    """The letters a text group holds: its units, but a shape with its crumbs counts once.

    In a degraded picture a small shape with text across its edge leaves crumbs of itself
    between the letters, or ringing of its colour beside its edge, in a row with it like
    glyphs. Letters of a line are of a size; a unit with SHAPE_WITH_CRUMBS times the area of
    all the others together is a shape, and the group one object, not a line of them.
    """
    areas = [int(facts.area[u]) for u in group]
    if len(areas) > 1 and max(areas) >= SHAPE_WITH_CRUMBS * (sum(areas) - max(areas)):
        return 1
    return len(areas)


def _rim_host(
    facts: UnitFacts, uf: UnionFind, unit: int, text_units: set[int], bg_root: int
) -> int | None:
    """The object whose rim `unit` is (see `_drop_edge_rims`), or None.

    The band may ring in two tones, an outer and an inner piece, so the outer piece need not
    touch the object: all of it lies within RIM_BAND px of the object's pixels. Its colour is
    a blend of the object's and the background's next to it (a letter beside a shape is not).
    """
    box = facts.boxes[unit]
    if box is None or not _thin(facts, unit):
        return None
    touching = facts.neighbours.get(unit, {})
    total = sum(touching.values())
    behind = sum(n for u, n in touching.items() if uf.find(u) == bg_root)
    if not total or behind < RIM_SIDE * total:
        return None
    h, w = facts.own.shape
    top, left = max(box[0] - RIM_BAND, 0), max(box[1] - RIM_BAND, 0)
    crop = facts.own[top : min(box[2] + RIM_BAND, h), left : min(box[3] + RIM_BAND, w)]
    mine = crop == unit
    behind_units = [u for u in touching if uf.find(u) == bg_root]
    under = (np.array([facts.colour[u] for u in behind_units]).T
             @ np.array([touching[u] for u in behind_units], np.float64)) / behind
    for host in (int(u) for u in np.unique(crop)):
        if (host <= 0 or host in text_units or uf.find(host) == bg_root
                or facts.area[host] < RIM_HOST * facts.area[unit]):
            continue
        if (mine & ~dilate(crop == host, RIM_BAND, np.ones((3, 3), bool))).any():
            continue
        over = facts.local_colour(host, box, margin=RIM_BAND)
        if over is None:
            continue
        alpha, residual = unmix(facts.colour[unit] / 255.0, over / 255.0, under / 255.0)
        if np.isfinite(alpha) and residual <= RIM_BLEND:
            return host
    return None


def _drop_outline_rims(
    facts: UnitFacts, uf: UnionFind, groups: list[list[int]], bg_root: int
) -> tuple[list[list[int]], set[int]]:
    """Take the slivers along a shape's outline out of "text" groups and join them to it.

    Where a see-through shape's edge crosses a glow, a gradient or another shape, its
    anti-aliased edge breaks into thin slivers of one blended colour in a row, which the glyph
    rule takes for letters (and which then steal a layer from the shapes). A letter lies
    inside what it is set on, away from its outline; a sliver lies on the outline of a far
    larger object (see `_outline_host`). A group left with fewer than TEXT_MIN_GLYPHS pieces
    is no text. Returns (text groups, the pieces taken out of them).
    """
    if facts.smoothed:
        return groups, set()  # a degraded picture's rims: see `_drop_edge_rims`
    text_units = {u for group in groups for u in group}
    return _take_rims(
        uf, groups, lambda unit: _outline_host(facts, uf, unit, text_units, bg_root), len
    )


def _outline_host(
    facts: UnitFacts, uf: UnionFind, unit: int, text_units: set[int], bg_root: int
) -> int | None:
    """The object on whose outline the sliver `unit` lies, or None.

    The host is the largest smooth unit it touches that is neither background nor text, at
    least RIM_HOST times its area and OUTLINE_HOST of the picture (a letter's body is no host:
    its outline is a text style), sharing RIM_SIDE of the sliver's boundary. Every pixel of
    the sliver is within RIM_BAND px of the host and of the outside of the host's silhouette
    (holes filled, so a letter set inside a shape or ring is never on its outline), and the
    sliver's colour is a blend of the host's and that of the other units it touches (not the
    letters beside it), as an anti-aliased edge is.
    """
    box = facts.boxes[unit]
    touching = facts.neighbours.get(unit, {})
    if box is None or not touching or not _band(facts, unit):
        return None
    hosts = [
        u for u in touching
        if u not in text_units and uf.find(u) != bg_root and not facts.texture[u]
        and facts.area[u] >= RIM_HOST * facts.area[unit]
    ]
    if not hosts:
        return None
    host = max(hosts, key=lambda u: (int(facts.area[u]), u))
    big = facts.area[host] >= OUTLINE_HOST * facts.own.size
    if not big or touching[host] < RIM_SIDE * sum(touching.values()):
        return None  # a letter's own body, or a shape the sliver only brushes
    others = [u for u in touching if u != host and u not in text_units]
    if not others:
        return None
    weights = np.array([touching[u] for u in others], np.float64)
    under = (np.array([facts.colour[u] for u in others]).T @ weights) / weights.sum()
    over = facts.local_colour(host, box, margin=RIM_BAND)
    if over is None:
        return None
    alpha, residual = unmix(facts.colour[unit] / 255.0, over / 255.0, under / 255.0)
    between = np.isfinite(alpha) and OUTLINE_ALPHA[0] <= alpha <= OUTLINE_ALPHA[1]
    if not between or residual > RIM_BLEND:
        return None
    return host if _on_outline(facts, unit, host) else None


def _on_outline(facts: UnitFacts, unit: int, host: int) -> bool:
    """Does all of `unit` lie within RIM_BAND px of `host` and of its silhouette's outside?"""
    host_box = facts.boxes[host]
    if host_box is None:
        return False
    h, w = facts.own.shape
    grow = RIM_BAND + 1
    top, left = max(host_box[0] - grow, 0), max(host_box[1] - grow, 0)
    bottom, right = min(host_box[2] + grow, h), min(host_box[3] + grow, w)
    crop = facts.own[top:bottom, left:right]
    mine = crop == unit
    if int(mine.sum()) < int(facts.area[unit]):
        return False  # reaches beyond the host's box: not along its outline
    body = crop == host
    near_host = dilate(body, RIM_BAND, np.ones((3, 3), bool))
    outside = ~ndimage.binary_fill_holes(body | mine)
    near_outside = dilate(outside, RIM_BAND, np.ones((3, 3), bool))
    return bool((near_host & near_outside)[mine].all())


def _band(facts: UnitFacts, unit: int) -> bool:
    """Is `unit` a band at most RIM_WIDTH px wide (its area against its box's half perimeter)?"""
    box = facts.boxes[unit]
    if box is None:
        return False
    return bool(facts.area[unit] <= RIM_WIDTH * ((box[2] - box[0]) + (box[3] - box[1])))


def _thin(facts: UnitFacts, unit: int) -> bool:
    """Is `unit` a band at most RIM_WIDTH px wide (its area against its box's half perimeter)?

    In a smoothed (degraded) picture such a band is an edge's colour bleeding, whose mixed
    colour imitates a see-through shape; in a clean one nothing is smoothed and it counts.
    """
    return facts.smoothed and _band(facts, unit)


def _find_tints(
    facts: UnitFacts,
    uf: UnionFind,
    present: list[int],
    skip: set[int],
    background: int | None,
    n_pixels: int,
) -> dict[int, Tint]:
    """Translucent shapes, by root; the pieces of one translucent shape are joined.

    A piece that crosses a soft shadow or glow varies with it (a complex unit), yet the
    overlap test compares colours side by side along boundaries, which holds over such a
    variation; leaving it out left the overlap with the shape beneath a separate layer. The
    gradient test takes such pieces too: a see-through shape over its own drop shadow varies
    with the shadow (so its unit is complex), and along its outline it still follows what
    lies just outside, scaled by (1 - a), within FIT_RMS; an opaque varying piece (a photo,
    a texture, a shape with a gradient fill) does not. A piece found see-through is a shape
    with that tint even when it varies (see `form_elements`), so the shadow beneath it can be
    lifted as its effect instead of staying fused with it in one "effect" element.
    """
    bg_root = uf.find(background) if background is not None else -1
    shaped = [
        u for u in present
        if u not in skip and uf.find(u) != bg_root and not facts.texture[u]
        and facts.area[u] >= TINT_MIN_AREA * n_pixels and not _thin(facts, u)
    ]
    candidates = list(shaped)
    tints: dict[int, Tint] = {}
    for x, y, tint in overlap_tints(facts, shaped):
        uf.join(x, y)
        tints[uf.find(x)] = tint
    for unit in candidates:
        if uf.find(unit) in tints:
            continue
        for beneath in facts.neighbours.get(unit, {}):
            tint = gradient_tint(facts, unit, beneath)
            if tint is not None:
                tints[uf.find(unit)] = tint
                break
    _join_tint_pieces(facts, uf, shaped, tints, bg_root)
    roots = sorted(tints)
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
            if uf.find(a) != uf.find(b) and same_tint(tints[uf.find(a)], tints[uf.find(b)]):
                tint = tints[uf.find(a)]
                uf.join(a, b)
                tints[uf.find(a)] = tint
    tints = {root: tint for root, tint in tints.items() if uf.find(root) == root}
    return tints


def _join_tint_pieces(
    facts: UnitFacts, uf: UnionFind, shaped: list[int], tints: dict[int, Tint], bg_root: int
) -> None:
    """Join to a see-through shape its untinted pieces that show its tint over the
    background beside them (see `translucency.shows_tint`); `tints` is keyed by root.

    The overlap test pairs each piece once, so a shape over the background and over two
    other shapes leaves one of its pieces unpaired, a layer of its own. Only pieces over the
    background are joined this way: a piece over another shape that shows the tint may as
    well be that shape's, seen through a third, and joining it there misleads the order.
    """
    for unit in shaped:
        if uf.find(unit) in tints:
            continue
        neighbours = facts.neighbours.get(unit, {})
        for host in sorted(neighbours, key=lambda n: (-neighbours[n], n)):
            root = uf.find(host)
            if root not in tints:
                continue
            tint = tints[root]
            beside = [n for n in neighbours if uf.find(n) == bg_root]
            if any(shows_tint(facts, unit, tint, other) for other in beside):
                del tints[root]
                uf.join(root, unit)
                tints[uf.find(root)] = tint
                break


def element_map(
    own: np.ndarray,
    elements: list[Element],
    count: int,
    background: int | None,
    facts: UnitFacts | None = None,
) -> np.ndarray:
    """Element index per pixel (-1 for transparent input).

    A photo also claims the background's pixels inside its rectangle (its hard edge is often
    a line of pixels nearer to the background's regions than to the photo's). On a textured
    background (`facts.texture_pixels`), an undefined pixel of the texture's palette more
    than TEXTURE_EDGE px from the defining pixels of the object whose territory holds it is
    texture showing between its pieces, not that object.
    """
    lut = np.full(count + 2, -1, np.int32)
    for index, element in enumerate(elements):
        lut[element.units] = index
    emap = lut[own]  # own == -1 picks lut[-1], which is -1
    for index, element in enumerate(elements):
        if element.kind != "photo" or element.rect is None:
            continue
        top, left, bottom, right = element.rect
        crop = emap[top:bottom, left:right]
        claim = crop == index
        if background is not None:
            claim |= crop == background
        crop[claim] = index
    if facts is not None and facts.texture_pixels is not None and background is not None:
        photos = [i for i, e in enumerate(elements) if e.kind == "photo"]
        objects = (emap >= 0) & (emap != background) & ~np.isin(emap, photos)
        defined = facts.labels > 0
        near = dilate(defined & objects, TEXTURE_EDGE)
        emap[objects & ~near & facts.texture_pixels] = background
    return emap
