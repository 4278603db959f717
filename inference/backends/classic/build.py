"""Drawing each element's layer, bottom-up, against what is already beneath it.

The layers are built in z-order while a running composite of the layers so far is kept. For
element E with colour model F (its fitted colour, extended over its whole extent):

- its interior (its own region pixels, and territory far from any other object) is opaque
  with the picture's own colour, so nothing there is lost to a model;
- what it hides (its extent under objects above it) is opaque with F: the completed shape;
- it also reaches one pixel under the objects above it, where their anti-aliased edges need
  something to blend with;
- its own edge pixels, and those of lower objects just outside it, get alpha by unmixing the
  picture against F over the composite beneath. An edge pixel that the two-colour story does
  not explain is an object above blending into E: E is opaque there and the object above
  explains the pixel when its turn comes.

Work is done inside each element's bounding box, so the cost follows the objects' sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.alpha import unmix
from layerlift.inference.backends.classic.channels import channel_max
from layerlift.inference.backends.classic.colour_fit import ColourModel, fit
from layerlift.inference.backends.classic.completion import push_pull
from layerlift.inference.backends.classic.effects import (
    Effect,
    background_model,
    effect_at,
    find_effects,
    fit_style,
)
from layerlift.inference.backends.classic.facts import Box, UnitFacts
from layerlift.inference.backends.classic.grouping import Element
from layerlift.inference.backends.classic.ordering import (
    Extent,
    enclosed_by,
    shows_under,
    territory_boxes,
)
from layerlift.inference.backends.classic.shapes import (
    box_completion,
    convex_hull,
    ellipse_completion,
)
from layerlift.inference.backends.classic.translucency import (
    Tint,
    _least_opacity,
    _tint_in_cube,
    tint_over,
)
from scipy import ndimage

PAD = 3
BAND_PIXELS = 1 << 20  # full-canvas float work is done in bands of about this many pixels
RESIDUAL_TOLERANCE = 10.0 / 255.0
MODEL_AGREEMENT = 12.0 / 255.0
OVERLAY_REACH = 6
OVERLAY_LINE_REACH = 1.0  # text lines reach this many line heights beyond their glyphs
OVERLAY_MIN_ALPHA = 0.3
MIN_RIM_ALPHA = 0.02
MAIN_UNIT = 0.9  # share of an element's area: its main unit (see `_element_model`)
BAND_WIDTH = 4.0  # px: the widest edge band `_element_model` leaves out of a fit
TINT_INSET = 2  # px of a shape's edge left out when its tint is read against an effect
TINT_MIN_PIXELS = 64
TINT_ROUNDS = 3  # fits of a shape's tint over an effect, each on the pixels the last explains
TINT_TRIM = 8.0  # levels a pixel may miss the last fit by and still be explained
TINT_MIN_SHARE = 0.6  # of the shape's inner pixels the fit must explain
# The opacity told to a see-through shape whose pixels cannot measure it (see
# `_tint_by_prior`) when no other shape's was measured: the middle of the range.
PRIOR_OPACITY = 0.5
PRIOR_MAX = 0.95  # a shape that needs this much opacity to stay in the cube is opaque
CASTER_MIN_SIZE = 0.5  # of the effect's seed: a smaller caster is tried last (see _by_fit)
CONTACT_WEIGHT = 0.2  # added to a caster's style fit for sharing all of the effect's outline
CASTER_KINDS = ("shape", "effect")  # a see-through shape over a shadow shades like one
# An opaque-looking shape casts a glow only when the glow lines this share of the px just
# outside its outline (2 to GLOW_RING px out, where the background shows).
GLOW_RING = 4
GLOW_RING_SHARE = 0.5
GLOW_MIN_CASTER = 0.01  # of the picture
PATCH_KINDS = ("effect", "texture")  # soft patches an effect over a lower shape may be
PATCH_INSIDE = 0.8  # of a soft patch inside a lower shape's extent: it lies on that shape
PATCH_LIFTED = 0.5  # of a soft patch an effect must cover to be the patch
UNEXPLAINED = 2.0  # see _part: measured this many times the caster's style, and more,
UNEXPLAINED_MARGIN = 0.05  # ... is another effect's
EFFECT_MAX_REMOVED = 0.4  # the most of an effect's opacity divided out of what lies beneath
EFFECT_PEAK = 0.5  # the opacity a soft shadow or glow is told at its strongest, at least
CROSS = ndimage.generate_binary_structure(2, 1)
# A cast effect: (caster element, opacity over the canvas, the caster's fitted style).
Cast = tuple[int, np.ndarray, np.ndarray]


@dataclass
class BuiltLayer:
    """A layer before naming: straight RGBA8 pixels in `box` of the canvas, and its source."""

    kinds: list[str]
    names: list[str]
    box: Box
    rgba: np.ndarray  # (bh, bw, 4) uint8
    colour: np.ndarray | None = None  # 0-255, for one-colour layers (text)

    def pixels_in(self, box: Box) -> np.ndarray:
        """The RGBA pixels inside canvas `box`, which must lie within the layer's (a view)."""
        top, left = box[0] - self.box[0], box[1] - self.box[1]
        return self.rgba[top : top + box[2] - box[0], left : left + box[3] - box[1]]

    @property
    def alpha_sum(self) -> float:
        return float(self.rgba[..., 3].sum(dtype=np.float64) / 255.0)


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """`mask` dilated `steps` times by the 3 x 3 square (Chebyshev distance <= steps).

    Done as two running maxima of width 2 * steps + 1 inside the mask's bounding box grown by
    `steps`: the same pixels as iterated binary dilation, at a cost that follows the mask's
    extent rather than the box's and does not grow with `steps`.
    """
    if steps <= 0:
        return mask
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return mask
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    top, bottom = max(int(rows[0]) - steps, 0), min(int(rows[-1]) + steps + 1, h)
    left, right = max(int(cols[0]) - steps, 0), min(int(cols[-1]) + steps + 1, w)
    size = 2 * steps + 1
    crop = mask[top:bottom, left:right].view(np.uint8)
    grown = ndimage.maximum_filter1d(crop, size, axis=0, mode="constant")
    grown = ndimage.maximum_filter1d(grown, size, axis=1, mode="constant")
    out = np.zeros(mask.shape, bool)
    out[top:bottom, left:right] = grown.view(bool)
    return out


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _pad(box: Box, h: int, w: int) -> Box:
    return (max(0, box[0] - PAD), max(0, box[1] - PAD), min(h, box[2] + PAD), min(w, box[3] + PAD))


class Canvas:
    """The running composite of the layers built so far (straight colour, 0-1) and its alpha."""

    def __init__(self, h: int, w: int) -> None:
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.alpha = np.zeros((h, w), np.float32)

    def add(self, box: Box, rgba: np.ndarray) -> None:
        """Composite `rgba` over the canvas at `box`, a band of rows at a time (bounded memory).

        The colour is worked one channel at a time: numpy broadcasts an (h, w, 1) factor over
        three channels several times slower than it multiplies two planes. An opaque band is
        the source itself (the same floats the general formula gives, as x * 1 + y * 0 is x).
        """
        top, left, bottom, right = box
        rows = max(1, BAND_PIXELS // max(right - left, 1))
        for start in range(0, bottom - top, rows):
            stop = min(bottom - top, start + rows)
            src = rgba[start:stop].astype(np.float32)
            src /= 255.0
            view = (slice(top + start, top + stop), slice(left, right))
            if rgba[start:stop, :, 3].min() == 255:
                self.rgb[view] = src[..., :3]
                self.alpha[view] = 1.0
                continue
            a = src[..., 3]
            keep = 1.0 - a
            keep *= self.alpha[view]  # what shows of the canvas below
            out_a = a + keep
            covered = out_a > 0
            safe = np.where(covered, out_a, 1.0)
            rgb = self.rgb[view]
            for c in range(3):
                premul = src[..., c] * a
                premul += rgb[..., c] * keep
                premul /= safe
                premul[~covered] = 0.0
                rgb[..., c] = premul
            self.alpha[view] = out_a

    def difference(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel max channel |image - canvas| (0-1) for a uint8 (h, w, 3) picture."""
        h, w = self.alpha.shape
        out = np.empty((h, w), np.float32)
        rows = max(1, BAND_PIXELS // max(w, 1))
        for top in range(0, h, rows):
            band = slice(top, min(h, top + rows))
            pixels = image[band].astype(np.float32) / 255.0
            out[band] = channel_max(np.abs(pixels - self.rgb[band]))
        return out


def _element_model(element: Element, facts: UnitFacts) -> ColourModel:
    """The colour model of an element's units, or of its main unit where only that fits.

    In a degraded (smoothed) picture, along an edge that a shape shares with an object over
    it, the blend of the two and the ringing form small units of their own that join the
    shape (a clean picture's one-pixel blends do not). Their colours spoil its fit, and the
    part hidden under the object would be filled by diffusion from that edge, in the
    object's colour. A unit holding MAIN_UNIT of the element's area whose own model fits is
    the shape's colour, when the others are such bands.
    """
    model = fit(facts.sums.total(element.units))
    if model.good or len(element.units) < 2 or not facts.smoothed:
        return model
    areas = facts.area[element.units]
    main = element.units[int(np.argmax(areas))]
    if areas.max() < MAIN_UNIT * areas.sum():
        return model
    if not all(_band(facts, u) for u in element.units if u != main):
        return model  # a unit of some body (a shadow, a stripe) is part of the colour
    own = fit(facts.sums.total([main]))
    return own if own.good else model


def _band(facts: UnitFacts, unit: int) -> bool:
    """Is `unit` a band along an edge: at most BAND_WIDTH px wide (area over half perimeter)?"""
    box = facts.boxes[unit]
    if box is None:
        return True
    return bool(facts.area[unit] <= BAND_WIDTH * ((box[2] - box[0]) + (box[3] - box[1])))


def _colour_field(
    element: Element,
    facts: UnitFacts,
    box: Box,
    image: np.ndarray,
    known: np.ndarray,
) -> tuple[np.ndarray, bool]:
    """(F over `box` (0-1), whether it is a fitted model rather than a push-pull fill)."""
    top, left, bottom, right = box
    if element.kind not in ("photo", "texture", "effect"):
        model = _element_model(element, facts)
        if model.good:
            field = model.evaluate(top, left, bottom - top, right - left) / 255.0
            return np.clip(field, 0.0, 1.0), True
    crop = image[top:bottom, left:right].astype(np.float32) / 255.0
    if not known.any():
        known = np.ones(known.shape, bool)
    return push_pull(crop, known), False


def _interior(
    element: Element,
    box: Box,
    image: np.ndarray,
    own: np.ndarray,
    defined: np.ndarray,
    others: np.ndarray,
    facts: UnitFacts,
) -> tuple[np.ndarray, np.ndarray]:
    """(interior mask, F) of an element in `box`.

    The interior is its own region pixels plus territory far from other objects' regions
    where the picture agrees with F (its model, or a smooth fill from its region pixels): a
    pixel far from every region but off F belongs to something no region caught (thin
    text), not to this layer.
    """
    top, left, bottom, right = box
    loose = own & ~_grow(others, 2)
    colour, _ = _colour_field(element, facts, box, image, own & defined)
    if loose.any():
        pixels = image[top:bottom, left:right][loose].astype(np.float32) / 255.0
        agree = channel_max(np.abs(pixels - colour[loose])) <= MODEL_AGREEMENT
        loose[loose] = agree
    return own & (defined | loose), colour


def _to_rgba8(colour: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """Straight RGBA8 from float colour (h, w, 3) and alpha (h, w) or a constant, in bands."""
    h, w = colour.shape[:2]
    out = np.empty((h, w, 4), np.uint8)
    rows = max(1, BAND_PIXELS // max(w, 1))
    for top in range(0, h, rows):
        band = slice(top, min(h, top + rows))
        out[band, :, :3] = np.clip(np.rint(colour[band] * 255.0), 0, 255)
        if isinstance(alpha, np.ndarray):
            out[band, :, 3] = np.clip(np.rint(alpha[band] * 255.0), 0, 255)
        else:
            out[band, :, 3] = round(alpha * 255.0)
    return out


def build_background(
    element: Element, index: int, image: np.ndarray, defined: np.ndarray, emap: np.ndarray,
    facts: UnitFacts, canvas: Canvas,
) -> BuiltLayer:
    """The bottom layer: opaque everywhere, the picture where it shows, completed elsewhere."""
    h, w = emap.shape
    own = emap == index
    box = (0, 0, h, w)
    interior, colour = _interior(
        element, box, image, own, defined & own, defined & ~own & (emap >= 0), facts
    )
    colour[interior] = image[interior].astype(np.float32) / 255.0
    rgba = _to_rgba8(colour, 1.0)
    return BuiltLayer([element.kind], [element.name], box, rgba)


def lift_effects(
    background: BuiltLayer,
    index: int,
    emap: np.ndarray,
    extents: list[Extent | None],
    elements: list[Element],
    image: np.ndarray,
    facts: UnitFacts | None = None,
) -> list[tuple[int, BuiltLayer]]:
    """Soft shadows and glows in the background layer as layers of their own (see `effects`).

    Each comes with the element casting it, under which it belongs. Its opacity is what was
    measured where it shows, and the caster's drop shadow or glow that best explains that
    elsewhere (under the shapes, and in the faint tail); a shadow no see-through shape casts
    stays in the background. The background keeps its smooth model where an effect lies over
    it, so the caller puts the background into the composite only after this: otherwise the
    effect would be in it twice.

    With `facts`, soft patches lying on a lower shape are looked at too, against that shape's
    colour (`_over_lower`; `emap` and `extents` change in place where such a patch turns out
    to be the shape seen through an effect), and an effect holding two casters' is parted
    (`_part`).
    """
    own = emap == index
    colour = background.rgba[..., :3].astype(np.float32)
    model = background_model(colour, own)
    if model is None:
        return []
    search, base, over = own, model, {}
    if facts is not None:
        search, base, colour, over = _over_lower(
            elements, emap, extents, facts, image, own, colour, model
        )
    layers = []
    told: set[int] = set()  # shapes whose opacity was told, not measured (`_tint_by_prior`)

    def cast_of(effect: Effect, taken: frozenset[int] = frozenset()) -> Cast | None:
        return _cast(effect, search, emap, extents, index, elements, image, model, taken, told)

    todo: list[tuple[Effect, Cast | None]] = [(e, None) for e in find_effects(colour, search, base)]
    while todo:
        effect, cast = todo.pop(0)
        if cast is None:  # found whole; a part told apart from one comes cast already
            cast = cast_of(effect)
            if cast is not None:
                cast, part = _part(effect, cast, colour, search, base, cast_of)
                if part is not None:
                    todo.append(part)
        if cast is None:
            continue
        for patch, lower in over.items():
            mine = emap == patch
            if extents[patch] is not None and (cast[1][mine] > 0).mean() >= PATCH_LIFTED:
                emap[mine] = lower  # the lower shape, seen through the effect
                extents[patch] = None
        caster, alpha, _ = cast
        lifted = alpha > 0
        if not lifted.any():
            continue
        effect.colour = _at_peak(effect.colour, alpha, model, lifted)
        background.rgba[..., :3][lifted] = np.clip(np.rint(model[lifted]), 0, 255)
        ys, xs = np.nonzero(lifted)
        box = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        crop = alpha[box[0] : box[2], box[1] : box[3]]
        field = np.broadcast_to(effect.colour, (*crop.shape, 3))
        layers.append((caster, BuiltLayer(["effect"], [effect.kind], box, _to_rgba8(field, crop))))
    return layers


def _over_lower(
    elements: list[Element],
    emap: np.ndarray,
    extents: list[Extent | None],
    facts: UnitFacts,
    image: np.ndarray,
    own: np.ndarray,
    colour: np.ndarray,
    model: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
    """(where to look for effects, the colour beneath there, the picture there, and the soft
    patches looked at with the shape each lies on).

    A glow or shadow over a lower shape is a patch whose colour varies smoothly (an "effect"
    element) inside that shape's outline: what lies beneath it is the shape's own flat colour,
    not the background's. With the lower shape's colour as the model there, the patch's
    pixels are the same one colour at varying opacity as the effect's part over the
    background, and the two are found as one.
    """
    search, base, seen = own.copy(), model.copy(), colour.copy()
    over: dict[int, int] = {}
    for patch, element in enumerate(elements):
        if element.kind not in PATCH_KINDS or extents[patch] is None:
            continue
        mine = emap == patch
        lower = _lower_shape(patch, mine, elements, extents)
        if lower is None:
            continue
        fitted = _element_model(elements[lower], facts)
        if not fitted.good:
            continue
        ys, xs = np.nonzero(mine)
        top, left = int(ys.min()), int(xs.min())
        field = fitted.evaluate(top, left, int(ys.max()) + 1 - top, int(xs.max()) + 1 - left)
        base[ys, xs] = field[ys - top, xs - left]
        seen[ys, xs] = image[ys, xs]
        search |= mine
        over[patch] = lower
    return search, base, seen, over


def _lower_shape(
    patch: int, mine: np.ndarray, elements: list[Element], extents: list[Extent | None]
) -> int | None:
    """The shape whose completed extent holds most of `mine` (PATCH_INSIDE of it at least)."""
    best, most = None, PATCH_INSIDE * float(mine.sum())
    for index, element in enumerate(elements):
        ext = extents[index]
        if index == patch or ext is None or element.kind != "shape":
            continue
        top, left, bottom, right = ext.box
        inside = float((mine[top:bottom, left:right] & ext.mask).sum())
        if inside > most:
            best, most = index, inside
    return best


def _part(
    effect: Effect,
    cast: Cast,
    colour: np.ndarray,
    own: np.ndarray,
    model: np.ndarray,
    cast_of: Callable[[Effect, frozenset[int]], Cast | None],
) -> tuple[Cast, tuple[Effect, Cast] | None]:
    """(the cast, and the part of the effect another shape casts with its cast, or None).

    One soft patch can hold two shadows (or two glows) of neighbouring shapes that run into
    each other, but a shape casts one. Where the measured opacity is well above what the
    caster's offset blur reaches (UNEXPLAINED times it, and more), the pixels are another
    effect's: told apart, with its own colour, and cast by another shape, it is a layer of
    its own, and the first caster's effect keeps its style there. When no other shape casts
    that part, the effect stays whole.
    """
    rest = effect.seed & (effect.alpha > UNEXPLAINED * cast[2] + UNEXPLAINED_MARGIN)
    other = effect_at(rest, colour, own, model) if rest.any() else None
    found = None if other is None else cast_of(other, frozenset({cast[0]}))
    if other is None or found is None:
        return cast, None
    return (cast[0], np.where(rest, cast[2], cast[1]), cast[2]), (other, found)


def _at_peak(
    colour: np.ndarray, alpha: np.ndarray, model: np.ndarray, lifted: np.ndarray
) -> np.ndarray:
    """The effect's colour moved towards the background until it peaks at EFFECT_PEAK opacity.

    Over one background colour, a faint dark shadow and a stronger grey one look the same;
    the colour was taken at the edge of the colour cube (the faintest story). Designers'
    shadows and glows peak at middling opacity, so a faint one is told as that instead
    (`alpha` is scaled in place).
    """
    peak = float(alpha.max())
    if peak >= EFFECT_PEAK or peak <= 0:
        return colour
    weight = alpha[lifted][:, None]
    base = (model[lifted] * weight).sum(axis=0) / weight.sum() / 255.0
    scale = peak / EFFECT_PEAK
    alpha *= 1.0 / scale
    return np.clip(base + (colour - base) * scale, 0.0, 1.0).astype(np.float32)


def _cast(
    effect: Effect,
    own: np.ndarray,
    emap: np.ndarray,
    extents: list[Extent | None],
    background: int,
    elements: list[Element],
    image: np.ndarray,
    model: np.ndarray,
    taken: frozenset[int] = frozenset(),
    told: set[int] | None = None,
) -> Cast | None:
    """(caster element, opacity over the canvas, the caster's fitted style) of a soft effect,
    or None when no shape touching it (other than those `taken`) casts it; see `lift_effects`.
    Shapes whose tint is told rather than measured are added to `told`.

    Only see-through shapes cast effects of their own: an opaque shape's shadow, like a
    text's, is a layer style that stays in its layer (see `grouping`), while a see-through
    layer cannot hold what shows through it. A shape not yet known to be see-through is
    when its colour follows the fitted effect beneath it (it then gets that tint). A glow
    that lines a shape's outline is lifted under it even when nothing tells the shape's tint
    (over a flat background and a glow flat under its middle, a see-through shape looks
    opaque): left in the background it is a halo that moves with nothing.

    The caster is the touching shape sharing most of the effect's outline whose style explains
    the effect and that is see-through (or lined by the glow). When that one is not (an
    opaque-looking piece of another shape that the shadow runs along), a shape with less
    contact casts it only if it is already known to be see-through: a small piece of a
    texture would follow some smudge beneath it by chance.
    """
    near = _grow(effect.seed, 2)
    touching = np.unique(emap[near & (emap >= 0) & (emap != background)])
    candidates = [
        e
        for e in touching.tolist()
        if extents[e] is not None and elements[e].kind in CASTER_KINDS and e not in taken
    ]
    if not candidates:
        return None
    asked = False
    for element, caster, fitted in _by_fit(candidates, effect, own, emap, extents):
        if elements[element].tint is None:
            if asked:
                continue
            asked = True
            shape = emap == element
            tint = _tint_over_effect(shape, image, model, effect.colour, fitted[1])
            if tint is None:
                if not (effect.kind == "glow" and _surrounds(effect.seed, caster, own)):
                    continue
                if elements[element].kind == "shape":  # a soft patch is told nothing
                    told = set() if told is None else told
                    measured = [
                        e.tint.alpha for i, e in enumerate(elements)
                        if e.tint is not None and i not in told
                    ]
                    tint = _tint_by_prior(shape, image, model, effect.colour, fitted[1], measured)
                    told.add(element)
            elements[element].tint = tint
        if elements[element].kind == "effect" and elements[element].tint is not None:
            caster = _as_shape(elements[element], element, extents, caster)
            fitted = fit_style(effect.alpha, own, caster) or fitted
        # Where the effect shows, the measurement is what the picture holds: the fitted
        # style, a smooth guess, overshoots it by tens of levels near the canvas's edge.
        shows = own & (effect.alpha > 0)
        return element, np.where(shows, effect.alpha, fitted[1]), fitted[1]
    return None


def _as_shape(
    element: Element, index: int, extents: list[Extent | None], caster: np.ndarray
) -> np.ndarray:
    """A soft patch found to be a see-through caster over its effect is a shape (in place).

    Grouped as an "effect" (its colour follows the shadow beneath it), its extent is its own
    pixels with their holes filled; as the caster of an effect it is a shape, completed to its
    hull under what lies over it, as its style is. Returns its coverage (`caster`, a whole
    canvas mask, completed).
    """
    element.kind = "shape"
    extent = extents[index]
    extents[index] = Extent(extent.box, convex_hull(extent.mask))
    top, left, bottom, right = extent.box
    hull = caster.copy()
    hull[top:bottom, left:right] = extents[index].mask
    return hull


def _by_fit(
    candidates: list[int],
    effect: Effect,
    own: np.ndarray,
    emap: np.ndarray,
    extents: list[Extent | None],
) -> list[tuple[int, np.ndarray, tuple[float, np.ndarray]]]:
    """(element, coverage, fitted style) of the candidates whose style explains the effect,
    the best explained first (then the most contact).

    A glow or shadow runs along its caster's outline, but where see-through shapes overlap it
    also runs along a neighbour's: the one whose own outline, offset and blurred, explains
    the measured opacity clearly best is the caster, not the one that happens to border it
    most. Contact still counts (CONTACT_WEIGHT): two neighbours of one size fit alike.
    A piece much smaller than the effect's seen part, blurred widely, fits a smudge by
    chance; it is tried after the others.
    """
    contact = _contact(candidates, effect.seed, emap)
    total = max(sum(contact.values()), 1)
    fits = []
    for rank, element in enumerate(_by_contact(candidates, effect.seed, emap)):
        top, left, bottom, right = extents[element].box
        caster = np.zeros(own.shape, bool)
        caster[top:bottom, left:right] = extents[element].mask
        fitted = fit_style(effect.alpha, own, caster)
        if fitted is not None:
            small = int(caster.sum()) < CASTER_MIN_SIZE * int(effect.seed.sum())
            score = fitted[0] + CONTACT_WEIGHT * contact[element] / total
            fits.append((small, -score, rank, element, caster, fitted))
    fits.sort(key=lambda item: item[:3])
    return [(element, caster, fitted) for *_, element, caster, fitted in fits]


def _surrounds(seed: np.ndarray, caster: np.ndarray, own: np.ndarray) -> bool:
    """Does the effect's seed run around the caster's outline where the background shows?

    An outer glow lines its caster on every side; a smudge beside a shape (the bright spot of
    a radial gradient the background model missed) touches only part of its outline. A speck
    (a piece of a texture) casts no glow.
    """
    if caster.sum() < GLOW_MIN_CASTER * caster.size:
        return False
    ring = _grow(caster, GLOW_RING) & ~_grow(caster, 1) & own
    return bool(ring.any()) and float(seed[ring].mean()) >= GLOW_RING_SHARE


def _contact(elements: list[int], seed: np.ndarray, emap: np.ndarray) -> dict[int, int]:
    """Pixels of `seed`'s outline that each of `elements` holds."""
    rim = _grow(seed, 2) & ~seed
    counts = np.bincount(emap[rim & (emap >= 0)], minlength=max(elements, default=0) + 1)
    return {e: int(counts[e]) for e in elements}


def _by_contact(elements: list[int], seed: np.ndarray, emap: np.ndarray) -> list[int]:
    """`elements` by how much of `seed`'s outline they share, most first: the likely caster."""
    counts = _contact(elements, seed, emap)
    return sorted(elements, key=lambda e: (-counts[e], e))


def _tint_over_effect(
    shape: np.ndarray, image: np.ndarray, model: np.ndarray, colour: np.ndarray,
    alpha: np.ndarray,
) -> Tint | None:
    """The tint of `shape` if its inner pixels follow the effect drawn beneath it.

    A shape's region also holds pixels that the effect model does not explain (where another
    see-through shape overlaps it, or where the fitted model's edge is a pixel or two off), so
    the fit is repeated on the pixels it explains, while they are most of the shape's.
    """
    inner = ndimage.binary_erosion(shape, iterations=TINT_INSET)
    if inner.sum() < TINT_MIN_PIXELS:
        return None
    base = model[inner].astype(np.float64)
    a = alpha[inner].astype(np.float64)[:, None]
    under = base + a * (colour.astype(np.float64) * 255.0 - base)
    seen = image[inner].astype(np.float64)
    keep = np.ones(len(seen), bool)
    for _ in range(TINT_ROUNDS):
        tint = tint_over(seen[keep], under[keep], to_cube=True)
        if tint is not None:
            return tint if _shows_through(tint, seen[keep], under[keep]) else None
        ds, du = seen - seen[keep].mean(axis=0), under - under[keep].mean(axis=0)
        scale = float((ds[keep] * du[keep]).sum() / max((du[keep] ** 2).sum(), 1e-9))
        keep = np.abs(ds - scale * du).max(axis=1) <= TINT_TRIM
        if keep.mean() < TINT_MIN_SHARE or keep.sum() < TINT_MIN_PIXELS:
            return None
    return None


def _tint_by_prior(
    shape: np.ndarray, image: np.ndarray, model: np.ndarray, colour: np.ndarray,
    alpha: np.ndarray, measured: list[float],
) -> Tint | None:
    """The tint of a shape lined by its glow whose pixels cannot measure it, or None.

    Over a glow flat beneath its middle, a see-through shape shows no variation to measure
    its opacity by: any opacity with its matching colour explains the pixels. The glow is
    known there (its colour and fitted fall-off), so the shape's colour follows from an
    opacity: the median of the picture's `measured` see-through shapes' (a designer
    gives a set of overlays one opacity), else PRIOR_OPACITY, raised to the least opacity
    that keeps the colour inside the colour cube. Built opaque instead, the shape's layer
    holds the glow's colour and hides the glow's middle.
    """
    inner = ndimage.binary_erosion(shape, iterations=TINT_INSET)
    if inner.sum() < TINT_MIN_PIXELS:
        return None
    base = model[inner].astype(np.float64)
    a = alpha[inner].astype(np.float64)[:, None]
    under = (base + a * (colour.astype(np.float64) * 255.0 - base)).mean(axis=0)
    seen = image[inner].astype(np.float64).mean(axis=0)
    _, misfit = unmix(seen / 255.0, colour.astype(np.float64), base.mean(axis=0) / 255.0)
    if float(misfit) <= RESIDUAL_TOLERANCE:
        return None  # its colour is the effect's over the background: a piece of the effect
    opacity = float(np.median(measured)) if measured else PRIOR_OPACITY
    opacity = min(max(opacity, _least_opacity(seen, under)), 1.0)
    if opacity >= PRIOR_MAX:
        return None
    return _tint_in_cube(opacity, (seen - (1.0 - opacity) * under) / opacity)


def _shows_through(tint: Tint, seen: np.ndarray, under: np.ndarray) -> bool:
    """Does the shape repeat more of the effect's variation than its fit leaves unexplained?

    A nearly opaque tint over a faint effect repeats so little of it that a chance
    correlation (a piece of a texture over a smudge) fits as well: the variation shown
    through, (1 - a) times the effect's, must exceed the misfit.
    """
    shown = (1.0 - tint.alpha) * (under - under.mean(axis=0))
    residual = seen - tint.over(under)
    residual -= residual.mean(axis=0)
    spread = float(np.sqrt((shown * shown).sum(axis=1).mean()))
    return spread > float(np.sqrt((residual * residual).sum(axis=1).mean()))


def _overlay_pixels(
    image: np.ndarray,
    box: Box,
    interior: np.ndarray,
    upper: np.ndarray,
    lines: list[Box],
    element: Element,
    facts: UnitFacts,
) -> np.ndarray:
    """Pixels of a photo that are really the soft edges of a flat object lying on it.

    Small text on a photo has strokes too thin to hold any region pixel, so they sit inside
    the photo's texture. Near an object above (its region pixels within OVERLAY_REACH, or on
    the line of a text above), a pixel that is the nearest such object's colour blended over
    the photo, as smoothly filled from further away, belongs to that object.
    """
    top, left, bottom, right = box
    near = _grow(upper, OVERLAY_REACH)
    for lt, ll, lb, lr in lines:
        reach = OVERLAY_LINE_REACH * (lb - lt)
        near[max(lt - top, 0) : max(lb - top, 0),
             max(int(ll - reach) - left, 0) : max(int(lr + reach) - left, 0)] = True
    near &= interior
    if not near.any() or not upper.any():
        return np.zeros(interior.shape, bool)
    fill, _ = _colour_field(element, facts, box, image, interior & ~near)
    crop = image[top:bottom, left:right]
    iy, ix = ndimage.distance_transform_edt(~upper, return_distances=False, return_indices=True)
    over = crop[iy[near], ix[near]].astype(np.float32) / 255.0
    pixels = crop[near].astype(np.float32) / 255.0
    a, res = unmix(pixels, over, fill[near])
    hit = np.isfinite(a) & (np.nan_to_num(a) >= OVERLAY_MIN_ALPHA) & (res <= RESIDUAL_TOLERANCE)
    out = np.zeros(interior.shape, bool)
    out[near] = hit
    return out


def _build_tinted(
    element: Element,
    box: Box,
    own: np.ndarray,
    hidden: np.ndarray,
    below: np.ndarray,
    pixels: np.ndarray,
    canvas: Canvas,
    over: np.ndarray | None = None,
) -> BuiltLayer:
    """A translucent shape: its colour everywhere, alpha unmixed against what lies beneath.

    Inside, unmixing gives the shape's opacity; at its edges, the opacity times the edge
    coverage. Under objects above, it keeps its opacity. Over the lower pieces within its
    extent (`over`: one seen only through it is enclosed by it), it is unmixed too.
    """
    assert element.tint is not None
    top, left, bottom, right = box
    colour = np.empty((*own.shape, 3), np.float32)
    colour[...] = np.asarray(element.tint.colour, np.float32) / 255.0
    alpha = np.zeros(own.shape, np.float32)
    alpha[hidden] = element.tint.alpha
    todo = own | (_grow(own, 2) & below)
    if over is not None:
        todo |= over
    under = canvas.rgb[top:bottom, left:right][todo]
    a, res = unmix(pixels[todo], colour[todo], under)
    ok = np.isfinite(a) & ((res <= RESIDUAL_TOLERANCE) | own[todo])
    alpha[todo] = np.where(ok, np.nan_to_num(a), np.where(own[todo], element.tint.alpha, 0.0))
    rgba = _to_rgba8(colour, alpha)
    canvas.add(box, rgba)
    return BuiltLayer([element.kind], [element.name], box, rgba)


def build_element(
    element: Element,
    index: int,
    rank: np.ndarray,
    extent: Extent,
    territory: Box,
    image: np.ndarray,
    defined: np.ndarray,
    emap: np.ndarray,
    facts: UnitFacts,
    canvas: Canvas,
    lines: list[Box] = (),
    over: Tint | None = None,
    on_curve: float | None = None,
) -> BuiltLayer:
    """One object's layer, given its z-rank (`rank[element index + 1]`) and extent.

    `on_curve`: a noisy picture's looser ellipse tolerance, tried where a shape's box and
    clean ellipse completions both fail (only ever adding pixels under objects above it).

    `lines` are the boxes of the text elements above it (photos look for thin text there).
    `over` is the tint of a see-through shape it is seen through (taken off `image` on its
    pixels already, see `_under_tint`): taken off its fitted colour too.
    """
    h, w = emap.shape
    box = _pad(_union(extent.box, territory), h, w)
    if element.kind == "shape":  # room for a completed ellipse beyond the visible part
        grow_y, grow_x = (territory[2] - territory[0]) // 2, (territory[3] - territory[1]) // 2
        box = (max(0, box[0] - grow_y), max(0, box[1] - grow_x),
               min(h, box[2] + grow_y), min(w, box[3] + grow_x))
    top, left, bottom, right = box
    em = emap[top:bottom, left:right]
    dfn = defined[top:bottom, left:right]
    mine = rank[index + 1]
    ranks = rank[em + 1]
    own = em == index
    above = ranks > mine
    below = (ranks < mine) & (ranks >= 0)
    hull = np.zeros(own.shape, bool)
    et, el, eb, er = extent.box
    hull[et - top : eb - top, el - left : er - left] = extent.mask

    if element.kind == "shape" and over is None:  # seen through, nothing of it is hidden
        completion = box_completion(own, above, below)
        if completion is None:
            completion = ellipse_completion(own, above, below)
        if completion is None and on_curve is not None:  # a noisy picture's wavering arc
            completion = ellipse_completion(own, above, below, on_curve)
        if completion is not None:
            hull |= completion & above
    if element.kind in ("photo", "texture", "effect"):
        interior = own & ~_grow(dfn & above, 2)
        colour, _ = _colour_field(element, facts, box, image, interior)
        overlay = _overlay_pixels(image, box, interior, dfn & above, lines, element, facts)
        if overlay.any():
            interior &= ~overlay
            colour, _ = _colour_field(element, facts, box, image, interior)
    else:
        interior, colour = _interior(
            element, box, image, own, dfn & own, dfn & ~own & (em >= 0), facts
        )
        if over is not None:
            tinted = np.asarray(over.colour, np.float32) / 255.0
            colour = np.clip((colour - over.alpha * tinted) / (1.0 - over.alpha), 0.0, 1.0)
    pixels = image[top:bottom, left:right].astype(np.float32) / 255.0
    if element.tint is not None:
        return _build_tinted(
            element, box, own, hull & above & ~own, below, pixels, canvas, hull & below
        )

    alpha = np.zeros(own.shape, np.float32)
    alpha[interior] = 1.0
    colour[interior] = pixels[interior]
    hidden = hull & above & ~own
    alpha[hidden | (_grow(own, 1) & above)] = 1.0

    edge = own & ~interior
    rim = _grow(own, 2) & below & ~own
    todo = edge | rim
    if todo.any():
        under = canvas.rgb[top:bottom, left:right][todo]
        a, res = unmix(pixels[todo], colour[todo], under)
        ok = np.isfinite(a) & (res <= RESIDUAL_TOLERANCE)
        a = np.nan_to_num(a)
        near_lower = _grow(below, 2)[todo]
        is_edge = edge[todo]
        value = np.where(is_edge, np.where(ok & near_lower, a, 1.0),
                         np.where(ok & (a >= MIN_RIM_ALPHA), a, 0.0))
        alpha[todo] = np.maximum(alpha[todo], value)
    rgba = _to_rgba8(colour, alpha)
    canvas.add(box, rgba)
    mean = facts.sums.total(element.units).mean_colour()[0] if element.kind == "text" else None
    return BuiltLayer([element.kind], [element.name], box, rgba, mean)


def _beneath(image: np.ndarray, effects: list[list[BuiltLayer]]) -> np.ndarray:
    """`image` with the effect layers `effects` (groups, topmost first) taken off it.

    An effect is placed just under its caster, so the shapes ranked between the background
    and the caster lie beneath it: what they must explain is the picture without the effect
    (p = e C + (1 - e) q, so q = (p - e C) / (1 - e)). Unmixed against the picture itself,
    they would take the shadow's darkness or the glow's light into their own colour and
    opacity. Under a shape, e is the fitted style's guess (a shadow it merged with another
    reads too strong there), so at most EFFECT_MAX_REMOVED of it is taken off: dividing by a
    small 1 - e would magnify the guess's error.
    """
    if not effects:
        return image
    out = image.copy()
    for group in effects:
        for layer in reversed(group):
            top, left, bottom, right = layer.box
            rgba = layer.rgba.astype(np.float32) / 255.0
            a = np.minimum(rgba[..., 3:], EFFECT_MAX_REMOVED)
            pixels = out[top:bottom, left:right].astype(np.float32) / 255.0
            clean = (pixels - a * rgba[..., :3]) / (1.0 - a)
            out[top:bottom, left:right] = np.clip(np.rint(clean * 255.0), 0, 255)
    return out


def _under_tint(
    image: np.ndarray, index: int, elements: list[Element], emap: np.ndarray, rank: np.ndarray
) -> tuple[np.ndarray, Tint | None]:
    """(`image` with the tint of a see-through shape above taken off the shape `index` it
    encloses, and that tint), or (`image`, None).

    A shape seen only through a see-through one around it (`ordering.see_through_evidence`)
    shows the tint over its colour: its own layer holds the colour beneath, q = (p - a C) /
    (1 - a), and the see-through layer over it then unmixes to its opacity there too.
    """
    if elements[index].kind != "shape":
        return image, None
    upper = enclosed_by(emap, index)
    if upper is None or rank[upper + 1] <= rank[index + 1]:
        return image, None
    tint = elements[upper].tint
    if tint is None or not shows_under(elements[upper], image, emap, index):
        return image, None
    mine = emap == index
    beneath = tint.off(image[mine].astype(np.float64))
    out = image.copy()
    out[mine] = np.clip(np.rint(beneath), 0, 255)
    return out, tint


def _pending_effects(
    pending: dict[int, list[BuiltLayer]], rank: np.ndarray
) -> list[list[BuiltLayer]]:
    """The effect layers still to be placed, grouped by caster, the topmost caster's first."""
    return [pending[i] for i in sorted(pending, key=lambda i: -rank[i + 1])]


def build_layers(
    elements: list[Element],
    order: list[int],
    extents: list[Extent | None],
    image: np.ndarray,
    defined: np.ndarray,
    emap: np.ndarray,
    facts: UnitFacts,
    poll: Callable[[float], None],
    on_curve: float | None = None,
) -> tuple[list[BuiltLayer], Canvas]:
    """Layers bottom first and the composite they make. `poll(fraction)` runs between layers.

    `on_curve`: the ellipse tolerance for a noisy picture (see `build_element`).
    """
    h, w = emap.shape
    canvas = Canvas(h, w)
    rank = np.full(len(elements) + 1, -1, np.int64)
    for position, index in enumerate(order):
        rank[index + 1] = position
    boxes = territory_boxes(emap, len(elements))
    layers = []
    pending: dict[int, list[BuiltLayer]] = {}  # effects, by the element they lie under

    def place(layer: BuiltLayer) -> None:
        canvas.add(layer.box, layer.rgba)
        layers.append(layer)

    seen = image  # the picture less the effects still to be placed above what is built next
    for position, index in enumerate(order):
        poll(position / max(len(order), 1))
        element = elements[index]
        placed = pending.pop(index, [])
        for layer in placed:
            place(layer)
        if placed:
            seen = _beneath(image, _pending_effects(pending, rank))
        if element.kind == "background":
            background = build_background(element, index, image, defined, emap, facts, canvas)
            for caster, layer in lift_effects(
                background, index, emap, extents, elements, image, facts
            ):
                pending.setdefault(caster, []).append(layer)
            place(background)
            seen = _beneath(image, _pending_effects(pending, rank))
            continue
        extent, territory = extents[index], boxes[index]
        if extent is None or territory is None:
            continue
        lines = [
            boxes[i] for i in order[position + 1 :]
            if elements[i].kind == "text" and boxes[i] is not None
        ]
        picture, over = _under_tint(seen, index, elements, emap, rank)
        layers.append(
            build_element(element, index, rank, extent, territory, picture, defined, emap, facts,
                          canvas, lines, over, on_curve)
        )
    for late in pending.values():  # cast by an element that drew nothing
        for layer in late:
            place(layer)
    return layers, canvas
