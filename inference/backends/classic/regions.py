"""Regions by colour and connectivity: the units every later step of the classic backend uses.

A flat design is made of areas of one colour (or a smooth gradient) separated by thin bands of
anti-aliased pixels. The bands are what alpha estimation needs and what segmentation must not
be fooled by, so the two are told apart first:

- a *core* pixel sits inside a run of similar colour along at least one axis and is not itself
  a blend of its two neighbours across the other axis (that is what an anti-aliased edge
  pixel looks like, even along a perfectly straight edge);
- core pixels are joined into regions only through links between similar neighbours. The
  links live on a grid twice the size of the picture, so ``ndimage.label`` can do the work in
  C, and two regions that touch along a hard, unsmoothed edge stay apart;
- dense clusters of non-core pixels are texture (a photo, a pattern) and become units of their
  own, since nothing in them is flat.

Every other pixel (edges, specks) is then owned by its nearest unit (a Voronoi split done with a
distance transform), which gives each unit a territory without gaps for ordering and layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.channels import channel_max
from scipy import ndimage

# Neighbours closer than this (max over RGB, 0-255 levels) count as "the same colour". Large
# enough for gradients and dithering, small enough to keep anti-aliased ramps out of regions.
LINK_TOLERANCE = 4
# Regions smaller than this many pixels are specks of edge, not regions.
MIN_REGION = 4
# Texture: the share of non-core pixels in a window, and the window side.
TEXTURE_DENSITY = 0.6
TEXTURE_WINDOW = 7
# Blurred rims (see `_drop_rims`): a thin texture piece whose pixels are mostly (RIM_SHARE)
# within RIM_TOLERANCE levels of a blend of the two regions along most of its border, each
# read at its nearest core pixel, is a soft edge, not texture.
RIM_TOLERANCE = 12.0
RIM_SHARE = 0.8
RIM_NEIGHBOURS = 2  # the regions along most of a piece's border: its two colours
RIM_HALF_WIDTH = 4.0  # a band wider than twice this (pixels) is no blurred edge
RIM_CORE_RATIO = 4.0  # the stroke a rim blurs has at most this many times its pixels
# Blur softens every edge of a picture: a lone soft piece is a feature (a glow), not blur.
RIM_MIN_COUNT = 3
RIM_TEXTURE_GAP = 8  # rims this close (pixels) to other texture are part of it
# In a smoothed (degraded) picture, texture pieces no wider than twice this (pixels) are the
# noise along an edge (JPEG ringing, blur), not texture: see `_drop_bands`.
BAND_HALF_WIDTH = 4.0
# A JPEG rings across the 8 x 8 block an edge runs through, on both sides of it, so its
# bands (and the ringing between the strokes of small print) run wider.
JPEG_BAND_HALF_WIDTH = 5.0
ALONG_OBJECT = 40  # px of a second region beside such a wider band: see `_along_object`
BAND_EDGE = 16  # levels between neighbours (smoothed): an edge that rings
BAND_REACH = 2  # px: how far from such an edge a band's pixels lie
BAND_SHARE = 0.5  # of a band's pixels at least lie that near an edge
SQUARE = np.ones((3, 3), bool)

@dataclass
class Units:
    """Labelled units of one picture.

    `labels` marks the pixels that define each unit (core pixels of regions, the pixels of
    texture pieces), 0 elsewhere. `own` gives every valid pixel its nearest unit and -1 for
    transparent input pixels. Units 1..`regions` are flat regions, the rest texture pieces.
    """

    labels: np.ndarray
    own: np.ndarray
    count: int
    regions: int
    core: np.ndarray

    @property
    def is_texture(self) -> np.ndarray:
        flags = np.zeros(self.count + 1, bool)
        flags[self.regions + 1 :] = True
        return flags


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel max over channels of |a - b| for uint8 arrays, as int16."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return channel_max(diff)


def _axis_runs(rgb: np.ndarray, axis: int, tol: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat, blend) along one axis: similar to both neighbours / a blend of the two."""
    diff = _max_abs_diff(np.take(rgb, range(1, rgb.shape[axis]), axis=axis),
                         np.take(rgb, range(rgb.shape[axis] - 1), axis=axis))
    pad_before = [(0, 0), (0, 0)]
    pad_after = [(0, 0), (0, 0)]
    pad_before[axis] = (1, 0)
    pad_after[axis] = (0, 1)
    d_prev = np.pad(diff, pad_before)
    d_next = np.pad(diff, pad_after)
    flat = (d_prev <= tol) & (d_next <= tol)
    blend = np.zeros_like(flat)
    candidates = ~flat & (d_prev > tol) & (d_next > tol)
    if candidates.any():
        ys, xs = np.nonzero(candidates)
        h, w = flat.shape
        if axis == 0:
            prev_i, next_i = (np.maximum(ys - 1, 0), xs), (np.minimum(ys + 1, h - 1), xs)
        else:
            prev_i, next_i = (ys, np.maximum(xs - 1, 0)), (ys, np.minimum(xs + 1, w - 1))
        p = rgb[ys, xs].astype(np.float32)
        a = rgb[prev_i].astype(np.float32)
        b = rgb[next_i].astype(np.float32)
        span = b - a
        length = (span * span).sum(axis=-1)
        t = ((p - a) * span).sum(axis=-1) / np.maximum(length, 1e-6)
        residual = channel_max(np.abs(a + t[:, None] * span - p))
        is_blend = (channel_max(np.abs(span)) > 2 * tol) & (t > 0.08) & (t < 0.92)
        is_blend &= residual <= max(tol, 3)
        blend[ys[is_blend], xs[is_blend]] = True
    return flat, blend


def core_mask(rgb: np.ndarray, valid: np.ndarray, tol: int = LINK_TOLERANCE) -> np.ndarray:
    """Pixels inside a flat run of colour along some axis and not a blend across the other."""
    flat_y, blend_y = _axis_runs(rgb, 0, tol)
    flat_x, blend_x = _axis_runs(rgb, 1, tol)
    return (flat_x | flat_y) & ~blend_x & ~blend_y & valid


def label_regions(rgb: np.ndarray, core: np.ndarray, tol: int = LINK_TOLERANCE) -> np.ndarray:
    """Connected regions of core pixels joined only through similar 4-neighbours (int32)."""
    h, w = core.shape
    grid = np.zeros((2 * h - 1, 2 * w - 1), bool)
    grid[::2, ::2] = core
    if w > 1:
        grid[::2, 1::2] = core[:, :-1] & core[:, 1:] & (
            _max_abs_diff(rgb[:, :-1], rgb[:, 1:]) <= tol
        )
    if h > 1:
        grid[1::2, ::2] = core[:-1] & core[1:] & (_max_abs_diff(rgb[:-1], rgb[1:]) <= tol)
    labelled, _ = ndimage.label(grid)
    labels = np.ascontiguousarray(labelled[::2, ::2]).astype(np.int32, copy=False)
    del labelled, grid
    return _drop_small(labels, MIN_REGION)


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zero components under `min_size` pixels and renumber the rest 1..n in scan order."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(sizes.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def texture_pieces(core: np.ndarray, valid: np.ndarray, min_area: int) -> np.ndarray:
    """Label dense clusters of non-core pixels (photos, patterns) of at least `min_area` px."""
    loose = (~core & valid).astype(np.float32)
    if not loose.any():
        return np.zeros(core.shape, np.int32)
    density = ndimage.uniform_filter(loose, TEXTURE_WINDOW, mode="nearest")
    dense = ndimage.binary_opening(density >= TEXTURE_DENSITY, np.ones((3, 3), bool))
    labels, _ = ndimage.label(dense & valid)
    labels = _drop_small(labels.astype(np.int32), min_area)
    labels[core] = 0
    return labels


def find_units(
    rgb: np.ndarray, valid: np.ndarray, raw: np.ndarray | None = None, jpeg: bool = False
) -> Units:
    """Regions, texture pieces and the territory of each, for an (h, w, 3) uint8 picture.

    `rgb` may be a smoothed copy of the picture `raw` (see `denoise`): regions are found on
    the smoothed one, texture on the picture itself, whose fine detail smoothing would hide.
    `jpeg`: `raw` still shows a JPEG's block grid (`denoise.jpeg_step` > 1).
    """
    core = core_mask(rgb, valid)
    labels = label_regions(rgb, core)
    regions = int(labels.max())
    min_texture = max(64, int(0.002 * valid.size))
    texture_core = core if raw is None else core_mask(raw, valid)
    texture = texture_pieces(texture_core, valid, min_texture)
    texture[core & (texture > 0)] = 0
    texture = _drop_rims(texture, labels, rgb)
    if raw is not None and raw is not rgb:
        texture = _drop_bands(
            texture, rgb, JPEG_BAND_HALF_WIDTH if jpeg else BAND_HALF_WIDTH, labels
        )
    labels = np.where(texture > 0, texture + regions, labels).astype(np.int32)
    count = int(labels.max())
    own = territories(labels, valid)
    return Units(labels=labels, own=own, count=count, regions=regions, core=core)


def _drop_rims(texture: np.ndarray, regions: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """`texture` without the pieces that are only soft edges between regions.

    Blur and resampling (screenshots, exports) widen an anti-aliased edge into a band a few
    pixels wide, and thin strokes (text) into bands with no flat pixels at all, which are dense
    in non-core pixels and so look like texture. Every pixel of such a band is a mix of the
    two colours it separates: ``p = a F + (1 - a) B`` with F and B the colours of the regions
    on either side, read at their nearest core pixel (gradients change along a region).
    The rule is for strokes, whose core is small next to its rim: one of the two regions must
    be (a band between two large areas is a feature of its own). Such a piece, if also thin (a
    blur widens an edge by a few pixels), is dropped, so its pixels join the nearest regions
    and get soft alpha from unmixing like any edge, and a blurred glyph stays one object
    instead of a ghost of cores and a layer of rims. Blur softens all of a picture's edges,
    so a lone soft piece (a glow) is kept; so is one near other texture, which is part of a
    photo or a pattern; and a photo or pattern is no blend of two flat neighbours anyway.
    """
    if not texture.any():
        return texture
    h, w = texture.shape
    pixels = rgb.astype(np.float32)
    sizes = np.bincount(regions.ravel())
    rims = []
    slices = ndimage.find_objects(texture)
    for number, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        top, bottom = max(0, sl[0].start - 2), min(h, sl[0].stop + 2)
        left, right = max(0, sl[1].start - 2), min(w, sl[1].stop + 2)
        piece = texture[top:bottom, left:right] == number
        if ndimage.distance_transform_edt(piece).max() > RIM_HALF_WIDTH:
            continue
        near = regions[top:bottom, left:right]
        grown = ndimage.binary_dilation(piece, np.ones((5, 5), bool))
        others = texture[top:bottom, left:right]
        if ((others > 0) & (others != number) & grown).any():
            continue
        border = grown & (near > 0)
        ids, counts = np.unique(near[border], return_counts=True)
        if ids.size < 2:
            continue
        ids = ids[np.argsort(counts)[::-1][:RIM_NEIGHBOURS]]
        crop = pixels[top:bottom, left:right]
        p = crop[piece]
        nearest = []
        for region in ids:
            index = ndimage.distance_transform_edt(
                near != region, return_distances=False, return_indices=True
            )
            nearest.append(crop[index[0][piece], index[1][piece]])
        best = np.full(p.shape[0], np.inf, np.float32)
        small = sizes[ids] <= RIM_CORE_RATIO * p.shape[0]
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                if not (small[i] or small[j]):
                    continue
                a, b = nearest[i], nearest[j]
                span = b - a
                length = np.maximum((span * span).sum(axis=-1), 1e-6)
                t = np.clip(((p - a) * span).sum(axis=-1) / length, 0.0, 1.0)
                residual = channel_max(np.abs(a + t[:, None] * span - p))
                best = np.minimum(best, residual)
        if (best <= RIM_TOLERANCE).mean() >= RIM_SHARE:
            rims.append(number)
    if len(rims) < RIM_MIN_COUNT:
        return texture
    is_rim = np.zeros(len(slices) + 1, bool)
    is_rim[rims] = True
    solid = (texture > 0) & ~is_rim[texture]
    if solid.any():
        # A soft edge in a photo or a pattern is part of it: rims near texture stay texture.
        solid = ndimage.binary_dilation(solid, np.ones((3, 3), bool), RIM_TEXTURE_GAP)
    for number in rims:
        view = texture[slices[number - 1]]
        mine = view == number
        if not (mine & solid[slices[number - 1]]).any():
            view[mine] = 0
    return _drop_small(texture, 1)


def _steps(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, the largest channel difference to its right or lower neighbour (int16)."""
    x = rgb.astype(np.int16)
    steps = np.zeros(x.shape[:2], np.int16)
    steps[:, :-1] = channel_max(np.abs(x[:, 1:] - x[:, :-1]))
    steps[:-1] = np.maximum(steps[:-1], channel_max(np.abs(x[1:] - x[:-1])))
    return steps


def _drop_bands(
    texture: np.ndarray,
    rgb: np.ndarray,
    half_width: float = BAND_HALF_WIDTH,
    regions: np.ndarray | None = None,
) -> np.ndarray:
    """`texture` without its thin pieces, for a picture that was smoothed before segmentation.

    Texture is looked for in the unsmoothed picture, where JPEG ringing and chroma bleeding,
    grain or a resampling blur leave a band of pixels a few wide along every edge that are
    not flat, dense enough to count as texture. Real texture (a pattern, a photo, a grainy
    backdrop) covers areas; a piece no more than 2 `half_width` pixels across anywhere is
    such a band, when most of it lies along a step in the smoothed picture (what rings). As
    texture it would become a layer of ringing of its own, or glue the objects it runs along
    into one; dropped, its pixels are edges, owned by the regions on either side and given
    soft alpha by unmixing like any edge. A piece wider than BAND_HALF_WIDTH (which only a
    JPEG's `half_width` admits) must also run along an object (`_along_object`, given the
    `regions`).
    """
    h, w = texture.shape
    bands = []
    for number, sl in enumerate(ndimage.find_objects(texture), start=1):
        if sl is None:
            continue
        # The piece's box grown by what the tests below look at around it.
        grow = BAND_REACH + 1
        top, bottom = max(0, sl[0].start - grow), min(h, sl[0].stop + grow)
        left, right = max(0, sl[1].start - grow), min(w, sl[1].stop + grow)
        piece = texture[top:bottom, left:right] == number
        reach = ndimage.distance_transform_edt(piece).max()
        if reach > half_width:
            continue
        wide = reach > BAND_HALF_WIDTH and regions is not None
        if wide and not _along_object(piece, regions[top:bottom, left:right]):
            continue
        # Only bands along an edge: a soft thin piece (a glow, a photo's haze) is kept.
        steps = _steps(rgb[top:bottom, left:right]) > BAND_EDGE
        near_edge = ndimage.binary_dilation(steps, SQUARE, BAND_REACH)
        if near_edge[piece].mean() >= BAND_SHARE:
            bands.append(number)
    if not bands:
        return texture
    is_band = np.zeros(int(texture.max()) + 1, bool)
    is_band[bands] = True
    texture = texture.copy()
    texture[is_band[texture]] = 0
    return _drop_small(texture, 1)


def _along_object(piece: np.ndarray, regions: np.ndarray) -> bool:
    """Does a band run along an object's edge, not only through what lies around it?

    Ringing follows the edges of objects; a word of small print on a plain backdrop is a
    piece of the same width whose only large neighbour is that backdrop (its letters hold
    few region pixels), and as texture it becomes the word's layer. A second region with
    ALONG_OBJECT pixels or more beside the band says it runs along an object.
    """
    beside = regions[ndimage.binary_dilation(piece, SQUARE, 2) & ~piece]
    counts = np.sort(np.bincount(beside[beside > 0]))
    return bool(counts.size > 1 and counts[-2] >= ALONG_OBJECT)


def territories(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Give each unlabelled valid pixel the label of its nearest labelled pixel; -1 if invalid."""
    if not labels.any():
        return np.where(valid, 0, -1).astype(np.int32)
    if labels.all():
        own = labels.copy()
    else:
        indices = ndimage.distance_transform_edt(
            labels == 0, return_distances=False, return_indices=True
        )
        own = labels[indices[0], indices[1]]
        del indices
    own[~valid] = -1
    return own


def adjacency(own: np.ndarray, count: int) -> dict[tuple[int, int], int]:
    """Shared boundary length between touching units, keyed (low, high)."""
    pairs = []
    for a, b in ((own[:, :-1], own[:, 1:]), (own[:-1], own[1:])):
        touch = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[touch], b[touch]).astype(np.int64)
        hi = np.maximum(a[touch], b[touch]).astype(np.int64)
        pairs.append(lo * (count + 1) + hi)
    if not pairs or not sum(p.size for p in pairs):
        return {}
    keys, counts = np.unique(np.concatenate(pairs), return_counts=True)
    return {
        (int(k // (count + 1)), int(k % (count + 1))): int(c)
        for k, c in zip(keys, counts, strict=True)
    }
