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
recomposites exactly comes back bit-identical. The work runs in horizontal strips so a
4096 x 4096 picture with ten layers stays within a few hundred megabytes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from layerlift.inference.errors import BadRequest
from layerlift.inference.layers import Layer, LayerStack, as_rgba8, psnr

# Layers above the bottom one whose combined alpha is at most this leave it "visible": the
# bottom is solved there. Above it a residual would be amplified more than 20x.
BOTTOM_SOLVE_MAX_ALPHA = 0.95
# A pixel is "exact" when every premultiplied channel is within this of the target (0-1 units):
# a little more than the half level that rounding to 8 bits may cost.
TOLERANCE = 0.75 / 255.0
# Pixels processed per strip (bounds the float working set: layers x pixels x 4 x 4 bytes).
STRIP_PIXELS = 1 << 19


def recomposite_exact(stack: LayerStack, image: np.ndarray) -> tuple[LayerStack, float, float]:
    """Correct `stack` so that it composites to `image`; return (stack, psnr_before, psnr_after).

    `image` is the (h, w, 3|4) uint8 picture the stack was made from (straight alpha, which
    may be below 255). The returned stack holds full-canvas layers at offset (0, 0) with the
    names, visibility and meta of the input layers; hidden layers are left as they were and
    take no part. PSNR figures compare `stack.composite()` with `image`, as `psnr` does.
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

    canvases = {i: stack.layers[i].on_canvas(stack.width, stack.height) for i in visible}
    planes = [canvases[i] for i in visible]
    spans = [_alpha_span(plane) for plane in planes]
    rows = max(1, STRIP_PIXELS // max(stack.width, 1))
    sse_before = sse_after = 0.0
    for top in range(0, stack.height, rows):
        sse = _correct_strip(planes, spans, top, min(stack.height, top + rows), target)
        sse_before += sse[0]
        sse_after += sse[1]

    layers: list[Layer] = []
    for index, layer in enumerate(stack.layers):
        if index in canvases:
            layers.append(replace(layer, pixels=canvases[index], x=0, y=0, meta=dict(layer.meta)))
        else:
            layers.append(layer)
    result = LayerStack(stack.width, stack.height, layers, dict(stack.meta))
    values = 4.0 * stack.width * stack.height
    return result, _psnr(sse_before, values), _psnr(sse_after, values)


def _psnr(sse: float, values: float) -> float:
    """PSNR from a summed squared error, as `inference.layers.psnr` defines it."""
    if sse <= 0.0:
        return float("inf")
    return 10.0 * float(np.log10(values / sse))


# --- per-strip maths ---------------------------------------------------------------------------
# Layer values are straight alpha in [0, 1], bottom first. Only the pixels that miss the target
# are gathered, as (n, k, 4) arrays, and solved; everything else stays bit-identical.

Span = tuple[int, int, int, int]  # rows and columns that hold a layer's non-zero alpha


def _quantize(values: np.ndarray) -> np.ndarray:
    """Round to the 8-bit grid the layers will be stored on, staying in float."""
    return np.clip(np.rint(values * 255.0), 0.0, 255.0) / 255.0


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def _premul(layer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha = layer[..., 3]
    return layer[..., :3] * alpha[..., None], alpha


def _over_premul(
    dst_p: np.ndarray, dst_a: np.ndarray, src_p: np.ndarray, src_a: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied `src over dst`."""
    keep = 1.0 - src_a
    return src_p + dst_p * keep[..., None], src_a + dst_a * keep


def _composite(pixels: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied composite of pixels[start:] (layers first), over transparency."""
    shape = pixels.shape[1:-1]
    out_p = np.zeros((*shape, 3), np.float32)
    out_a = np.zeros(shape, np.float32)
    for layer in pixels[start:]:
        src_p, src_a = _premul(layer)
        out_p, out_a = _over_premul(out_p, out_a, src_p, src_a)
    return out_p, out_a


def _alpha_span(plane: np.ndarray) -> Span | None:
    alpha = plane[..., 3]
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _strip_composite(
    planes: list[np.ndarray], spans: list[Span | None], top: int, bottom: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied composite of rows top:bottom, touching each layer only where it has alpha."""
    out_p = np.zeros((bottom - top, width, 3), np.float32)
    out_a = np.zeros((bottom - top, width), np.float32)
    for plane, span in zip(planes, spans, strict=True):
        if span is None or span[1] <= top or span[0] >= bottom:
            continue
        r0, r1 = max(span[0], top), min(span[1], bottom)
        c0, c1 = span[2], span[3]
        src_p, src_a = _premul(plane[r0:r1, c0:c1].astype(np.float32) / 255.0)
        view = (slice(r0 - top, r1 - top), slice(c0, c1))
        out_p[view], out_a[view] = _over_premul(out_p[view], out_a[view], src_p, src_a)
    return out_p, out_a


def _misses(
    out_p: np.ndarray, out_a: np.ndarray, target_p: np.ndarray, target_a: np.ndarray
) -> np.ndarray:
    """Where a composite misses the target by more than rounding."""
    err = np.maximum(np.abs(out_p - target_p).max(axis=-1), np.abs(out_a - target_a))
    return err > TOLERANCE


def _off(pixels: np.ndarray, target_p: np.ndarray, target_a: np.ndarray) -> np.ndarray:
    """Which gathered pixels (n, k, 4) still miss the target."""
    out_p, out_a = _composite(pixels)
    return _misses(out_p, out_a, target_p, target_a)


def _correct_strip(
    planes: list[np.ndarray],
    spans: list[Span | None],
    top: int,
    bottom: int,
    target: np.ndarray,
) -> tuple[float, float]:
    """Fix rows top:bottom of the uint8 `planes` in place, only at the pixels that miss.

    Returns the summed squared error of the rows' composite before and after, measured as
    `inference.layers.psnr` measures it (8-bit straight composite, compared premultiplied).
    """
    goal = target[top:bottom].astype(np.float32) / 255.0
    goal_p, goal_a = _premul(goal)
    out_p, out_a = _strip_composite(planes, spans, top, bottom, goal.shape[1])
    errors = _squared_errors(out_p, out_a, goal_p, goal_a)
    before = float(errors.sum(dtype=np.float64))
    off = _misses(out_p, out_a, goal_p, goal_a)
    if not off.any():
        return before, before
    ys, xs = np.nonzero(off)
    ys = ys + top
    pixels = np.stack([plane[ys, xs] for plane in planes]).astype(np.float32) / 255.0
    t_p, t_a, t = goal_p[off], goal_a[off], goal[off]
    if len(planes) > 1:
        _solve_bottom(pixels, t_p, t_a)
    for step in (_solve_top, _replace_top):
        still = _off(pixels, t_p, t_a)
        if not still.any():
            break
        part = pixels[:, still]
        step(part, t_p[still], t_a[still], t[still])
        pixels[:, still] = part
    stored = _to_uint8(pixels)
    for plane, values in zip(planes, stored, strict=True):
        plane[ys, xs] = values
    new_p, new_a = _composite(stored.astype(np.float32) / 255.0)
    fixed = _squared_errors(new_p, new_a, t_p, t_a)
    after = before - float(errors[off].sum(dtype=np.float64)) + float(fixed.sum(dtype=np.float64))
    return before, after


def _squared_errors(
    out_p: np.ndarray, out_a: np.ndarray, target_p: np.ndarray, target_a: np.ndarray
) -> np.ndarray:
    """Per-pixel squared error of a premultiplied composite once stored as 8-bit straight."""
    safe = np.where(out_a > 0, out_a, 1.0)
    straight = np.where(out_a[..., None] > 0, out_p / safe[..., None], 0.0)
    alpha = _quantize(out_a)
    shown = _quantize(straight) * alpha[..., None]
    return ((shown - target_p) ** 2).sum(axis=-1) + (alpha - target_a) ** 2


def _solve_bottom(pixels: np.ndarray, t_p: np.ndarray, t_a: np.ndarray) -> None:
    """Step 1: solve the bottom layer where the layers above leave it visible (in place)."""
    upper_p, upper_a = _composite(pixels, start=1)
    where = upper_a <= BOTTOM_SOLVE_MAX_ALPHA
    if not where.any():
        return
    free = 1.0 - upper_a[where]
    alpha = np.clip((t_a[where] - upper_a[where]) / free, 0.0, 1.0)
    colour_p = (t_p[where] - upper_p[where]) / free[:, None]
    bottom = pixels[0][where]
    safe = np.where(alpha > 0, alpha, 1.0)
    colour = np.where(alpha[:, None] > 0, np.clip(colour_p / safe[:, None], 0.0, 1.0),
                      bottom[:, :3])
    bottom[:, :3] = colour
    bottom[:, 3] = alpha
    pixels[0][where] = _quantize(bottom)


def _topmost(alphas: np.ndarray) -> np.ndarray:
    """Index of the topmost layer with alpha > 0 per pixel (0 when none); alphas (n, k)."""
    present = alphas > 0
    flipped = np.argmax(present[::-1], axis=0)
    top = alphas.shape[0] - 1 - flipped
    return np.where(present.any(axis=0), top, 0)


def _below(pixels: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied composite, per pixel, of the layers under its `top` layer."""
    count = pixels.shape[1]
    out_p = np.zeros((count, 3), np.float32)
    out_a = np.zeros(count, np.float32)
    for index, layer in enumerate(pixels):
        use = index < top
        src_p, src_a = _premul(layer)
        src_a = np.where(use, src_a, 0.0)
        src_p = np.where(use[:, None], src_p, 0.0)
        out_p, out_a = _over_premul(out_p, out_a, src_p, src_a)
    return out_p, out_a


def _solve_top(pixels: np.ndarray, t_p: np.ndarray, t_a: np.ndarray, _: np.ndarray) -> None:
    """Step 2: solve the topmost visible layer's colour (and alpha if it must), in place.

    With L the composite beneath the top layer: ``a + (1 - a) L_a = T_a`` fixes the top alpha
    `a` unless L is opaque; then `a` is free and is raised only as far as the colour
    ``c = (T_p - (1 - a) L_p) / a`` needs to stay within [0, 1].
    """
    top = _topmost(pixels[..., 3])
    low_p, low_a = _below(pixels, top)
    idx = np.arange(pixels.shape[1])
    current_a = pixels[top, idx, 3]

    opaque_below = low_a >= 1.0 - 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        fixed_a = (t_a - low_a) / np.maximum(1.0 - low_a, 1e-6)
        need_dark = np.where(t_p < low_p, 1.0 - t_p / np.maximum(low_p, 1e-6), 0.0)
        need_light = np.where(t_p > low_p, (t_p - low_p) / np.maximum(1.0 - low_p, 1e-6), 0.0)
    needed = np.maximum(need_dark, need_light).max(axis=-1)
    needed = np.ceil(np.clip(needed, 0.0, 1.0) * 255.0 - 1e-4) / 255.0
    free_a = np.maximum(current_a, needed)
    alpha = np.where(opaque_below, free_a, _quantize(np.clip(fixed_a, 0.0, 1.0)))
    safe = np.where(alpha > 0, alpha, 1.0)
    colour = (t_p - (1.0 - alpha)[:, None] * low_p) / safe[:, None]
    old = pixels[top, idx]
    colour = np.where(alpha[:, None] > 0, np.clip(colour, 0.0, 1.0), old[:, :3])
    pixels[top, idx] = _quantize(np.concatenate([colour, alpha[:, None]], axis=-1))


def _replace_top(pixels: np.ndarray, _p: np.ndarray, _a: np.ndarray, target: np.ndarray) -> None:
    """Step 3: the top layer takes the target pixel; the layers beneath it clear there."""
    top = _topmost(pixels[..., 3])
    idx = np.arange(pixels.shape[1])
    below = np.arange(pixels.shape[0])[:, None] < top[None, :]
    pixels[..., 3] = np.where(below, 0.0, pixels[..., 3])
    pixels[top, idx] = _quantize(target)
