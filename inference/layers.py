"""The layer stack every part of LayerLift shares.

A stack is an ordered list of straight-alpha RGBA8 layers, bottom first, on a canvas of the
input picture's size. Each layer holds only its own pixels plus an offset, because trimmed
layers are what PSD, ORA and the host applications store, and what travels over the bridge.
Maths is done in float32 on [0, 1] and rounded once at the end, so compositing a stack twice
gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from layerlift.inference import compose


def as_rgba8(pixels: np.ndarray) -> np.ndarray:
    """Return `pixels` as a contiguous (h, w, 4) uint8 array, adding opaque alpha to RGB."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise TypeError(f"layer pixels must be uint8, got {array.dtype}")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"layer pixels must be (h, w, 3|4), got {array.shape}")
    if array.shape[2] == 3:
        alpha = np.full((*array.shape[:2], 1), 255, np.uint8)
        array = np.concatenate([array, alpha], axis=2)
    return np.ascontiguousarray(array)


def composite_over(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Porter-Duff `src over dst` on straight-alpha float arrays in [0, 1], shape (..., 4)."""
    sa = src[..., 3:4]
    da = dst[..., 3:4]
    out_a = sa + da * (1.0 - sa)
    premul = src[..., :3] * sa + dst[..., :3] * da * (1.0 - sa)
    safe = np.where(out_a > 0, out_a, 1.0)
    out_rgb = np.where(out_a > 0, premul / safe, 0.0)
    return np.concatenate([out_rgb, out_a], axis=-1)


def to_float(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / 255.0


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


@dataclass
class Layer:
    """One named RGBA8 layer placed at (x, y) on its stack's canvas."""

    name: str
    pixels: np.ndarray
    x: int = 0
    y: int = 0
    visible: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pixels = as_rgba8(self.pixels)
        self.x = int(self.x)
        self.y = int(self.y)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) on the canvas, right/bottom exclusive."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def on_canvas(self, width: int, height: int) -> np.ndarray:
        """This layer drawn onto a transparent (height, width, 4) canvas; parts outside are cut."""
        canvas = np.zeros((height, width, 4), np.uint8)
        left, top = max(self.x, 0), max(self.y, 0)
        right, bottom = min(self.x + self.width, width), min(self.y + self.height, height)
        if right > left and bottom > top:
            canvas[top:bottom, left:right] = self.pixels[
                top - self.y : bottom - self.y, left - self.x : right - self.x
            ]
        return canvas

    def alpha_bounds(self) -> tuple[int, int, int, int] | None:
        """(left, top, right, bottom) of the non-zero alpha, in the layer's own pixels.

        Rows are found first and columns only within them, and a canvas-sized layer is read
        once per axis: at 4096 px this is the whole cost of trimming. A layer with alpha on
        all four edges is already tight, which its edges alone tell: a stack that was trimmed
        before (as the job store and the writers receive it) is not read again.
        """
        alpha = self.pixels[..., 3]
        if alpha.size and all(edge.any() for edge in (alpha[0], alpha[-1], alpha[:, 0],
                                                      alpha[:, -1])):
            return 0, 0, self.width, self.height
        rows = np.flatnonzero(alpha.any(axis=1))
        if rows.size == 0:
            return None
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        cols = np.flatnonzero(alpha[top:bottom].any(axis=0))
        return int(cols[0]), top, int(cols[-1]) + 1, bottom

    def trimmed(self) -> Layer:
        """The same layer cropped to the bounding box of its non-zero alpha.

        A fully transparent layer becomes 0x0 at its old offset: it keeps its name and place
        in the stack (the backend decided it exists) but carries no pixels. A layer that is
        already tight keeps its very pixels (no copy: writers and the job store trim again);
        otherwise the kept part is copied once, since layers keep C-contiguous pixels.
        """
        bounds = self.alpha_bounds()
        if bounds is None:
            return replace(self, pixels=np.zeros((0, 0, 4), np.uint8), meta=dict(self.meta))
        left, top, right, bottom = bounds
        return replace(
            self,
            pixels=self.pixels[top:bottom, left:right],
            x=self.x + left,
            y=self.y + top,
            meta=dict(self.meta),
        )


@dataclass
class LayerStack:
    """Layers bottom first on a `width` x `height` canvas, plus facts about how they were made."""

    width: int
    height: int
    layers: list[Layer] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_canvases(
        cls, canvases: Sequence[np.ndarray], names: Iterable[str], **meta: Any
    ) -> LayerStack:
        """Build a stack from full-canvas RGBA arrays (the form backends naturally produce)."""
        canvases = [as_rgba8(c) for c in canvases]
        if not canvases:
            raise ValueError("a stack needs at least one layer")
        height, width = canvases[0].shape[:2]
        for canvas in canvases:
            if canvas.shape[:2] != (height, width):
                raise ValueError("all canvases of a stack must have the same size")
        layers = [Layer(name, pixels) for name, pixels in zip(names, canvases, strict=True)]
        return cls(width, height, layers, dict(meta))

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def canvases(self, visible_only: bool = False) -> list[np.ndarray]:
        return [
            layer.on_canvas(self.width, self.height)
            for layer in self.layers
            if layer.visible or not visible_only
        ]

    def placed(self, visible_only: bool = True) -> list[tuple[np.ndarray, int, int]]:
        """(pixels, x, y) of the layers that composite, bottom first."""
        return [
            (layer.pixels, layer.x, layer.y)
            for layer in self.layers
            if (layer.visible or not visible_only) and layer.width and layer.height
        ]

    def composite_float(self, visible_only: bool = True) -> np.ndarray:
        """Float (h, w, 4) straight-alpha composite over transparency, without rounding."""
        return compose.composite_float(self.placed(visible_only), self.width, self.height)

    def composite(self, visible_only: bool = True) -> np.ndarray:
        """The stack flattened to one (h, w, 4) uint8 image, as an editor would show it.

        Computed premultiplied, in strips (`inference.compose`), never as a float canvas; or
        a copy of the one remembered (`remember_composite`) while the layers are unchanged.
        """
        if visible_only:
            remembered = self.remembered_composite()
            if remembered is not None:
                return remembered.copy()
        return compose.composite8(self.placed(visible_only), self.width, self.height)

    def _arrangement(self) -> tuple:
        """What the composite depends on, short of pixel values: each layer's pixel buffer
        (address, shape, strides), offset and visibility."""
        return tuple(
            (layer.pixels.__array_interface__["data"][0], layer.pixels.shape,
             layer.pixels.strides, layer.x, layer.y, layer.visible)
            for layer in self.layers
        )

    def remember_composite(self, pixels: np.ndarray) -> None:
        """Keep `pixels` as this stack's composite, for as long as its layers stay the same.

        For code that already has it (exact recomposition computes it on the way): PSD and
        ORA export would otherwise flatten a 4096 px stack again. Layers are never changed in
        place, so a changed list, layer, offset or visibility is what invalidates it.
        """
        self._composite = (self._arrangement(), pixels)

    def remembered_composite(self) -> np.ndarray | None:
        """The remembered composite if the layers are still the ones it was made from."""
        remembered = getattr(self, "_composite", None)
        if remembered is None or remembered[0] != self._arrangement():
            return None
        return remembered[1]

    def trimmed(self) -> LayerStack:
        layers = [layer.trimmed() for layer in self.layers]
        out = replace(self, layers=layers, meta=dict(self.meta))
        remembered = self.remembered_composite()
        if remembered is not None:
            out.remember_composite(remembered)  # trimming changes no pixel of the composite
        return out

    def replace_layer(self, index: int, sub_stack: LayerStack) -> LayerStack:
        """A new stack with layer `index` replaced in place by the layers of `sub_stack`.

        `sub_stack` lives on the same canvas; this is how recursive decomposition lands.
        """
        if not 0 <= index < len(self.layers):
            raise IndexError(f"no layer {index} in a stack of {len(self.layers)}")
        if (sub_stack.width, sub_stack.height) != (self.width, self.height):
            raise ValueError("the sub-stack must be on the same canvas")
        layers = self.layers[:index] + list(sub_stack.layers) + self.layers[index + 1 :]
        return replace(self, layers=layers, meta=dict(self.meta))


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images of the same shape.

    Transparent pixels are compared as premultiplied colour, so their hidden RGB, which no
    viewer shows, does not count against a stack.
    """
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    if reference.ndim == 3 and reference.shape[-1] == 4:
        values = float(reference.size)
        sse = compose.squared_error_sum(np.asarray(reference), np.asarray(test))
    else:
        ref = to_float(reference)
        tst = to_float(test)
        values = float(ref.size)
        sse = float(np.sum((ref - tst) ** 2, dtype=np.float64))
    if sse == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(values / sse))
