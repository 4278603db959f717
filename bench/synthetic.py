"""Seeded layered designs with exact ground-truth layers, for measuring decomposers.

Real layered data sets (Crello and the like) cannot be shipped or downloaded here, so the
benchmark draws its own: every sample is a short list of full-canvas straight-alpha layers and
the flat picture they composite to. The truth is exact by construction because the picture *is*
the composite, computed with the app's own `LayerStack` maths. Each layer keeps its whole shape,
including what the layers above hide, because that is what a decomposer is asked to recover.

The first four tiers are clean vector-like designs, from easy to hard:

- ``flat``: a flat background and 2-5 opaque flat shapes, anti-aliased, some overlapping.
- ``design``: a gradient background, shapes and one or two text layers (glyph rows in one
  colour, so a decomposer must group many small blobs into one layer).
- ``photo``: a design with a procedurally textured photo insert (a fake landscape) as one layer.
- ``translucent``: shapes at 30-80 % opacity with soft shadows and glows under them.

The next four are closer to real pictures (JPEG artefacts, textures, styled text), added
without changing a byte of the first four:

- ``typography``: two or three text layers in several fonts, sizes and weights (a title, a
  tagline, sometimes a two- or three-line paragraph), some with an outline and some with a drop
  shadow, which belong to the text's own layer as a layer style would; shapes with gradient
  fills and soft shadows of their own.
- ``textured``: the same kind of content on a textured or photographic background (a landscape,
  paper or concrete grain, wood, marble, bokeh), which no flat or gradient model explains.
- ``jpeg``: a sample of ``flat``, ``design``, ``photo``, ``typography`` or ``textured`` saved as
  JPEG at quality 70-95 (4:2:0 chroma), then decoded: ringing and blocks around every edge.
- ``screenshot``: a sample of ``flat``, ``design`` or ``typography`` slightly blurred or
  resampled (down and up again, or up from a smaller render), as screenshots and exports are.

In ``jpeg`` and ``screenshot`` the picture is a degraded copy of the composite of the true
layers (kept as ``Sample.clean``); the layers are the truth a decomposer should still find.
Fonts are DejaVu's when they are installed (Debian's fonts-dejavu-core); without them every
font falls back to Pillow's embedded one, so the generator still works, with less variety.

Everything is a pure function of (tier, seed, size), so two runs score the same samples.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from layerlift.inference.layers import LayerStack, to_uint8
from PIL import Image, ImageDraw, ImageFont, features
from scipy.ndimage import gaussian_filter

CLEAN_TIERS = ("flat", "design", "photo", "translucent", "typography", "textured")
DEGRADED_TIERS = ("jpeg", "screenshot")
TIERS = CLEAN_TIERS + DEGRADED_TIERS
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
    # The exact composite of `layers`; equal to `image` except in the degraded tiers.
    clean: np.ndarray | None = field(default=None, repr=False)
    degradation: str = ""  # e.g. "jpeg q82 from design" in the degraded tiers

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
    base = tier
    if tier in DEGRADED_TIERS:
        bases = _JPEG_BASES if tier == "jpeg" else _SCREENSHOT_BASES
        base = str(bases[int(rng.integers(0, len(bases)))])
    draw = _DRAWERS[base]
    for _ in range(MAX_ATTEMPTS):
        layers, names, roles = draw(rng, width, height)
        if _visible_enough(layers, roles):
            break
    # After MAX_ATTEMPTS the last draw is kept: still deterministic, merely harder.
    clean = LayerStack.from_canvases(layers, names).composite()
    image, degradation = clean, ""
    if tier == "jpeg":
        image, degradation = _jpeg(rng, clean)
    elif tier == "screenshot":
        image, degradation = _screenshot(rng, clean)
    if degradation:
        degradation = f"{degradation} from {base}"
    return Sample(image=image, layers=layers, names=names, tier=tier, seed=int(seed),
                  clean=clean, degradation=degradation)


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


def _draw_typography(rng: np.random.Generator, w: int, h: int) -> Drawn:
    palette: list[RGB] = []
    if rng.random() < 0.5:
        background = _gradient(rng, w, h, palette)
    else:
        background = np.broadcast_to(np.array(_pick_color(rng, palette), np.float32), (h, w, 3))
    return _styled_design(rng, w, h, background, palette)


def _draw_textured(rng: np.random.Generator, w: int, h: int) -> Drawn:
    palette: list[RGB] = []
    background = _texture(rng, w, h)
    # Content colours keep clear of the texture's mean, as a designer's would.
    palette.append(tuple(float(v) for v in background.reshape(-1, 3).mean(axis=0)))
    return _styled_design(rng, w, h, background, palette, text_distance=130.0)


_DRAWERS = {
    "flat": _draw_flat,
    "design": _draw_design,
    "photo": _draw_photo,
    "translucent": _draw_translucent,
    "typography": _draw_typography,
    "textured": _draw_textured,
}
_JPEG_BASES = ("flat", "design", "photo", "typography", "textured")
_SCREENSHOT_BASES = ("flat", "design", "typography")


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


# --- styled content: fonts, outlines, drop shadows, gradient fills ---------------------------

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu",
             "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
# Drawn by index, so the random stream is the same whichever fonts are installed.
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSansCondensed-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSans-ExtraLight.ttf",
)
TAGLINES = (
    "limited offer", "join us today", "free entry", "all week long", "new collection",
    "book your seat", "doors open at eight", "handmade with care", "only this weekend",
)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _font_path(index: int) -> str | None:
    name = FONT_FILES[index % len(FONT_FILES)]
    for folder in FONT_DIRS:
        path = Path(folder) / name
        if path.is_file():
            return str(path)
    return None


@functools.lru_cache(maxsize=64)
def _styled_font(index: int, pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont | None:
    path = _font_path(index)
    if path is not None and features.check("freetype2"):
        return ImageFont.truetype(path, pixels)
    return _font(pixels)


def _render_styled(text: str, font_index: int, pixels: int, stroke: int) -> tuple[np.ndarray, ...]:
    """(outer, fill) tight alpha masks of `text`; outer includes an outline `stroke` px wide."""
    font = _styled_font(font_index, pixels)
    if font is None:
        fill = _render_text(text, pixels)
        outer = fill
        if stroke:
            outer = np.clip(gaussian_filter(fill, stroke * 0.6) * 3.0, fill, 1.0)
        return outer, fill
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    size = (right - left + 2, bottom - top + 2)
    origin = (1 - left, 1 - top)
    outer = Image.new("L", size, 0)
    ImageDraw.Draw(outer).text(origin, text, fill=255, font=font, stroke_width=stroke,
                               stroke_fill=255)
    fill = Image.new("L", size, 0)
    ImageDraw.Draw(fill).text(origin, text, fill=255, font=font)
    return np.asarray(outer, np.float32) / 255.0, np.asarray(fill, np.float32) / 255.0


def _styled_text(
    rng: np.random.Generator,
    w: int,
    h: int,
    lines: list[str],
    pixels: int,
    band: tuple[float, float],
    colour: RGB,
    outline: RGB | None,
    shadow: tuple[float, float, float, float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One text layer: lines in one font, an optional outline and drop shadow (rgb, alpha).

    `shadow` is (dx, dy, sigma, opacity) in units of the font size; the shadow is part of the
    text's layer, as a layer style is in an editor.
    """
    font_index = int(rng.integers(0, len(FONT_FILES)))
    align = int(rng.integers(0, 3))

    def render(px: int) -> tuple[np.ndarray, np.ndarray]:
        stroke = max(1, round(px * 0.06)) if outline is not None else 0
        rows = [_render_styled(line, font_index, px, stroke) for line in lines]
        gap = max(1, round(0.3 * px))
        width = max(r[0].shape[1] for r in rows)
        height = sum(r[0].shape[0] for r in rows) + gap * (len(rows) - 1)
        outer = np.zeros((height, width), np.float32)
        fill = np.zeros((height, width), np.float32)
        y = 0
        for o, f in rows:
            x = (0, (width - o.shape[1]) // 2, width - o.shape[1])[align]
            outer[y : y + o.shape[0], x : x + o.shape[1]] = o
            fill[y : y + f.shape[0], x : x + f.shape[1]] = f
            y += o.shape[0] + gap
        return outer, fill

    outer, fill = render(pixels)
    while (outer.shape[1] > 0.9 * w or outer.shape[0] > 0.45 * h) and pixels > 6:
        scale = min(0.9 * w / outer.shape[1], 0.45 * h / outer.shape[0], 0.95)
        pixels = max(6, int(pixels * scale))
        outer, fill = render(pixels)
    outer, fill = outer[:h, :w], fill[:h, :w]
    gh, gw = outer.shape
    x = int(rng.integers(0, w - gw + 1))
    top, bottom = int(band[0] * h), int(band[1] * h)
    y = int(np.clip(rng.integers(top, max(top, bottom - gh) + 1), 0, h - gh))
    a_outer = np.zeros((h, w), np.float32)
    a_fill = np.zeros((h, w), np.float32)
    a_outer[y : y + gh, x : x + gw] = outer
    a_fill[y : y + gh, x : x + gw] = fill
    rgb = np.empty((h, w, 3), np.float32)
    rgb[...] = np.array(colour, np.float32)
    if outline is not None:
        # Fill over outline: where only the outline covers, the colour is the outline's.
        share = np.where(a_outer > 0, a_fill / np.maximum(a_outer, 1e-6), 1.0)[..., None]
        rgb = share * rgb + (1.0 - share) * np.array(outline, np.float32)
    alpha = a_outer
    if shadow is not None:
        dx, dy, sigma, opacity = shadow
        moved = _shift(a_outer, round(dx * pixels), round(dy * pixels))
        shade = gaussian_filter(moved, max(0.5, sigma * pixels)) * opacity
        rgb, alpha = _over(rgb, alpha, np.zeros(3, np.float32) + 0.05, shade)
    return rgb, alpha


def _shift(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`mask` moved by (dx, dy) pixels, zero where it came from outside."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


def _over(
    top_rgb: np.ndarray, top_a: np.ndarray, low_rgb: np.ndarray, low_a: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Straight-alpha `top over low` of two float layers (rgb broadcastable to (h, w, 3))."""
    out_a = top_a + low_a * (1.0 - top_a)
    premul = top_rgb * top_a[..., None] + low_rgb * (low_a * (1.0 - top_a))[..., None]
    rgb = premul / np.maximum(out_a, 1e-6)[..., None]
    return np.clip(rgb, 0.0, 1.0), out_a


def _styled_shapes(
    rng: np.random.Generator, w: int, h: int, count: int, palette: list[RGB],
    layers: list[np.ndarray], names: list[str], roles: list[str],
) -> None:
    """Shapes with linear gradient fills, some with a soft drop shadow in their own layer."""
    side = min(w, h)
    for index, shape in enumerate(_place_shapes(rng, w, h, count, cluster=False)):
        start = np.array(_pick_color(rng, palette), np.float32)
        delta = rng.uniform(-0.25, 0.25, 3).astype(np.float32)
        end = np.clip(start + delta, 0.0, 1.0)
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xs - shape.cx) * math.cos(angle) + (ys - shape.cy) * math.sin(angle)
        t = np.clip(t / (2 * max(shape.rx, shape.ry)) + 0.5, 0.0, 1.0)[..., None]
        rgb = start * (1.0 - t) + end * t
        alpha = _shape_alpha(shape, w, h)
        if rng.random() < 0.6:
            offset = rng.uniform(0.01, 0.035, size=2) * side
            moved = _shape_alpha(shape.moved(*offset), w, h)
            shade = gaussian_filter(moved, rng.uniform(0.006, 0.02) * side, mode="constant")
            rgb, alpha = _over(rgb, alpha, np.zeros(3, np.float32) + 0.08,
                               shade * rng.uniform(0.3, 0.6))
        layers.append(_layer(rgb, alpha))
        names.append(f"{shape.kind} {index + 1}")
        roles.append("shape")


def _styled_design(
    rng: np.random.Generator, w: int, h: int, background: np.ndarray, palette: list[RGB],
    text_distance: float = 110.0,
) -> Drawn:
    """Background, 0-2 styled shapes, then two or three styled text layers."""
    layers = [_layer(background, np.ones((h, w)))]
    names, roles = ["background"], ["background"]
    _styled_shapes(rng, w, h, int(rng.integers(0, 3)), palette, layers, names, roles)
    texts = [("title", 0.1, 0.17, " ".join(str(x) for x in rng.choice(WORDS, size=2)))]
    texts.append(("tagline", 0.05, 0.08, str(rng.choice(TAGLINES))))
    if rng.random() < 0.5:
        words = [str(x) for x in rng.choice(WORDS, size=int(rng.integers(6, 10)))]
        cut = int(rng.integers(2, 4))
        rows = [" ".join(words[k::cut]) for k in range(cut)]
        texts.append(("paragraph", 0.035, 0.05, "\n".join(rows)))
    bands = [(0.03, 0.3), (0.36, 0.62), (0.68, 0.97)]
    order = rng.permutation(len(bands))
    for (name, lo, hi, text), band_index in zip(texts, order, strict=False):
        upper = rng.random() < 0.4
        text = text.upper() if upper else text.capitalize()
        colour = _pick_color(rng, palette, text_distance)
        outline = None
        if name == "title" and rng.random() < 0.5:
            outline = _pick_color(rng, palette, 60.0)
        shadow = None
        if rng.random() < 0.4:
            shadow = (float(rng.uniform(0.03, 0.08)) * float(rng.choice([-1, 1])),
                      float(rng.uniform(0.03, 0.08)), float(rng.uniform(0.02, 0.08)),
                      float(rng.uniform(0.35, 0.7)))
        rgb, alpha = _styled_text(
            rng, w, h, text.split("\n"), max(6, round(rng.uniform(lo, hi) * h)),
            bands[int(band_index)], colour, outline, shadow,
        )
        layers.append(_layer(rgb, alpha))
        names.append(name)
        roles.append("text")
    return layers, names, roles


# --- textured and photographic backgrounds -----------------------------------------------------

TEXTURES = ("landscape", "grain", "wood", "marble", "bokeh")


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A full-canvas textured background, (h, w, 3) float in [0, 1]."""
    kind = TEXTURES[int(rng.integers(0, len(TEXTURES)))]
    side = min(w, h)
    if kind == "landscape":
        image = _landscape(rng, w, h)
    elif kind == "grain":  # paper, concrete: two tones mixed by fractal noise
        a, b = rng.uniform(0.3, 0.95, 3), rng.uniform(0.3, 0.95, 3)
        t = _smooth_noise(rng, h, w, int(rng.integers(4, 12)), octaves=4)[..., None]
        image = a * (1 - t) + b * t
    elif kind == "wood":
        light = rng.uniform(0.55, 0.85) * np.array([1.0, 0.72, 0.45])
        dark = light * rng.uniform(0.5, 0.75)
        ys = np.mgrid[0:h, 0:w][0].astype(np.float32) / side
        warp = _smooth_noise(rng, h, w, 4, octaves=2) * rng.uniform(1.0, 3.0)
        rings = 0.5 + 0.5 * np.sin((ys * rng.uniform(8, 20) + warp) * 2 * math.pi)
        t = (rings**2)[..., None]
        image = light * (1 - t) + dark * t
    elif kind == "marble":
        base = rng.uniform(0.7, 0.95, 3)
        vein = base * rng.uniform(0.3, 0.6)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) / side
        turb = _smooth_noise(rng, h, w, 5, octaves=4) * rng.uniform(3.0, 6.0)
        angle = rng.uniform(0, math.pi)
        v = np.abs(np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 6.0 + turb))
        t = (1.0 - v) ** 6
        image = base * (1 - t[..., None]) + vein * t[..., None]
    else:  # bokeh: soft discs of light over a dark gradient, a blurred photo's background
        low = rng.uniform(0.0, 0.3, 3)
        high = rng.uniform(0.1, 0.45, 3)
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        image = np.broadcast_to(low * (1 - t) + high * t, (h, w, 3)).copy()
        light = np.zeros((h, w, 3), np.float32)
        for _ in range(int(rng.integers(12, 30))):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(0.03, 0.1) * side
            x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
            y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
            if x1 <= x0 or y1 <= y0:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            disc = np.clip((r - np.hypot(xs - cx, ys - cy)) / (0.25 * r), 0.0, 1.0)
            tint = rng.uniform(0.15, 0.45) * rng.uniform(0.5, 1.0, 3)
            light[y0:y1, x0:x1] += disc[..., None] * tint.astype(np.float32)
        image = np.clip(image + light, 0.0, 1.0)
    # Fine grain, as a camera sensor (or paper) leaves: a few levels of per-pixel noise.
    grain = rng.normal(0.0, rng.uniform(1.0, 4.0) / 255.0, (h, w, 1)).astype(np.float32)
    return np.clip(np.asarray(image, np.float32) + grain, 0.0, 1.0)


# --- degradations: JPEG, screenshots -----------------------------------------------------------


def jpeg_round_trip(clean: np.ndarray, quality: int) -> np.ndarray:
    """`clean` (opaque RGBA8) saved as JPEG at `quality` by libjpeg and decoded (RGBA8)."""
    buffer = io.BytesIO()
    Image.fromarray(clean[..., :3]).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return _opaque(np.asarray(Image.open(buffer).convert("RGB")))


def _jpeg(rng: np.random.Generator, clean: np.ndarray) -> tuple[np.ndarray, str]:
    """`clean` (opaque RGBA8) saved as JPEG at quality 70-95 and decoded."""
    quality = int(rng.integers(70, 96))
    return jpeg_round_trip(clean, quality), f"jpeg q{quality}"


def _screenshot(rng: np.random.Generator, clean: np.ndarray) -> tuple[np.ndarray, str]:
    """`clean` slightly blurred, or resampled down and up again, as screenshots are."""
    h, w = clean.shape[:2]
    image = Image.fromarray(clean[..., :3])
    mode = int(rng.integers(0, 3))
    if mode == 0:
        sigma = float(rng.uniform(0.4, 0.9))
        rgb = gaussian_filter(np.asarray(image, np.float32), (sigma, sigma, 0))
        return _opaque(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)), f"blur {sigma:.2f}"
    scale = float(rng.uniform(0.55, 0.85))
    small = (max(8, round(w * scale)), max(8, round(h * scale)))
    filters = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
    down = filters[int(rng.integers(0, 3))]
    up = filters[int(rng.integers(0, 3))]
    rgb = np.asarray(image.resize(small, down).resize((w, h), up))
    return _opaque(rgb), f"resampled x{scale:.2f}"


def _opaque(rgb: np.ndarray) -> np.ndarray:
    out = np.empty((*rgb.shape[:2], 4), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = 255
    return out


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
