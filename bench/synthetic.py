"""Seeded layered designs with exact ground-truth layers, for measuring decomposers.

Real layered data sets (Crello and the like) cannot be shipped or downloaded here, so the
benchmark draws its own: every sample is a short list of full-canvas straight-alpha layers and
the flat picture they composite to. The truth is exact by construction because the picture *is*
the composite, computed with the app's own `LayerStack` maths. Each layer keeps its whole shape,
including what the layers above hide, because that is what a decomposer is asked to recover.

Four tiers, from easy to hard:

- ``flat``: a flat background and 2-5 opaque flat shapes, anti-aliased, some overlapping.
- ``design``: a gradient background, shapes and one or two text layers (glyph rows in one
  colour, so a decomposer must group many small blobs into one layer).
- ``photo``: a design with a procedurally textured photo insert (a fake landscape) as one layer.
- ``translucent``: shapes at 30-80 % opacity with soft shadows and glows under them.

Everything is a pure function of (tier, seed, size), so two runs score the same samples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from layerlift.inference.layers import LayerStack, to_uint8
from PIL import Image, ImageDraw, ImageFont, features
from scipy.ndimage import gaussian_filter

TIERS = ("flat", "design", "photo", "translucent")
SHAPE_KINDS = ("rectangle", "ellipse", "rounded rectangle", "polygon")
# Shapes are drawn this many times larger and box-filtered down: PIL draws aliased edges, and
# real designs have soft ones, which is exactly what alpha estimation must get right.
SUPERSAMPLE = 4
MIN_SIDE, MAX_SIDE = 16, 4096
# A layer mostly hidden by the ones above cannot be recovered from the picture; samples are
# redrawn until every layer shows at least this share of its alpha.
MIN_VISIBLE = {"shape": 0.3, "effect": 0.15, "photo": 0.4, "text": 0.5}
MAX_ATTEMPTS = 40
WORDS = (
    "sale", "summer", "open", "studio", "fresh", "market", "night", "coffee", "design",
    "event", "music", "garden", "today", "new", "art", "book", "club", "week", "live", "city",
)  # fmt: skip

RGB = tuple[float, float, float]


@dataclass
class Sample:
    """One synthetic picture and its true layers (full canvas, straight alpha, bottom first)."""

    image: np.ndarray
    layers: list[np.ndarray]
    names: list[str]
    tier: str
    seed: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order `make_sample` takes it in."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True)
class _Shape:
    """Geometry of one shape, kept so a shadow can redraw it displaced."""

    kind: str
    cx: float
    cy: float
    rx: float
    ry: float
    radius: float = 0.0  # corner radius of a rounded rectangle
    points: tuple[tuple[float, float], ...] = ()  # polygon vertices relative to the centre

    def moved(self, dx: float, dy: float) -> _Shape:
        return _Shape(self.kind, self.cx + dx, self.cy + dy, self.rx, self.ry, self.radius,
                      self.points)


def make_sample(tier: str, seed: int, size: tuple[int, int] = (256, 256)) -> Sample:
    """Draw sample `seed` of `tier` at `size` = (width, height); same arguments, same bytes."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of: {', '.join(TIERS)}")
    width, height = _check_size(size)
    rng = np.random.default_rng([int(seed) % 2**63, TIERS.index(tier), width, height])
    draw = _DRAWERS[tier]
    for _ in range(MAX_ATTEMPTS):
        layers, names, roles = draw(rng, width, height)
        if _visible_enough(layers, roles):
            break
    # After MAX_ATTEMPTS the last draw is kept: still deterministic, merely harder.
    image = LayerStack.from_canvases(layers, names).composite()
    return Sample(image=image, layers=layers, names=names, tier=tier, seed=int(seed))


def iter_samples(
    tier: str, count: int, size: tuple[int, int] = (256, 256), base_seed: int = 0
) -> Iterator[Sample]:
    """Samples `base_seed`, `base_seed + 1`, ... of one tier, drawn lazily."""
    for index in range(count):
        yield make_sample(tier, base_seed + index, size)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ValueError(f"each side must be {MIN_SIDE}..{MAX_SIDE} px, got {width}x{height}")
    return width, height


# --- tiers -----------------------------------------------------------------------------------

Drawn = tuple[list[np.ndarray], list[str], list[str]]


def _draw_flat(rng: np.random.Generator, w: int, h: int) -> Drawn:
    palette: list[RGB] = []
    bg = _pick_color(rng, palette)
    layers = [_layer(np.broadcast_to(np.array(bg, np.float32), (h, w, 3)), np.ones((h, w)))]
    names, roles = ["background"], ["background"]
    _add_shapes(rng, w, h, int(rng.integers(2, 6)), palette, layers, names, roles)
    return layers, names, roles


def _draw_design(rng: np.random.Generator, w: int, h: int, photo: bool = False) -> Drawn:
    palette: list[RGB] = []
    layers = [_layer(_gradient(rng, w, h, palette), np.ones((h, w)))]
    names, roles = ["background"], ["background"]
    if photo:
        pixels, alpha = _photo_insert(rng, w, h)
        layers.append(_layer(pixels, alpha))
        names.append("photo")
        roles.append("photo")
    _add_shapes(rng, w, h, int(rng.integers(1, 3 if photo else 4)), palette, layers, names, roles)
    lines = [("title", 0.09, 0.14, (1, 3))]
    if rng.random() < 0.6:
        lines.append(("caption", 0.05, 0.075, (3, 6)))
    bands = [(0.04, 0.3), (0.72, 0.92)] if rng.random() < 0.5 else [(0.7, 0.88), (0.05, 0.25)]
    for (name, lo, hi, words), band in zip(lines, bands, strict=False):
        alpha = _text_alpha(rng, w, h, rng.uniform(lo, hi), words, band)
        layers.append(_layer(np.array(_pick_color(rng, palette, 110.0)), alpha))
        names.append(name)
        roles.append("text")
    return layers, names, roles


def _draw_photo(rng: np.random.Generator, w: int, h: int) -> Drawn:
    return _draw_design(rng, w, h, photo=True)


def _draw_translucent(rng: np.random.Generator, w: int, h: int) -> Drawn:
    palette: list[RGB] = []
    if rng.random() < 0.5:
        background = _gradient(rng, w, h, palette)
    else:
        background = np.broadcast_to(np.array(_pick_color(rng, palette), np.float32), (h, w, 3))
    layers = [_layer(background, np.ones((h, w)))]
    names, roles = ["background"], ["background"]
    shapes = _place_shapes(rng, w, h, int(rng.integers(2, 5)), cluster=True)
    effects = dict.fromkeys(
        rng.choice(len(shapes), size=int(rng.integers(1, 3)), replace=False).tolist(), ""
    )
    for index in effects:
        effects[index] = "shadow" if rng.random() < 0.55 else "glow"
    side = min(w, h)
    for index, shape in enumerate(shapes):
        name = f"{shape.kind} {index + 1}"
        coverage = _shape_alpha(shape, w, h)
        effect = effects.get(index)
        if effect == "shadow":
            offset = rng.uniform(0.02, 0.05, size=2) * side * rng.choice([-1, 1], size=2)
            sigma = rng.uniform(0.015, 0.04) * side
            moved = _shape_alpha(shape.moved(*offset), w, h)
            alpha = gaussian_filter(moved, sigma, mode="constant") * rng.uniform(0.4, 0.7)
            tint = np.array(_pick_color(rng, []), np.float32) * 0.25
            layers.append(_layer(tint, alpha))
            names.append(f"shadow of {name}")
            roles.append("effect")
        elif effect == "glow":
            sigma = rng.uniform(0.02, 0.05) * side
            alpha = np.clip(gaussian_filter(coverage, sigma, mode="constant") * 1.7, 0.0, 1.0)
            alpha = alpha * rng.uniform(0.5, 0.8)
            glow = 0.55 + 0.45 * np.array(_pick_color(rng, []), np.float32)
            layers.append(_layer(glow, alpha))
            names.append(f"glow of {name}")
            roles.append("effect")
        opacity = rng.uniform(0.3, 0.8)
        layers.append(_layer(np.array(_pick_color(rng, palette)), coverage * opacity))
        names.append(name)
        roles.append("shape")
    return layers, names, roles


_DRAWERS = {
    "flat": _draw_flat,
    "design": _draw_design,
    "photo": _draw_photo,
    "translucent": _draw_translucent,
}


# --- shapes ----------------------------------------------------------------------------------


def _add_shapes(
    rng: np.random.Generator,
    w: int,
    h: int,
    count: int,
    palette: list[RGB],
    layers: list[np.ndarray],
    names: list[str],
    roles: list[str],
) -> None:
    for index, shape in enumerate(_place_shapes(rng, w, h, count, cluster=False)):
        color = np.array(_pick_color(rng, palette), np.float32)
        layers.append(_layer(color, _shape_alpha(shape, w, h)))
        names.append(f"{shape.kind} {index + 1}")
        roles.append("shape")


def _place_shapes(
    rng: np.random.Generator, w: int, h: int, count: int, cluster: bool
) -> list[_Shape]:
    """Random shapes; the second always overlaps the first, later ones often overlap some other.

    Overlaps are what make decomposition hard (hidden parts to fill, an order to find), so
    they are guaranteed rather than left to chance.
    """
    side = min(w, h)
    shapes: list[_Shape] = []
    for index in range(count):
        kind = str(rng.choice(SHAPE_KINDS))
        rx = rng.uniform(0.1, 0.26) * side
        ry = rx * rng.uniform(0.6, 1.6)
        if index > 0 and (index == 1 or cluster or rng.random() < 0.5):
            anchor = shapes[int(rng.integers(0, index))]
            cx = anchor.cx + rng.uniform(-0.8, 0.8) * anchor.rx
            cy = anchor.cy + rng.uniform(-0.8, 0.8) * anchor.ry
        else:
            cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        cx, cy = float(np.clip(cx, 0.1 * w, 0.9 * w)), float(np.clip(cy, 0.1 * h, 0.9 * h))
        radius = rng.uniform(0.15, 0.45) * min(rx, ry) if kind == "rounded rectangle" else 0.0
        points: tuple[tuple[float, float], ...] = ()
        if kind == "polygon":
            corners = int(rng.integers(3, 9))
            step = 2 * math.pi / corners
            turn = rng.uniform(0, step)
            points = tuple(
                (
                    math.cos(turn + k * step + rng.uniform(-0.3, 0.3) * step)
                    * rx * rng.uniform(0.65, 1.0),
                    math.sin(turn + k * step + rng.uniform(-0.3, 0.3) * step)
                    * ry * rng.uniform(0.65, 1.0),
                )
                for k in range(corners)
            )
        shapes.append(_Shape(kind, cx, cy, float(rx), float(ry), float(radius), points))
    return shapes


def _shape_alpha(shape: _Shape, w: int, h: int) -> np.ndarray:
    """Coverage in [0, 1] of `shape`, drawn supersampled and box-filtered for soft edges."""
    s = SUPERSAMPLE
    mask = Image.new("L", (w * s, h * s), 0)
    draw = ImageDraw.Draw(mask)
    box = [
        (shape.cx - shape.rx) * s,
        (shape.cy - shape.ry) * s,
        (shape.cx + shape.rx) * s - 1,
        (shape.cy + shape.ry) * s - 1,
    ]
    if shape.kind == "rectangle":
        draw.rectangle(box, fill=255)
    elif shape.kind == "ellipse":
        draw.ellipse(box, fill=255)
    elif shape.kind == "rounded rectangle":
        draw.rounded_rectangle(box, radius=max(1, round(shape.radius * s)), fill=255)
    else:
        draw.polygon([((shape.cx + px) * s, (shape.cy + py) * s) for px, py in shape.points],
                     fill=255)
    small = mask.resize((w, h), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


# --- colour, gradients, text, photo ----------------------------------------------------------


def _pick_color(rng: np.random.Generator, palette: list[RGB], distance: float = 70.0) -> RGB:
    """A colour at least `distance` (0-255 RGB units) from every colour in `palette`, added to it.

    Distinct colours keep the task well posed: two touching shapes of one colour are one
    region in the picture, and no decomposer could be blamed for merging them.
    """
    for _ in range(60):
        color = rng.uniform(0, 255, size=3)
        if all(np.linalg.norm(color - np.array(c) * 255.0) >= distance for c in palette):
            break
        distance *= 0.97  # crowded palette: relax slowly rather than loop forever
    result = (float(color[0] / 255.0), float(color[1] / 255.0), float(color[2] / 255.0))
    palette.append(result)
    return result


def _gradient(rng: np.random.Generator, w: int, h: int, palette: list[RGB]) -> np.ndarray:
    """A linear or radial two-colour gradient, (h, w, 3) float; both colours join `palette`."""
    start = np.array(_pick_color(rng, palette), np.float32)
    end = np.array(_pick_color(rng, palette, 40.0), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * math.pi)
        t = xs * math.cos(angle) + ys * math.sin(angle)
    else:
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        t = np.hypot(xs - cx, ys - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return start * (1.0 - t[..., None]) + end * t[..., None]


@functools.lru_cache(maxsize=32)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont | None:
    """Pillow's embedded font at `pixels` size, or None to use the bitmap fallback."""
    if features.check("freetype2"):
        return ImageFont.load_default(size=pixels)
    return None


def _render_text(text: str, pixels: int) -> np.ndarray:
    """Tight alpha mask in [0, 1] of `text` about `pixels` tall, with no font file involved."""
    font = _font(pixels)
    if font is None:
        # Without FreeType only the tiny bitmap font exists: draw it and scale it up.
        bitmap = ImageFont.load_default()
        left, top, right, bottom = bitmap.getbbox(text)
        image = Image.new("L", (right - left + 2, bottom - top + 2), 0)
        ImageDraw.Draw(image).text((1 - left, 1 - top), text, fill=255, font=bitmap)
        scale = pixels / max(bottom - top, 1)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BILINEAR,
        )
        return np.asarray(image, np.float32) / 255.0
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(image).text((1 - left, 1 - top), text, fill=255, font=font)
    return np.asarray(image, np.float32) / 255.0


def _text_alpha(
    rng: np.random.Generator,
    w: int,
    h: int,
    relative_size: float,
    words: tuple[int, int],
    band: tuple[float, float],
) -> np.ndarray:
    """A row of words in one layer: many small separate blobs that belong together."""
    count = int(rng.integers(words[0], words[1] + 1))
    chosen = [str(word) for word in rng.choice(WORDS, size=count)]
    upper = rng.random() < 0.5
    pixels = max(6, round(relative_size * h))

    def render() -> np.ndarray:
        text = " ".join(chosen)
        return _render_text(text.upper() if upper else text.capitalize(), pixels)

    glyphs = render()
    # Shrink to fit 90 % of the width; on tiny canvases drop words rather than cut glyphs.
    while glyphs.shape[1] > 0.9 * w and (pixels > 6 or len(chosen) > 1):
        if pixels > 6:
            pixels = max(6, int(pixels * 0.9 * w / glyphs.shape[1]))
        else:
            chosen.pop()
        glyphs = render()
    glyphs = glyphs[:h, :w]
    gh, gw = glyphs.shape
    x = int(rng.integers(0, w - gw + 1))
    top, bottom = int(band[0] * h), int(band[1] * h)
    y = int(np.clip(rng.integers(top, max(top, bottom - gh) + 1), 0, h - gh))
    alpha = np.zeros((h, w), np.float32)
    alpha[y : y + gh, x : x + gw] = glyphs
    return alpha


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, octaves: int = 3):
    """Fractal value noise in [0, 1], (h, w): random grids upscaled bicubically and summed."""
    total = np.zeros((h, w), np.float32)
    weight = 0.0
    for octave in range(octaves):
        n = cells * 2**octave
        grid = rng.random((n + 1, n + 1)).astype(np.float32)
        layer = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
        amplitude = 0.5**octave
        total += amplitude * np.asarray(layer, np.float32)
        weight += amplitude
    return np.clip(total / weight, 0.0, 1.0)


def _photo_insert(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A fake landscape photo in an opaque rectangle: (rgb (h, w, 3), alpha (h, w))."""
    pw = max(8, int(rng.uniform(0.35, 0.6) * w))
    ph = max(8, int(rng.uniform(0.3, 0.5) * h))
    x0 = int(rng.integers(0, w - pw + 1))
    y0 = int(rng.integers(0, h - ph + 1))
    photo = _landscape(rng, pw, ph)
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    rgb[y0 : y0 + ph, x0 : x0 + pw] = photo
    alpha[y0 : y0 + ph, x0 : x0 + pw] = 1.0
    return rgb, alpha


def _landscape(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Sky, clouds, an optional sun, two mountain ridges and textured ground, (h, w, 3) float."""
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    sunset = rng.random() < 0.35
    top = np.array([0.95, 0.55, 0.3] if sunset else [0.2, 0.4, 0.8], np.float32)
    low = np.array([1.0, 0.85, 0.55] if sunset else [0.7, 0.85, 0.97], np.float32)
    top = np.clip(top + rng.uniform(-0.1, 0.1, 3), 0, 1)
    horizon = rng.uniform(0.45, 0.65)
    t = np.clip(ys / horizon, 0.0, 1.0)[..., None]
    image = np.broadcast_to(top * (1 - t) + low * t, (h, w, 3)).copy()
    clouds = np.clip((_smooth_noise(rng, h, w, 3) - 0.55) * 4.0, 0.0, 1.0)[..., None]
    clouds *= np.clip(1.0 - ys / horizon, 0.0, 1.0)[..., None]
    image = image * (1 - clouds * 0.8) + clouds * 0.8
    if rng.random() < 0.6:
        sx, sy = rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.35) * horizon
        sr = rng.uniform(0.05, 0.1)
        dist = np.hypot((xs - sx) * w, (ys - sy) * h) / (sr * min(w, h))
        sun = np.clip(1.5 - dist, 0.0, 1.0)[..., None]
        image = image * (1 - sun) + np.array([1.0, 0.95, 0.75], np.float32) * sun
    ridges = [
        (horizon - 0.22, 0.25, np.array([0.45, 0.5, 0.62], np.float32), 4),
        (horizon - 0.05, 0.12, np.array([0.22, 0.42, 0.2], np.float32), 6),
    ]
    for base, amplitude, color, cells in ridges:
        line = base + amplitude * (1.0 - 2.0 * _smooth_noise(rng, 1, w, cells)[0])
        cover = np.clip((ys - line[None, :]) * h + 0.5, 0.0, 1.0)[..., None]
        texture = 0.75 + 0.5 * _smooth_noise(rng, h, w, 12, octaves=2)[..., None]
        shade = np.clip(color * texture * (1.0 - 0.3 * ys[..., None]), 0.0, 1.0)
        image = image * (1 - cover) + shade * cover
    return np.clip(image, 0.0, 1.0)


# --- layers ----------------------------------------------------------------------------------


def _layer(rgb: np.ndarray | tuple[float, ...], alpha: np.ndarray) -> np.ndarray:
    """A (h, w, 4) uint8 straight-alpha layer; colour is zeroed where alpha rounds to 0."""
    alpha8 = to_uint8(np.clip(np.asarray(alpha, np.float32), 0.0, 1.0))
    h, w = alpha8.shape
    rgb8 = to_uint8(np.broadcast_to(np.asarray(rgb, np.float32), (h, w, 3)))
    layer = np.concatenate([rgb8, alpha8[..., None]], axis=2)
    layer[alpha8 == 0, :3] = 0
    return layer


def visible_fractions(layers: list[np.ndarray]) -> list[float]:
    """Share of each layer's alpha that shows through the layers above it in the composite."""
    cover_above = np.zeros(layers[0].shape[:2], np.float32)  # alpha of everything above
    out = []
    for layer in reversed(layers):
        alpha = layer[..., 3].astype(np.float32) / 255.0
        total = float(alpha.sum())
        out.append(float((alpha * (1.0 - cover_above)).sum()) / total if total > 0 else 0.0)
        cover_above = cover_above + alpha * (1.0 - cover_above)
    return out[::-1]


def _visible_enough(layers: list[np.ndarray], roles: list[str]) -> bool:
    fractions = visible_fractions(layers)
    return all(
        role == "background" or fraction >= MIN_VISIBLE[role]
        for fraction, role in zip(fractions, roles, strict=True)
    )
