"""Honouring the requested layer count, and naming the layers.

Fewer layers: the adjacent pair (in z) that matters least is composited into one, repeatedly.
"Matters least" is the smaller of the two's total alpha, discounted by how little the two
overlap: merging side-by-side elements changes nothing about how either can be edited apart
from sharing a layer, and a crumb touching its owner's rim belongs to it, while merging a
shape into what it covers (a glow with its caster) loses the hidden part; and
discounted for a fragment (texture or detail pieces): two shapes made one layer is a wrong
layer a user sees, a scrap folded into its neighbour is not.

More layers: a layer made of separate pieces (a text line's words, shapes of one colour) is cut
in two at the widest gap between its pieces, repeatedly, the largest layer first. When nothing
can be cut any more the stack stays short, and the caller says so.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.build import BuiltLayer
from layerlift.inference.backends.classic.facts import box_overlap
from scipy import ndimage

DISJOINT_DISCOUNT = 0.25
# Layers made only of these kinds are fragments (the pieces of a see-through shape's rim, a
# scrap of texture): merging one costs this share of what merging an object would.
FRAGMENT_KINDS = {"texture", "detail"}
FRAGMENT_DISCOUNT = 0.25
MAX_NAMES = 3
# Pairs sharing at least this share of the smaller layer's pixels cost the full price.
FULL_OVERLAP = 0.5
# A split whose smaller part holds less than this share of the layer's alpha only chips a
# crumb off one object (a see-through shape's stray edge piece): the layer stays whole.
SPLIT_MIN_SHARE = 0.05


def overlap_share(a: BuiltLayer, b: BuiltLayer) -> float:
    """The share of the smaller layer's pixels that the other also covers: a crumb touching
    its owner at a rim shares few, a glow round its caster shares most of itself."""
    smaller = min(int(np.count_nonzero(a.rgba[..., 3])), int(np.count_nonzero(b.rgba[..., 3])))
    return _shared_pixels(a, b) / max(smaller, 1)


def _shared_pixels(a: BuiltLayer, b: BuiltLayer) -> int:
    """How many pixels both layers cover (alpha > 0)."""
    box = box_overlap(a.box, b.box)
    if box is None:
        return 0
    return int(((a.pixels_in(box)[..., 3] > 0) & (b.pixels_in(box)[..., 3] > 0)).sum())


def overlaps(a: BuiltLayer, b: BuiltLayer) -> bool:
    return _shared_pixels(a, b) > 0


def merge(lower: BuiltLayer, upper: BuiltLayer) -> BuiltLayer:
    """`upper` composited over `lower` on the union of their boxes."""
    box = (
        min(lower.box[0], upper.box[0]), min(lower.box[1], upper.box[1]),
        max(lower.box[2], upper.box[2]), max(lower.box[3], upper.box[3]),
    )
    h, w = box[2] - box[0], box[3] - box[1]
    # Outside the upper layer's box the result is the lower layer as it is (colour cleared
    # where it is transparent); only the upper box is composited, in float.
    rgba = np.zeros((h, w, 4), np.uint8)
    t, l_ = lower.box[0] - box[0], lower.box[1] - box[1]
    lh, lw = lower.rgba.shape[:2]
    rgba[t : t + lh, l_ : l_ + lw] = lower.rgba
    rgba[rgba[..., 3] == 0] = 0
    t, l_ = upper.box[0] - box[0], upper.box[1] - box[1]
    uh, uw = upper.rgba.shape[:2]
    view = rgba[t : t + uh, l_ : l_ + uw]
    low = view.astype(np.float32) / 255.0
    src = upper.rgba.astype(np.float32) / 255.0
    a, below = src[..., 3], low[..., 3] * (1.0 - src[..., 3])
    out_a = a + below
    safe = np.where(out_a > 0, out_a, 1.0)
    # One channel at a time: numpy broadcasts an (h, w, 1) factor over three channels
    # several times slower than it multiplies two planes.
    for c in range(3):
        out_p = src[..., c] * a
        out_p += low[..., c] * below
        out_p /= safe
        out_p *= 255.0
        view[..., c] = np.clip(np.rint(out_p), 0, 255)
    view[..., 3] = np.clip(np.rint(out_a * 255.0), 0, 255)
    return BuiltLayer(lower.kinds + upper.kinds, lower.names + upper.names, box, rgba)


def _merge_cost(lower: BuiltLayer, upper: BuiltLayer) -> float:
    """How much merging two z-neighbours loses (see the module docstring); a fragment
    (texture or detail pieces, the scraps of an edge, no object of its own) folds into a
    neighbour more readily than two objects are made one."""
    cost = min(lower.alpha_sum, upper.alpha_sum)
    if any(set(layer.kinds) <= FRAGMENT_KINDS for layer in (lower, upper)):
        cost *= FRAGMENT_DISCOUNT
    # The price grows with how much of the smaller layer the two share, from the disjoint
    # discount (a crumb touching its owner's rim) to the full price (a glow round its caster).
    share = min(1.0, overlap_share(lower, upper) / FULL_OVERLAP)
    return cost * (DISJOINT_DISCOUNT + (1.0 - DISJOINT_DISCOUNT) * share)


def _pieces(layer: BuiltLayer) -> tuple[np.ndarray, int]:
    return ndimage.label(layer.rgba[..., 3] > 0, np.ones((3, 3), bool))


def split(layer: BuiltLayer) -> tuple[BuiltLayer, BuiltLayer] | None:
    """Two layers from one made of separate pieces, cut at the widest gap; None if one piece."""
    labels, count = _pieces(layer)
    if count < 2:
        return None
    centres = np.array(ndimage.center_of_mass(np.ones(labels.shape), labels, range(1, count + 1)))
    spread = centres.max(axis=0) - centres.min(axis=0)
    axis = int(np.argmax(spread))
    order = np.argsort(centres[:, axis], kind="stable")
    gaps = np.diff(centres[order, axis])
    cut = int(np.argmax(gaps)) + 1
    first = np.isin(labels, order[:cut] + 1)
    alpha = layer.rgba[..., 3].astype(np.float64)
    if min(alpha[first].sum(), alpha[~first].sum()) < SPLIT_MIN_SHARE * alpha.sum():
        return None  # a crumb off one object is no layer of its own
    parts = []
    for mask in (first, (labels > 0) & ~first):
        rgba = layer.rgba.copy()
        rgba[~mask] = 0
        ys, xs = np.nonzero(mask)
        t, l_, b, r = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
        box = (layer.box[0] + t, layer.box[1] + l_, layer.box[0] + b, layer.box[1] + r)
        parts.append(BuiltLayer(list(layer.kinds), list(layer.names), box, rgba[t:b, l_:r]))
    for index, part in enumerate(parts, start=1):
        part.names = [f"{name} (part {index})" for name in part.names]
    return parts[0], parts[1]


def fit_count(layers: list[BuiltLayer], target: int) -> tuple[list[BuiltLayer], str]:
    """Merge or split `layers` (bottom first) towards `target`; a note if it cannot be met."""
    layers = list(layers)
    while len(layers) > max(target, 1):
        costs = [_merge_cost(layers[i], layers[i + 1]) for i in range(len(layers) - 1)]
        i = int(np.argmin(costs))
        layers[i : i + 2] = [merge(layers[i], layers[i + 1])]
    blocked: set[int] = set()
    while len(layers) < target:
        candidates = [
            i for i, layer in enumerate(layers)
            if id(layer) not in blocked and layer.kinds != ["background"]
        ]
        if not candidates:
            break
        i = max(candidates, key=lambda k: layers[k].alpha_sum)
        parts = split(layers[i])
        if parts is None:
            blocked.add(id(layers[i]))
            continue
        layers[i : i + 1] = list(parts)
    note = ""
    if len(layers) != target:
        note = (
            f"asked for {target} layers but the picture only has {len(layers)} separable "
            f"part{'s' if len(layers) != 1 else ''}; produced {len(layers)}"
        )
    return layers, note


def layer_name(layer: BuiltLayer) -> str:
    names = [n for n in layer.names if n]
    if not names:
        return layer.kinds[0]
    if len(names) <= MAX_NAMES:
        return " + ".join(names)
    return f"{names[0]} + {len(names) - 1} more"


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            out.append(f"{name} {seen[name]}")
        else:
            seen[name] = 1
            out.append(name)
    return out


def element_names(kinds: list[str]) -> list[str]:
    """Names by kind, bottom first: background, shape 1.., text (or text 1..), photo, ..."""
    totals = {kind: kinds.count(kind) for kind in set(kinds)}
    seen: dict[str, int] = {}
    names = []
    for kind in kinds:
        seen[kind] = seen.get(kind, 0) + 1
        numbered = kind == "shape" or totals[kind] > 1
        names.append(f"{kind} {seen[kind]}" if numbered and kind != "background" else kind)
    return names
