"""Exact recomposition: make any backend's stack flatten back to the picture it came from.

A decomposer's layers are estimates (a diffusion model's colours drift, the classic backend's
edges are fitted), but inserting them into a document must never change how the document
looks. So every backend ends here. The correction is put where it disturbs the layers least:

1. Where the layers above the bottom one leave it visible, the bottom layer alone is solved so
   that the composite equals the target: ``bottom = (target - U_premul) / (1 - U_alpha)``,
   with U the composite of everything above it. That keeps each object layer as the backend
   drew it, and the bottom (usually the background) absorbs the residual.
2. Where the layers above are (nearly) opaque, the bottom cannot help without huge values, so
   the colour (and, only when the colour alone cannot do it, the alpha) of the topmost visible
   layer is solved instead, against what lies beneath it.
3. What still cannot be matched (the target is more transparent than the layers beneath the
   top one allow) gets the target pixel in the topmost layer and transparency below it. That
   loses hidden content at those few pixels, never visible content.

Only pixels that are off by more than rounding are touched, so a stack that already
recomposites exactly comes back bit-identical. The work runs in strips of rows small enough
for the CPU cache (`inference.compose`), each layer only inside its alpha bounds: the float
working set is a few megabytes whatever the canvas, and the result is the only copy made.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from layerlift.inference import compose
from layerlift.inference.errors import BadRequest
from layerlift.inference.heap import steady_heap
from layerlift.inference.layers import Layer, LayerStack, as_rgba8, psnr

# Layers above the bottom one whose combined alpha is at most this leave it "visible": the
# bottom is solved there. Above it a residual would be amplified more than 20x.
BOTTOM_SOLVE_MAX_ALPHA = 0.95
# A pixel is "exact" when every premultiplied channel is within this of the target (0-1 units):
# a little more than the half level that rounding to 8 bits may cost.
TOLERANCE = 0.75 / 255.0
ONE = np.float32(1.0)
ZERO = np.float32(0.0)
# Above this share of missing pixels a strip is solved whole, with masks, instead of gathered.
DENSE = 0.25
F255 = np.float32(255.0)

Span = tuple[int, int, int, int]  # top, bottom, left, right of a layer's non-zero alpha


@steady_heap()
def recomposite_exact(stack: LayerStack, image: np.ndarray, *, in_place: bool = False
                      ) -> tuple[LayerStack, float, float]:
    """Correct `stack` so that it composites to `image`; return (stack, psnr_before, psnr_after).

    `image` is the (h, w, 3|4) uint8 picture the stack was made from (straight alpha, which
    may be below 255). The returned stack holds full-canvas layers at offset (0, 0) with the
    names, visibility and meta of the input layers; hidden layers are left as they were and
    take no part. PSNR figures compare `stack.composite()` with `image`, as `psnr` does.
    The input stack's pixels are not modified, unless `in_place`: then writable layers that
    already cover the canvas at (0, 0) are corrected in their own arrays (for a caller that
    made them and hands them over, such as restoring: a 4096 px layer is 64 MB to copy).
    """
    target = as_rgba8(image)
    if target.shape[:2] != (stack.height, stack.width):
        raise BadRequest(
            f"the picture is {target.shape[1]}x{target.shape[0]} but the stack is "
            f"{stack.width}x{stack.height}"
        )
    if not stack.layers:
        raise BadRequest("an empty stack cannot be made to recomposite to a picture")
    visible = [i for i, layer in enumerate(stack.layers) if layer.visible]
    if not visible:
        before = psnr(target, stack.composite())
        return stack, before, before

    width, height = stack.width, stack.height
    spans = [_span(stack.layers[i], width, height) for i in visible]
    planes = [_canvas(stack.layers[i], width, height, in_place) for i in visible]

    flat = np.empty((height, width, 4), np.uint8)

    def band(start: int, end: int) -> list[tuple[float, float]]:
        scratch = compose.Scratch.for_canvas(height, width)
        layers = np.empty((len(planes), 4, scratch.out[0].size), np.float32)
        return [_correct_strip(planes, spans, top, bottom, target, scratch, layers, flat)
                for top, bottom in compose.strips(end, width, start)]

    sums = [sse for part in compose.in_bands(band, height, width) for sse in part]
    sse_before = float(sum(before for before, _ in sums))
    sse_after = float(sum(after for _, after in sums))

    canvases = dict(zip(visible, planes, strict=True))
    layers: list[Layer] = []
    for index, layer in enumerate(stack.layers):
        if index in canvases:
            layers.append(replace(layer, pixels=canvases[index], x=0, y=0, meta=dict(layer.meta)))
        else:
            layers.append(layer)
    result = LayerStack(width, height, layers, dict(stack.meta))
    result.remember_composite(flat)  # computed on the way: writers need not flatten again
    values = 4.0 * width * height
    return result, _psnr(sse_before, values), _psnr(sse_after, values)


def _psnr(sse: float, values: float) -> float:
    """PSNR from a summed squared error, as `inference.layers.psnr` defines it."""
    if sse <= 0.0:
        return float("inf")
    return 10.0 * float(np.log10(values / sse))


def _canvas(layer: Layer, width: int, height: int, in_place: bool) -> np.ndarray:
    """`layer` as a writable full-canvas array: a copy, or its own pixels `in_place`."""
    if (layer.x, layer.y, layer.width, layer.height) == (0, 0, width, height):
        if in_place and layer.pixels.flags.writeable:
            return layer.pixels
        return layer.pixels.copy()
    return layer.on_canvas(width, height)


def _span(layer: Layer, width: int, height: int) -> Span | None:
    """Where `layer` has non-zero alpha on the canvas, or None."""
    bounds = layer.alpha_bounds()
    if bounds is None:
        return None
    left, top, right, bottom = bounds
    top, bottom = max(0, top + layer.y), min(height, bottom + layer.y)
    left, right = max(0, left + layer.x), min(width, right + layer.x)
    if bottom <= top or right <= left:
        return None
    return top, bottom, left, right


# --- per-strip maths ---------------------------------------------------------------------------
# Layer values are straight alpha in [0, 1], bottom first. Only the pixels that miss the target
# are gathered, as planar (k, 4, n) arrays, and solved; everything else stays bit-identical.


def _quantize(values: np.ndarray) -> np.ndarray:
    """Round to the 8-bit grid the layers will be stored on, staying in float."""
    out = values * F255
    np.rint(out, out=out)
    np.clip(out, 0.0, 255.0, out=out)
    out /= F255
    return out


def _levels(values: np.ndarray) -> np.ndarray:
    """8-bit levels (still float32) of values in [0, 1]."""
    out = values * F255
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out


def _composite(pixels: np.ndarray, work: np.ndarray | None = None) -> np.ndarray:
    """Premultiplied composite (4, n) of straight layers (k, 4, n), as `compose` computes it.

    `work` is a (4, n) buffer to premultiply into (one is made when not given).
    """
    out = np.zeros(pixels.shape[1:], np.float32)
    work = np.empty_like(out) if work is None else work
    for layer in pixels[::-1]:
        compose.beneath(out, compose.premultiply_into(layer, work))
    return out


def _misses(composite: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Where premultiplied planes (4, ...) miss the target's by more than rounding."""
    diff = np.subtract(composite, target)
    np.abs(diff, out=diff)
    return diff.max(axis=0) > TOLERANCE


def _correct_strip(
    planes: list[np.ndarray],
    spans: list[Span | None],
    top: int,
    bottom: int,
    target: np.ndarray,
    scratch: compose.Scratch,
    layers: np.ndarray,
    flat: np.ndarray,
) -> tuple[float, float]:
    """Fix rows top:bottom of the uint8 canvases `planes` in place, only where they miss,
    and write the rows' composite afterwards into `flat` (RGBA8, the canvas' size).

    Returns the summed squared error of the rows' composite before and after, measured as
    `inference.layers.psnr` measures it (8-bit straight composite, compared premultiplied).
    `layers` is a float buffer (k, 4, strip pixels) that receives each layer's straight
    values once; the composite runs top down, so the part above the bottom layer (which
    step 1 solves against) is kept on the way instead of being composited again.
    """
    width = target.shape[1]
    rows_n = bottom - top
    size = rows_n * width
    pixels = layers[:, :, :size]
    goal = compose.premultiplied(target[top:bottom], scratch.goal[:, :rows_n])
    out = scratch.out[:, :rows_n]
    out.fill(0.0)
    upper = scratch.upper[:, :rows_n]
    for index in range(len(planes) - 1, -1, -1):
        if index == 0:
            np.copyto(upper, out)
        straight = pixels[index].reshape(4, rows_n, width)
        span = spans[index]
        r0, r1 = (max(span[0], top), min(span[1], bottom)) if span else (top, top)
        if r1 <= r0:
            straight.fill(0.0)
            continue
        c0, c1 = span[2], span[3]
        if (r0, r1, c0, c1) != (top, bottom, 0, width):
            straight.fill(0.0)
        rows, cols = slice(r0 - top, r1 - top), slice(c0, c1)
        part = compose.planar(planes[index][r0:r1, c0:c1], straight[:, rows, cols])
        src = compose.premultiply_into(part, scratch.src[:, : r1 - r0, : c1 - c0])
        compose.beneath(out[:, rows, cols], src, scratch.keep[: r1 - r0, : c1 - c0])
    flat_rows = flat[top:bottom]
    levels = compose.quantized(out, scratch.levels[:, :rows_n])
    np.copyto(np.moveaxis(flat_rows, -1, 0), levels, casting="unsafe")
    errors = compose.level_errors(levels, goal).reshape(-1)
    before = float(errors.sum(dtype=np.float64))
    off = _misses(out, goal).reshape(-1)
    count = int(np.count_nonzero(off))
    if count == 0:
        return before, before
    flat_rows = flat_rows.reshape(-1, 4)
    rows = [plane[top:bottom].reshape(-1, 4) for plane in planes]
    out, goal, upper = out.reshape(4, -1), goal.reshape(4, -1), upper.reshape(4, -1)
    if count > DENSE * off.size:
        # Most pixels miss (a noisy model output): solve the whole strip, change by mask.
        work = _Work(pixels, goal, upper, out.copy(), off)
        _solve(work)
        # Unchanged pixels are k/255 and go back to exactly k: no mask needed.
        for layer in sorted(work.changed):
            np.copyto(rows[layer].T, _levels(pixels[layer]), casting="unsafe")
        levels = compose.quantized(work.out)
        np.copyto(flat_rows.T, levels, casting="unsafe")
        fixed = compose.level_errors(levels, goal)
        after = before - float(errors.sum(where=off, dtype=np.float64))
        return before, after + float(fixed.sum(where=off, dtype=np.float64))
    index = np.flatnonzero(off)
    work = _Work(pixels[:, :, index], goal[:, index], upper[:, index], out[:, index],
                 np.ones(count, bool))
    _solve(work)
    for layer in sorted(work.changed):
        rows[layer][index] = _levels(work.pixels[layer]).T
    levels = compose.quantized(work.out)
    flat_rows[index] = levels.T
    fixed = compose.level_errors(levels, work.goal)
    after = before - float(errors[index].sum(dtype=np.float64))
    return before, after + float(fixed.sum(dtype=np.float64))


class _Work:
    """The pixels one strip solves: layers (k, 4, n) straight on the 8-bit grid, the target,
    the composite of the layers above the bottom one, the current composite (premultiplied,
    (4, n)), and which pixels may change (the ones that missed)."""

    def __init__(self, pixels: np.ndarray, goal: np.ndarray, upper: np.ndarray,
                 out: np.ndarray, active: np.ndarray) -> None:
        self.pixels, self.goal, self.upper, self.out, self.active = (
            pixels, goal, upper, out, active)
        self.changed: set[int] = set()  # layers some pixel of which was solved


def _solve(work: _Work) -> None:
    """Steps 1 to 3, each only where the previous ones left a miss; `work.out` follows."""
    if work.pixels.shape[0] > 1:
        _solve_bottom(work)
    still = work.active & _misses(work.out, work.goal)
    for step in (_solve_top, _replace_top):
        if not still.any():
            return
        work.changed |= step(work.pixels, work.goal, still)
        np.copyto(work.out, _composite(work.pixels), where=still)
        still &= _misses(work.out, work.goal)


def _solve_bottom(work: _Work) -> None:
    """Step 1: solve the bottom layer where the layers above leave it visible (in place).

    The composite is then the (unchanged) part above over the new bottom, which is exactly
    how `compose` composites it, so `work.out` stays the stack's true composite.
    """
    upper, goal = work.upper, work.goal
    where = work.active & (upper[3] <= BOTTOM_SOLVE_MAX_ALPHA)
    if not where.any():
        return
    work.changed.add(0)
    bottom = work.pixels[0]
    free = ONE - upper[3]
    free[~where] = ONE
    alpha = np.subtract(goal[3], upper[3])
    alpha /= free
    np.clip(alpha, 0.0, 1.0, out=alpha)
    colour = np.subtract(goal[:3], upper[:3])
    colour /= free
    shown = alpha > 0
    colour /= np.where(shown, alpha, ONE)
    np.clip(colour, 0.0, 1.0, out=colour)
    np.copyto(bottom[:3], _quantize(colour), where=where & shown)
    np.copyto(bottom[3], _quantize(alpha), where=where)
    out = upper.copy()
    compose.beneath(out, compose.premultiply_into(bottom, np.empty_like(out)))
    np.copyto(work.out, out, where=where)


def _topmost(alphas: np.ndarray) -> np.ndarray:
    """Index of the topmost layer with alpha > 0 per pixel (0 when none); alphas (k, n)."""
    present = alphas > 0
    flipped = np.argmax(present[::-1], axis=0)
    top = alphas.shape[0] - 1 - flipped
    return np.where(present.any(axis=0), top, 0)


def _uniform(top: np.ndarray, where: np.ndarray) -> int | None:
    """The one top layer index of all pixels in `where`, if they share one."""
    chosen = top[where]
    first = int(chosen[0])
    return first if (chosen == first).all() else None


def _below(pixels: np.ndarray, top: np.ndarray | None, same: int | None) -> np.ndarray:
    """Premultiplied composite (4, n), per pixel, of the layers under its `top` layer."""
    out = np.zeros(pixels.shape[1:], np.float32)
    src = np.empty_like(out)
    for index in range((pixels.shape[0] if same is None else same) - 1, -1, -1):
        compose.premultiply_into(pixels[index], src)
        if same is None:
            src *= index < top
        compose.beneath(out, src)
    return out


def _top_values(pixels: np.ndarray, top: np.ndarray | None, same: int | None) -> np.ndarray:
    """Each pixel's values (4, n) in its top layer."""
    if same is not None:
        return pixels[same]
    return np.take_along_axis(pixels, top[None, None, :], axis=0)[0]


def _set_top(pixels: np.ndarray, top: np.ndarray | None, same: int | None, values: np.ndarray,
             where: np.ndarray) -> set[int]:
    """Write `values` (4, n) into each pixel's top layer, only `where`; returns the layers."""
    if same is not None:
        np.copyto(pixels[same], values, where=where)
        return {same}
    changed = set()
    for index in range(pixels.shape[0]):
        mask = where & (top == index)
        if mask.any():
            np.copyto(pixels[index], values, where=mask)
            changed.add(index)
    return changed


def _solve_top(pixels: np.ndarray, target: np.ndarray, where: np.ndarray) -> set[int]:
    """Step 2: solve the topmost visible layer's colour (and alpha if it must), `where`.

    With L the composite beneath the top layer: ``a + (1 - a) L_a = T_a`` fixes the top alpha
    `a` unless L is opaque; then `a` is free and is raised only as far as the colour
    ``c = (T_p - (1 - a) L_p) / a`` needs to stay within [0, 1].
    """
    if (pixels[-1, 3][where] > 0).all():
        top, same = None, pixels.shape[0] - 1  # the usual case: the top layer covers them all
    else:
        top = _topmost(pixels[:, 3])
        same = _uniform(top, where)
    low = _below(pixels, top, same)
    low_p, low_a = low[:3], low[3]
    t_p, t_a = target[:3], target[3]
    old = _top_values(pixels, top, same)

    opaque_below = low_a >= 1.0 - 1e-6
    # The alpha the colour needs to stay within [0, 1]: darker than L needs a >= 1 - T/L,
    # lighter needs a >= (T - L) / (1 - L); both are <= 0 (nothing needed) otherwise.
    dark = np.maximum(low_p, np.float32(1e-6))
    np.divide(t_p, dark, out=dark)
    np.subtract(ONE, dark, out=dark)
    light = np.subtract(ONE, low_p)
    np.maximum(light, np.float32(1e-6), out=light)
    np.divide(np.subtract(t_p, low_p), light, out=light)
    np.maximum(dark, light, out=dark)
    needed = dark.max(axis=0)
    np.clip(needed, 0.0, 1.0, out=needed)
    needed *= F255
    needed -= np.float32(1e-4)
    np.ceil(needed, out=needed)
    needed /= F255
    free_a = np.maximum(old[3], needed)
    fixed_a = np.subtract(t_a, low_a)
    fixed_a /= np.maximum(ONE - low_a, np.float32(1e-6))
    np.clip(fixed_a, 0.0, 1.0, out=fixed_a)
    alpha = np.where(opaque_below, free_a, _quantize(fixed_a))
    shown = alpha > 0
    colour = (ONE - alpha) * low_p
    np.subtract(t_p, colour, out=colour)
    colour /= np.where(shown, alpha, ONE)
    np.clip(colour, 0.0, 1.0, out=colour)
    np.copyto(colour, old[:3], where=~shown)
    new = np.empty_like(old)
    new[:3] = colour
    new[3] = alpha
    return _set_top(pixels, top, same, _quantize(new), where)


def _replace_top(pixels: np.ndarray, target: np.ndarray, where: np.ndarray) -> set[int]:
    """Step 3: the top layer takes the target pixel; the layers beneath it clear there."""
    top = _topmost(pixels[:, 3])
    below = np.arange(pixels.shape[0])[:, None] < top[None, :]
    np.copyto(pixels[:, 3], ZERO, where=below & where)
    t_a = target[3]
    shown = t_a > 0
    colour = np.where(shown, target[:3] / np.where(shown, t_a, ONE), ZERO)
    new = _quantize(np.concatenate([colour, t_a[None]], axis=0))
    _set_top(pixels, top, None, new, where)
    return set(range(pixels.shape[0]))
