"""Details no region captured: thin strokes, small print, specks of colour.

Text a dozen pixels tall has strokes a pixel or two wide, all anti-aliased, so few of its pixels
are "core" and curved or slanted letters get no region at all; after the layers are built they
are still in the picture but in none of the layers. They show as clusters where the picture
differs strongly from the composite.

A cluster on the line of a text layer is first tried with that layer's colour (thin strokes
never reach full coverage, so their own strongest pixel is a washed-out colour); if unmixing
against the composite explains it, it joins that layer. Otherwise its colour is estimated from
its strongest pixels; a cluster inside a text layer's glyph box is still that text's (a piece
of its outline or shadow, or a glyph the regions missed), and the others of one colour close
together become a layer on top (text when there are several).
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.alpha import unmix
from layerlift.inference.backends.classic.build import BuiltLayer, Canvas
from layerlift.inference.backends.classic.channels import channel_max
from layerlift.inference.backends.classic.count import merge
from layerlift.inference.backends.classic.grouping import STYLE_REACH
from layerlift.inference.backends.classic.text import group_text
from scipy import ndimage

Box = tuple[int, int, int, int]

STRONG = 20.0 / 255.0  # a pixel this far from the composite is unexplained
# In a smoothed (degraded) picture JPEG ringing and grain the smoothing left reach past STRONG
# along every edge, the further the stronger the noise (which the smoothing's tolerance, in
# levels, follows): only differences beyond this many times that tolerance are details
# (32 levels for the usual 12).
STRONG_PER_LEVEL = 32.0 / 12.0 / 255.0
FAINT = 4.0 / 255.0
# A cluster's pixels this far from the composite are what unmixing must explain; in a smoothed
# picture, fainter differences are the noise around it, which no colour explains.
FAINT_SMOOTHED = 12.0 / 255.0
MAX_SHARE = 0.05  # clusters larger than this share of the picture are not details
RESIDUAL_TOLERANCE = 10.0 / 255.0
MIN_EXPLAINED = 0.5
HOST_REACH = 3.0  # a text layer can take clusters this many line heights away on its line


def _explain(
    pixels: np.ndarray, under: np.ndarray, candidates: np.ndarray, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(alpha, explained mask) if `colour` over `under` explains most `candidates`, else None."""
    a, res = unmix(pixels, colour[None, None, :], under)
    ok = candidates & np.isfinite(a) & (res <= RESIDUAL_TOLERANCE) & (np.nan_to_num(a) > 0.02)
    if ok.sum() < MIN_EXPLAINED * candidates.sum():
        return None
    return np.where(ok, np.nan_to_num(a), 0.0).astype(np.float32), ok


def _on_line(box: Box, host: Box) -> bool:
    height = host[2] - host[0]
    overlap = min(box[2], host[2]) - max(box[0], host[0])
    gap = max(0, max(box[1], host[1]) - min(box[3], host[3]))
    return overlap >= 0.5 * min(height, box[2] - box[0]) and gap <= HOST_REACH * height


def _opaque_box(layer: BuiltLayer) -> Box | None:
    """Canvas box of a layer's mostly opaque pixels (its glyphs, not its padded box)."""
    ys, xs = np.nonzero(layer.rgba[..., 3] >= 128)
    if not ys.size:
        return None
    top, left = layer.box[0], layer.box[1]
    return (top + int(ys.min()), left + int(xs.min()),
            top + int(ys.max()) + 1, left + int(xs.max()) + 1)


def _inside_host(box: Box, hosts: list[tuple[int, Box, None]]) -> int | None:
    """The text layer whose glyphs' box (grown by STYLE_REACH of its height) holds `box`.

    A cluster of another colour inside a text's box is part of its style (an outline, a
    shadow) or of a glyph the regions missed; a layer of its own would cover the text's.
    """
    for index, (top, left, bottom, right), _ in hosts:
        reach = STYLE_REACH * (bottom - top)
        if (box[0] >= top - reach and box[2] <= bottom + reach
                and box[1] >= left - reach and box[3] <= right + reach):
            return index
    return None


def _cluster(
    image: np.ndarray,
    canvas: Canvas,
    box: Box,
    mask: np.ndarray,
    hosts: list[tuple[int, Box, np.ndarray]],
    faint: float = FAINT,
) -> tuple[int | None, np.ndarray, np.ndarray, np.ndarray] | None:
    """(host layer or None, colour 0-1, alpha, explained mask) of one cluster, or None."""
    top, left, bottom, right = box
    pixels = image[top:bottom, left:right].astype(np.float32) / 255.0
    under = canvas.rgb[top:bottom, left:right]
    diff = channel_max(np.abs(pixels - under))
    candidates = mask & (diff > faint)
    for index, host_box, host_colour in hosts:
        if _on_line(box, host_box):
            colour = host_colour / 255.0
            found = _explain(pixels, under, candidates, colour)
            if found is not None:
                return index, colour, *found
    strongest = candidates & (diff >= 0.7 * diff[candidates].max())
    colour = pixels[strongest].mean(axis=0)
    found = _explain(pixels, under, candidates, colour)
    return None if found is None else (None, colour, *found)


def _paint(found: list, members: list[int]) -> tuple[Box, np.ndarray]:
    """The union box of clusters and their RGBA8 pixels in it."""
    top = min(found[i][0][0] for i in members)
    left = min(found[i][0][1] for i in members)
    bottom = max(found[i][0][2] for i in members)
    right = max(found[i][0][3] for i in members)
    rgba = np.zeros((bottom - top, right - left, 4), np.uint8)
    for i in members:
        (bt, bl, bb, br), _, colour, alpha, ok = found[i]
        view = rgba[bt - top : bb - top, bl - left : br - left]
        view[ok, :3] = np.clip(np.rint(colour * 255.0), 0, 255).astype(np.uint8)
        view[ok, 3] = np.clip(np.rint(alpha[ok] * 255.0), 0, 255).astype(np.uint8)
    return (top, left, bottom, right), rgba


def find_details(
    image: np.ndarray,
    valid: np.ndarray,
    canvas: Canvas,
    layers: list[BuiltLayer],
    smoothing: int = 0,
) -> list[BuiltLayer]:
    """Layers for unexplained two-colour clusters; clusters of a text layer join it in place.

    `canvas` is updated with everything added. `smoothing`: the sigma filter's tolerance
    (levels) when `image` is a denoised copy of a degraded picture, whose leftover noise must
    not count as detail (0: the picture itself).
    """
    h, w = valid.shape
    smoothed = smoothing > 0
    limit = STRONG_PER_LEVEL * smoothing if smoothed else STRONG
    strong = (canvas.difference(image) > limit) & valid & (canvas.alpha > 0.5)
    if not strong.any():
        return []
    square = np.ones((3, 3), bool)
    labels, _ = ndimage.label(ndimage.binary_dilation(strong, square), square)
    hosts = [(i, layer.box, layer.colour) for i, layer in enumerate(layers)
             if layer.colour is not None]
    glyph_boxes = [(i, _opaque_box(layers[i]), None) for i, _, _ in hosts]
    glyph_boxes = [item for item in glyph_boxes if item[1] is not None]
    found = []
    for number, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        box = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        mask = labels[sl] == number
        if (mask & strong[sl]).sum() < 3 or mask.sum() > MAX_SHARE * h * w:
            continue
        result = _cluster(image, canvas, box, mask, hosts, FAINT_SMOOTHED if smoothed else FAINT)
        if result is not None:
            if result[0] is None:
                result = (_inside_host(box, glyph_boxes), *result[1:])
            found.append((box, *result))
    if not found:
        return []

    by_host: dict[int, list[int]] = {}
    loose = []
    for i, item in enumerate(found):
        if item[1] is None:
            loose.append(i)
        else:
            by_host.setdefault(item[1], []).append(i)
    for host, members in by_host.items():
        box, rgba = _paint(found, members)
        canvas.add(box, rgba)
        merged = merge(layers[host], BuiltLayer(["text"], [""], box, rgba))
        merged.kinds, merged.names = layers[host].kinds, layers[host].names
        merged.colour = layers[host].colour
        layers[host] = merged

    new_layers = []
    if loose:
        boxes = np.array([found[i][0] for i in loose], np.float64)
        colours = np.array([found[i][2] * 255.0 for i in loose], np.float64)
        for group in group_text(boxes, colours, min_size=1):
            members = [loose[i] for i in group]
            box, rgba = _paint(found, members)
            canvas.add(box, rgba)
            kind = "text" if len(members) >= 3 else "detail"
            colour = np.mean([found[i][2] for i in members], axis=0) * 255.0
            new_layers.append(BuiltLayer([kind], [""], box, rgba, colour))
    return new_layers
