"""Per-unit measurements the grouping and ordering steps decide on.

Everything here is computed once per picture with whole-array operations (bincount,
find_objects), so the decisions that follow are plain Python over a few hundred units at most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from layerlift.inference.backends.classic.colour_fit import UnitSums, fit_rows
from layerlift.inference.backends.classic.regions import Units, adjacency
from scipy import ndimage

# A unit is "complex" (photo, texture, rich gradient) when even a quadratic leaves this RMS.
COMPLEX_RMS = 4.0
# A unit reads as one flat colour when a constant leaves at most this RMS.
FLAT_RMS = 3.0

Box = tuple[int, int, int, int]  # top, left, bottom, right (exclusive)


def box_within(inner: Box, outer: Box, reach: float = 0.0) -> bool:
    """Does box `inner` lie within box `outer` grown by `reach` on every side?"""
    return (inner[0] >= outer[0] - reach and inner[2] <= outer[2] + reach
            and inner[1] >= outer[1] - reach and inner[3] <= outer[3] + reach)


def box_overlap(a: Box, b: Box) -> Box | None:
    """The part two boxes share, or None when they share no pixel."""
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[2], b[2]), min(a[3], b[3])
    return (top, left, bottom, right) if bottom > top and right > left else None


@dataclass
class UnitFacts:
    """Facts per unit, indexed by unit label (row 0 unused)."""

    area: np.ndarray  # territory pixels
    boxes: list[Box | None]  # territory bounding boxes
    core_boxes: list[Box | None]  # bounding boxes of the defining pixels alone
    colour: np.ndarray  # (n, 3) mean colour of the defining pixels, 0-255
    rms0: np.ndarray
    rms2: np.ndarray
    complex: np.ndarray  # bool
    texture: np.ndarray  # bool: a texture piece (dense non-flat pixels), not a smooth region
    neighbours: dict[int, dict[int, int]]  # unit -> {touching unit: shared boundary length}
    border: np.ndarray  # territory pixels on the picture's border
    sums: UnitSums
    labels: np.ndarray
    own: np.ndarray
    rgb: np.ndarray
    raw: np.ndarray | None = None  # the picture itself when `rgb` is a smoothed copy
    # Pixels in the palette of a textured background (None: the background is not textured).
    texture_pixels: np.ndarray | None = None
    blocky: bool = False  # the picture shows a JPEG's block grid (`denoise.jpeg_step` > 1)

    @property
    def smoothed(self) -> bool:
        """Was the picture denoised before segmentation (a degraded one: JPEG, grain, blur)?"""
        return self.raw is not None and self.raw is not self.rgb

    def is_flat(self, unit: int) -> bool:
        return bool(self.rms0[unit] <= FLAT_RMS and not self.complex[unit])

    def local_colour(
        self, host: int | list[int], box: Box, margin: int = 4
    ) -> np.ndarray | None:
        """Mean colour (0-255) of the host unit(s)' pixels around `box`, or None if none near."""
        h, w = self.labels.shape
        for grow in (margin, 4 * margin, 16 * margin):
            top, left = max(0, box[0] - grow), max(0, box[1] - grow)
            bottom, right = min(h, box[2] + grow), min(w, box[3] + grow)
            crop = self.labels[top:bottom, left:right]
            mine = crop == host if isinstance(host, int) else np.isin(crop, host)
            if mine.sum() >= 8:
                return self.rgb[top:bottom, left:right][mine].mean(axis=0)
        return None

    def colour_near(self, unit: int, host: int, tolerance: float) -> bool:
        """Does `unit`'s mean colour match `host`'s colour where `unit` lies?

        The host is measured on its own pixels around the unit, so the counter of a letter
        is compared with the gradient right around it, not with the gradient's mean.
        """
        box = self.boxes[unit]
        theirs = None if box is None else self.local_colour(host, box)
        if theirs is None:
            theirs = self.colour[host]
        return bool(np.abs(self.colour[unit] - theirs).max() <= tolerance)


def _boxes(own: np.ndarray, count: int) -> list[Box | None]:
    slices = ndimage.find_objects(np.maximum(own, 0), max_label=count)
    boxes: list[Box | None] = [None]
    for s in slices:
        boxes.append(None if s is None else (s[0].start, s[1].start, s[0].stop, s[1].stop))
    return boxes


def _border_counts(own: np.ndarray, count: int) -> np.ndarray:
    edge = np.concatenate([own[0], own[-1], own[1:-1, 0], own[1:-1, -1]])
    edge = edge[edge > 0]
    return np.bincount(edge, minlength=count + 1)


def unit_facts(
    units: Units, sums: UnitSums, rgb: np.ndarray, raw: np.ndarray | None = None
) -> UnitFacts:
    count = units.count
    own = units.own
    area = np.bincount(own[own > 0].ravel(), minlength=count + 1)
    rms0, rms2 = fit_rows(sums)
    colour = sums.mean_colour()
    complex_ = (rms2 > COMPLEX_RMS) & (sums.samples >= 32)
    complex_ |= units.is_texture
    complex_[0] = False
    neighbours: dict[int, dict[int, int]] = {}
    for (a, b), length in adjacency(own, count).items():
        neighbours.setdefault(a, {})[b] = length
        neighbours.setdefault(b, {})[a] = length
    return UnitFacts(
        area=area,
        boxes=_boxes(own, count),
        core_boxes=_boxes(units.labels, count),
        colour=colour,
        rms0=rms0,
        rms2=rms2,
        complex=complex_,
        texture=units.is_texture,
        neighbours=neighbours,
        border=_border_counts(own, count),
        sums=sums,
        labels=units.labels,
        own=units.own,
        rgb=rgb,
        raw=raw,
    )
