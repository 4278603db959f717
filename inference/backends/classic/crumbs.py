"""Crumbs of a soft effect: pieces of a glow's or a shadow's falloff that are no object.

A soft shadow or glow fades over many pixels. Where it is strong enough to flatten out (the
plateau of a glow beside its shape) or where smoothing terraces its ramp, its pixels form small
flat or dense pieces of their own, in a row along the shape's outline; the glyph rule then
takes them for text, the texture rule for texture, and the residual pass for details. As
layers of their own they read as text stacked on the shape, and a layer count spent on them is
taken from the objects.

What tells such a piece from a glyph or a speck of texture is how the picture changes around
it. An object's edge is a step: anti-aliasing blends it within a pixel, so one pixel outside
the piece the picture already holds (nearly) what lies around it. A soft effect's piece has no
edge: its colour keeps changing outwards, one pixel out it has moved only part of the way it
has moved four pixels out, and what lies there is close to it (the same effect a little
weaker). Such a piece folds into the layer beneath it that it lies on most solidly (mostly
the background, or the effect lifted off it, or an opaque shape), which keeps its pixels.

A picture with a JPEG's block grid rings and blurs along every edge (letters included), so
the test is not made there.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.build import BuiltLayer
from layerlift.inference.backends.classic.channels import channel_max
from layerlift.inference.backends.classic.count import merge
from layerlift.inference.backends.classic.facts import box_overlap
from layerlift.inference.backends.classic.masks import dilate

CRUMB_KINDS = {"text", "texture", "detail"}  # what a piece of an effect is taken for
MAX_SHARE = 0.01  # of the picture (alpha): a larger piece is no crumb
OUTER = 4  # px: the ring where the picture is read "around" the piece
# One pixel out, an edge has gone (nearly) all the way; a soft falloff at most this share of
# the way it goes OUTER px out.
SOFT_SHARE = 0.7
MAX_CONTRAST = 70.0  # levels, OUTER px out: a soft piece is close to what surrounds it
SQUARE = np.ones((3, 3), bool)


def falloff(
    layer: BuiltLayer, picture: np.ndarray, opaque: np.ndarray | None = None
) -> tuple[float, float] | None:
    """Median max-channel difference (levels) between the piece's colour and the picture one
    pixel and OUTER pixels outside it, or None when either ring is empty.

    The piece is its mostly opaque pixels (all of it when none is). `opaque` (h, w): how many
    layers (the piece's own included) hold each pixel mostly opaque; when given, the ring one
    pixel out leaves out what other objects hold (unless that is all of it), as there the
    picture steps at their edge (a shape cutting across a glow), not at the piece's.
    """
    h, w = picture.shape[:2]
    top, left, bottom, right = layer.box
    margin = OUTER + 1
    t, l_ = max(top - margin, 0), max(left - margin, 0)
    b, r = min(bottom + margin, h), min(right + margin, w)
    alpha = layer.rgba[..., 3]
    solid = alpha >= 128
    piece = np.zeros((b - t, r - l_), bool)
    inner = (slice(top - t, bottom - t), slice(left - l_, right - l_))
    piece[inner] = solid if solid.any() else alpha > 0
    if not piece.any():
        return None
    crop = picture[t:b, l_:r].astype(np.float32)
    near = dilate(piece, 1, SQUARE) & ~piece
    if opaque is not None:
        others = opaque[t:b, l_:r].copy()
        others[inner] -= solid
        free = near & (others <= 0)
        if free.any():
            near = free
    far = dilate(piece, OUTER, SQUARE) & ~dilate(piece, OUTER - 1, SQUARE)
    if not near.any() or not far.any():
        return None
    colour = np.median(crop[piece], axis=0)
    one = float(np.median(channel_max(np.abs(crop[near] - colour))))
    out = float(np.median(channel_max(np.abs(crop[far] - colour))))
    return one, out


def _candidate(layer: BuiltLayer, n_pixels: int) -> bool:
    """Could `layer` be a crumb: a small piece of text, texture or detail?"""
    return set(layer.kinds) <= CRUMB_KINDS and layer.alpha_sum < MAX_SHARE * n_pixels


def is_soft_crumb(layer: BuiltLayer, picture: np.ndarray, opaque: np.ndarray | None = None) -> bool:
    """Is `layer` a small text, texture or detail piece with no edge of its own?

    Its picture must fall off softly all round it, or (given `opaque`, see `falloff`) where
    it meets no other object: a glow's plateau beside its shape meets the shape's edge on
    one side, and a piece lying on a soft shape fades into that shape's blur.
    """
    h, w = picture.shape[:2]
    if not _candidate(layer, h * w):
        return False
    for given in (None, opaque) if opaque is not None else (None,):
        measured = falloff(layer, picture, given)
        if measured is None:
            continue
        one, out = measured
        if out <= MAX_CONTRAST and one <= SOFT_SHARE * out:
            return True
    return False


def _opaque_count(layers: list[BuiltLayer], h: int, w: int) -> np.ndarray:
    """How many of `layers` hold each pixel mostly opaque (alpha >= 128), (h, w) int16."""
    count = np.zeros((h, w), np.int16)
    for layer in layers:
        top, left, bottom, right = layer.box
        count[top:bottom, left:right] += layer.rgba[..., 3] >= 128
    return count


def _support(layers: list[BuiltLayer], piece: BuiltLayer) -> int:
    """The index of the layer that `piece` lies on most solidly: the largest sum over its
    pixels of its alpha times the layer's (the topmost on a tie; 0 when it overlaps none).

    A piece of a glow over the background, a see-through shape's edge running by, is more
    of the background (which the glow's light covers) than of the half-transparent shape.
    """
    best, host = 0.0, 0
    for index in range(len(layers) - 1, -1, -1):
        box = box_overlap(layers[index].box, piece.box)
        if box is None:
            continue
        mine = piece.pixels_in(box)[..., 3].astype(np.float32)
        mass = float((mine * layers[index].pixels_in(box)[..., 3]).sum())
        if mass > best:
            best, host = mass, index
    return host


def fold_soft_crumbs(
    layers: list[BuiltLayer], picture: np.ndarray, jpeg: bool = False
) -> list[BuiltLayer]:
    """`layers` (bottom first) with each soft crumb composited into the layer beneath it that
    it lies on most solidly (see `_support`). `picture`: the unsmoothed (h, w, 3) uint8
    picture; `jpeg`: it shows a JPEG's block grid (then nothing is folded)."""
    if jpeg:
        return layers
    h, w = picture.shape[:2]
    opaque = None
    kept: list[BuiltLayer] = []
    for layer in layers:
        if not kept or not _candidate(layer, h * w):
            kept.append(layer)
            continue
        if opaque is None:  # the objects above the bottom layer, as they were built
            opaque = _opaque_count(layers[1:], h, w)
        if not is_soft_crumb(layer, picture, opaque):
            kept.append(layer)
            continue
        host = _support(kept, layer)
        folded = merge(kept[host], layer)
        folded.kinds, folded.names = kept[host].kinds, kept[host].names
        folded.colour = kept[host].colour
        kept[host] = folded
    return kept
