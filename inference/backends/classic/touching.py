"""Objects that merely touch: a few shared edge pixels are given to one of the two layers.

Two objects side by side (a caption beside a shape, the pieces of a blurred word) can both
claim a few pixels where their edges meet: each layer's soft alpha, or a stroke of one
reaching into the other's rim. Nothing there is one object lying over the other, yet two
layers that overlap by even one pixel read as stacked (an editor's "which is on top"
matters there, and the LayerD metric counts such a pair as two occlusion levels). So where
two object layers overlap on only a sliver (at most TOUCH_PIXELS, or TOUCH_SHARE of the
smaller layer's pixels), each shared pixel goes to the layer with more alpha there (ties:
the upper one, which is what shows) and the other lets it go. A real occlusion, text on a
card, covers far more than a sliver and is left alone. The bottom layer (the background) is
never parted: it lies under everything.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.build import BuiltLayer
from layerlift.inference.backends.classic.facts import box_overlap
from scipy import ndimage

TOUCH_PIXELS = 12
TOUCH_SHARE = 0.02
# A degraded picture's edges are wider (JPEG ringing, blur smoothed into a band): so is the
# sliver two touching objects may both claim, up to this share, while it stays a thin band
# (at most SLIVER_HALF_WIDTH px from its own edge); an occluded corner is a blob.
TOUCH_SHARE_SMOOTHED = 0.05
SLIVER_HALF_WIDTH = 2.0


def part_touching(layers: list[BuiltLayer], smoothed: bool = False) -> None:
    """Part (in place) every pair of object layers that share only a sliver of pixels.

    `layers` are bottom first; the first one, when it is the background, is left whole.
    `smoothed`: the picture was denoised (a degraded one), whose slivers are wider.
    """
    share = TOUCH_SHARE_SMOOTHED if smoothed else TOUCH_SHARE
    start = 1 if layers and layers[0].kinds == ["background"] else 0
    sizes = [int(np.count_nonzero(layer.rgba[..., 3])) for layer in layers]
    for i in range(start, len(layers)):
        for j in range(i + 1, len(layers)):
            box = box_overlap(layers[i].box, layers[j].box)
            if box is None:
                continue
            lower, upper = layers[i].pixels_in(box), layers[j].pixels_in(box)
            a, b = lower[..., 3], upper[..., 3]
            both = (a > 0) & (b > 0)
            shared = int(np.count_nonzero(both))
            if not shared or shared > max(TOUCH_PIXELS, share * min(sizes[i], sizes[j])):
                continue
            if shared > max(TOUCH_PIXELS, TOUCH_SHARE * min(sizes[i], sizes[j])) and (
                ndimage.distance_transform_edt(both).max() > SLIVER_HALF_WIDTH
            ):
                continue
            lower[both & (a <= b)] = 0
            upper[both & (b < a)] = 0
