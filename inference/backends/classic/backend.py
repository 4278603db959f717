"""The classic backend: flat designs into layers on the CPU, with no model weights.

Stages (each reports progress and is a cancellation point):

1. regions: core pixels, regions linked by colour, texture pieces, territories;
2. facts and elements: colour models, background, holes, text, photos, specks;
3. order: convex-hull evidence of who covers whom, and each element's completed extent;
4. layers: bottom-up, with completion and soft alpha from unmixing; a see-through shape's soft
   shadow or glow lifted off the background as a layer of its own (`effects`); then small
   details that no region captured (thin text) on top, crumbs folded into their host, and
   pieces of a soft effect's falloff (which read as text or texture) into the layer they
   lie on (`crumbs`);
5. count: merge or split to the requested number of layers, and names; objects that share
   only a sliver of edge pixels are parted (`touching`);
6. exactness: `inference.exact_recomposition.recomposite_exact`, so the stack flattens to the input.

Pictures larger than ANALYSIS_PIXELS are analysed at a reduced scale (box-averaged by an integer
factor, which also averages away sensor and JPEG noise): stages 1-5 run there, each layer is
then resampled to the full size (premultiplied bilinear) and stage 6 runs at full size, so the
stack still flattens exactly to the full-size input. A 2048 x 2048 poster holds no detail that
its 1024 x 1024 copy lacks for deciding what the objects are; what the full size adds (one
pixel of anti-aliasing) is what the exact recomposition puts back.

The whole pipeline is deterministic: no step draws random numbers, so every seed gives the
same stack (the seed is recorded in the stack's meta for the record).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np
from layerlift.inference.backends.base import (
    MAX_LAYERS,
    Backend,
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
    ignore_progress,
)
from layerlift.inference.backends.classic.build import BuiltLayer, build_layers
from layerlift.inference.backends.classic.colour_fit import accumulate
from layerlift.inference.backends.classic.count import (
    element_names,
    fit_count,
    layer_name,
    merge,
    overlaps,
    unique_names,
)
from layerlift.inference.backends.classic.crumbs import fold_soft_crumbs
from layerlift.inference.backends.classic.denoise import (
    chroma_subsampled,
    is_noisy,
    jpeg_step,
    restore_chroma,
    sigma_levels,
    smooth,
)
from layerlift.inference.backends.classic.facts import unit_facts
from layerlift.inference.backends.classic.grouping import element_map, form_elements
from layerlift.inference.backends.classic.ordering import z_order
from layerlift.inference.backends.classic.regions import find_units
from layerlift.inference.backends.classic.residual import find_details
from layerlift.inference.backends.classic.shapes import NOISY_ON_CURVE
from layerlift.inference.backends.classic.touching import part_touching
from layerlift.inference.exact_recomposition import recomposite_exact
from layerlift.inference.input_check import checked_pixels
from layerlift.inference.job_states import JobState
from layerlift.inference.layers import Layer, LayerStack
from PIL import Image


class _Stages:
    """Progress reporting and cancel polling in one place."""

    def __init__(self, progress: ProgressCallback, cancel: CancelToken | None) -> None:
        self.progress = progress
        self.cancel = cancel
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()
        self._fraction = 0.0

    def poll(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def report(self, fraction: float, message: str) -> None:
        self.poll()
        self._fraction = max(self._fraction, min(fraction, 1.0))
        self.progress(Progress(stage=JobState.RUNNING, fraction=self._fraction, message=message))

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 4)
        self._last = now


class ClassicBackend(Backend):
    """Weight-free CPU decomposer for posters, slides and logos."""

    name: ClassVar[str] = "classic"
    label: ClassVar[str] = "Classic (CPU, no weights)"

    def decompose(
        self,
        image: np.ndarray,
        request: DecomposeRequest,
        progress: ProgressCallback = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> LayerStack:
        stages = _Stages(progress, cancel)
        full = checked_pixels(image)
        full_h, full_w = full.shape[:2]
        factor = analysis_factor(full_h, full_w)
        rgba = _reduce(full, factor)
        h, w = rgba.shape[:2]
        raw = np.ascontiguousarray(rgba[..., :3])
        noisy = is_noisy(raw)
        rgb, levels, step = raw, 0, 1
        if noisy:
            # A reduced picture has lost the JPEG block grid (and its averaging smoothed it).
            step = jpeg_step(raw) if factor == 1 else 1
            levels = sigma_levels(raw, step)
            # A JPEG's colour is stored at half resolution and smeared over thin strokes: it is
            # rebuilt from the sharp luma first (a reduced picture has averaged it already).
            source = raw
            if factor == 1 and chroma_subsampled(raw):
                source = restore_chroma(raw)
            rgb = smooth(source, levels, reduced=factor)
        valid = rgba[..., 3] > 0

        stages.report(0.02, "finding regions")
        units = find_units(rgb, valid, raw, jpeg=step > 1)
        stages.done("regions")

        stages.report(0.2, "grouping regions into objects")
        sums = accumulate(units.labels, rgb, units.count)
        facts = unit_facts(units, sums, rgb, raw)
        facts.blocky = step > 1
        elements, background = form_elements(units.own, facts, units.count)
        emap = element_map(units.own, elements, units.count, background, facts)
        defined = units.labels > 0
        del units
        stages.done("elements")

        stages.report(0.35, "ordering objects")
        on_curve = NOISY_ON_CURVE if noisy else None
        order, extents = z_order(elements, emap, background, rgb, on_curve)
        for index, name in zip(order, element_names([elements[i].kind for i in order]),
                               strict=True):
            elements[index].name = name
        stages.done("order")

        stages.report(0.45, "drawing layers")
        layers, canvas = build_layers(
            elements, order, extents, rgb, defined, emap, facts,
            lambda f: stages.report(0.45 + 0.3 * f, "drawing layers"),
            on_curve,
        )
        del emap, defined
        stages.report(0.75, "looking for small details")
        details = find_details(rgb, valid, canvas, layers, smoothing=levels)
        del canvas
        layers = _fold_small_details(layers, details, h * w)
        layers += _name_details([d for d in details if d is not None], layers)
        layers = fold_soft_crumbs(layers, raw, jpeg=step > 1)
        if not layers:  # nothing valid at all: one transparent layer
            layers = [BuiltLayer(["background"], ["background"], (0, 0, h, w),
                                 np.zeros((h, w, 4), np.uint8))]
        stages.done("layers")

        stages.report(0.82, "matching the layer count")
        target = request.layers if request.layers is not None else min(len(layers), MAX_LAYERS)
        layers, note = fit_count(layers, target)
        part_touching(layers, smoothed=noisy)
        if request.layers is None:
            note = ""
        stages.done("count")

        if factor > 1:
            stages.report(0.85, "resampling the layers to full size")
            # Pillow resamples without the GIL: the layers are enlarged side by side.
            with ThreadPoolExecutor(max_workers=ENLARGE_THREADS) as pool:
                layers = list(pool.map(lambda layer: _enlarge(layer, factor, full_h, full_w),
                                       layers))
            _show_picture(layers, full)
            stages.done("enlarge")

        stages.report(0.88, "making the layers recomposite exactly")
        stack = _to_stack(layers, full, full_w, full_h)
        stack, before, after = recomposite_exact(stack, full)
        stack = stack.trimmed()
        stages.done("refine")

        stack.meta.update(
            backend=self.name,
            psnr=after,
            psnr_before=before,
            layers=len(stack.layers),
            requested_layers=request.layers,
            seed=request.seed,
            timings=stages.timings,
            analysis_scale=1.0 / factor,
            smoothed=noisy,
        )
        if note:
            stack.meta["note"] = note
        stages.report(1.0, f"{len(stack.layers)} layers")
        return stack


SMALL_DETAIL = 0.002  # detail layers below this share of the picture fold into their host
CRUMB = 64.0  # px of alpha: less than a short word of small print, whatever its kind
# Pictures above this many pixels are analysed at 1/2, 1/3, ... of their size, the smallest
# factor that brings them under it.
ANALYSIS_PIXELS = 1_200_000
ENLARGE_THREADS = 2  # layers resampled at once (more only adds memory on a 2-core machine)


def analysis_factor(h: int, w: int) -> int:
    """The integer factor a picture is reduced by for analysis (1: full size)."""
    factor = 1
    while (h // factor) * (w // factor) > ANALYSIS_PIXELS:
        factor += 1
    return factor


def _reduce(rgba: np.ndarray, factor: int) -> np.ndarray:
    """`rgba` box-averaged by `factor` (premultiplied, so transparent pixels add no colour)."""
    if factor == 1:
        return rgba
    image = Image.fromarray(rgba, "RGBA")
    return np.asarray(image.reduce(factor))


def _enlarge(layer: BuiltLayer, factor: int, h: int, w: int) -> BuiltLayer:
    """A layer built at the analysis scale, resampled onto the full-size canvas.

    Pillow resizes RGBA premultiplied, so a transparent neighbour lends no colour to an edge.
    The box's corners scale exactly, so the layers line up with the full-size picture.
    """
    top, left, bottom, right = layer.box
    bh, bw = layer.rgba.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(layer.rgba), "RGBA")
    big = np.array(image.resize((bw * factor, bh * factor), Image.Resampling.BILINEAR))
    box = (top * factor, left * factor, min(h, bottom * factor), min(w, right * factor))
    big = big[: box[2] - box[0], : box[3] - box[1]]
    return BuiltLayer(layer.kinds, layer.names, box, big, layer.colour)


def _fold_small_details(
    layers: list[BuiltLayer], details: list[BuiltLayer], n_pixels: int
) -> list[BuiltLayer]:
    """Fold tiny detail layers into the topmost layer under them (None-ing them in `details`).

    A few stray edge pixels as a layer of their own would only clutter the stack. A crumb
    that the residual pass took for text (less than CRUMB px of alpha: the foot of a blurred
    word, a stroke its regions missed) folds too: it overlaps the object it is a piece of,
    so as a layer of its own it would read as something stacked on that object.
    """
    limit = max(64.0, SMALL_DETAIL * n_pixels)
    for k, detail in enumerate(details):
        if detail.alpha_sum >= (limit if detail.kinds == ["detail"] else CRUMB):
            continue
        host = next((i for i in range(len(layers) - 1, -1, -1) if overlaps(layers[i], detail)),
                    0 if layers else None)
        if host is None:
            continue
        folded = merge(layers[host], detail)
        folded.kinds, folded.names = layers[host].kinds, layers[host].names
        folded.colour = layers[host].colour
        layers[host] = folded
        details[k] = None
    return layers


def _name_details(details: list[BuiltLayer], layers: list[BuiltLayer]) -> list[BuiltLayer]:
    """Name the detail layers after the element layers' names continue."""
    taken = {n for layer in layers for n in layer.names}
    kinds = [d.kinds[0] for d in details]
    for layer, name in zip(details, element_names(kinds), strict=True):
        base, number = name, 1
        while name in taken:
            number += 1
            name = f"{base} {number}"
        taken.add(name)
        layer.names = [name]
    return details


def _show_picture(layers: list[BuiltLayer], picture: np.ndarray) -> None:
    """Give each layer the full-size picture's colour where it shows, opaque and uncovered.

    That is what each layer's interior holds at the analysis scale too; resampled, it would be
    the picture blurred, which the exact recomposition would then have to correct pixel by
    pixel. Layers are visited top down, keeping what the layers above cover (in place).
    """
    h, w = picture.shape[:2]
    covered = np.zeros((h, w), bool)
    # Where a layer shows it is opaque, so its pixel becomes the picture's colour with alpha
    # 255: one 32-bit word per pixel, copied under a 2-D mask (numpy's masked copy is several
    # times slower with a mask broadcast over the channels).
    packed = picture.shape[2] == 4 and picture.strides[2] == 1 and sys.byteorder == "little"
    opaque = np.uint32(0xFF000000)
    for layer in reversed(layers):
        top, left, bottom, right = layer.box
        alpha = layer.rgba[..., 3]
        above = covered[top:bottom, left:right]
        show = alpha == 255
        show &= ~above
        crop = picture[top:bottom, left:right]
        if packed and layer.rgba.shape[2] == 4 and layer.rgba.strides[2] == 1:
            words = crop.view(np.uint32)[..., 0] | opaque
            np.copyto(layer.rgba.view(np.uint32)[..., 0], words, where=show)
        else:
            np.copyto(layer.rgba[..., :3], crop[..., :3], where=show[..., None])
        above |= alpha > 0


def _to_stack(layers: list[BuiltLayer], rgba: np.ndarray, w: int, h: int) -> LayerStack:
    """LayerStack of the built layers, their alpha cut by the input's own transparency."""
    input_alpha = rgba[..., 3]
    opaque = bool((input_alpha == 255).all())
    names = unique_names([layer_name(layer) for layer in layers])
    out = []
    for layer, name in zip(layers, names, strict=True):
        pixels = layer.rgba
        top, left, bottom, right = layer.box
        if not opaque:
            pixels = pixels.copy()
            cut = input_alpha[top:bottom, left:right].astype(np.uint16)
            pixels[..., 3] = ((pixels[..., 3].astype(np.uint16) * cut + 127) // 255).astype(
                np.uint8
            )
        out.append(Layer(name, pixels, x=left, y=top, meta={"kinds": list(layer.kinds)}))
    return LayerStack(w, h, out, {})
