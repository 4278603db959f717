"""Make the bundled example pictures (deterministic; run `make examples` to rebuild them).

They are drawn here rather than downloaded so their licence is ours and so the tests know what
is in them: a flat poster (gradient, overlapping shapes, text), a slide with a photo insert, and a
small logo. Shapes are drawn at 4x and box-filtered down, which gives real anti-aliased edges.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
SS = 4  # supersampling factor


Colour = tuple[int, int, int]


def _gradient(width: int, height: int, top: Colour, bottom: Colour) -> Image.Image:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    colours = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return Image.fromarray(np.repeat(colours, width, axis=1).round().astype(np.uint8), "RGB")


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _downsample(big: Image.Image) -> Image.Image:
    return big.resize((big.width // SS, big.height // SS), Image.Resampling.BOX)


def _star(cx: float, cy: float, outer: float, inner: float, points: int = 5) -> list[tuple]:
    angles = np.linspace(-np.pi / 2, 3 * np.pi / 2, 2 * points, endpoint=False)
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]


def make_poster() -> Image.Image:
    """A flat summer-sale poster: gradient sky, a sun half behind a card, a star, text."""
    w, h = 480 * SS, 640 * SS
    img = _gradient(w, h, (255, 214, 140), (250, 120, 90))
    draw = ImageDraw.Draw(img)
    draw.ellipse([60 * SS, 90 * SS, 300 * SS, 330 * SS], fill=(255, 243, 92))  # sun
    draw.rounded_rectangle([170 * SS, 250 * SS, 440 * SS, 470 * SS], radius=28 * SS,
                           fill=(40, 70, 160))  # card, covers part of the sun
    draw.polygon(_star(380 * SS, 130 * SS, 60 * SS, 26 * SS), fill=(255, 255, 255))
    draw.text((200 * SS, 300 * SS), "SUMMER", font=_font(44 * SS), fill=(255, 255, 255))
    draw.text((200 * SS, 370 * SS), "SALE 50%", font=_font(40 * SS), fill=(255, 214, 90))
    draw.rectangle([0, 560 * SS, w, h], fill=(30, 30, 50))  # footer band
    draw.text((40 * SS, 585 * SS), "layerlift.example", font=_font(22 * SS), fill=(240, 240, 240))
    return _downsample(img)


def _landscape(width: int, height: int, seed: int) -> Image.Image:
    """A procedural 'photo': sky gradient, noisy hills and grain, so it has real texture."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    sky = np.stack([0.45 + 0.3 * y, 0.65 + 0.2 * y, 0.95 - 0.1 * y], -1) * np.ones((1, width, 1))
    ridge = 0.55 + 0.08 * np.sin(6.0 * x + 1.3) + 0.04 * np.sin(17.0 * x)
    hills = (y > ridge)[..., None]
    ground = np.stack([0.25 + 0.2 * y, 0.45 + 0.15 * y, 0.2 + 0.05 * y], -1)
    ground = ground * np.ones((1, width, 1))
    photo = np.where(hills, ground, sky)
    photo += rng.normal(0.0, 0.035, photo.shape).astype(np.float32)
    image = Image.fromarray((np.clip(photo, 0, 1) * 255).round().astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(0.6))


def make_photo_card() -> Image.Image:
    """A slide: flat background, a photo insert, a title and a badge overlapping the photo."""
    w, h = 640 * SS, 400 * SS
    img = Image.new("RGB", (w, h), (246, 244, 238))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, w, 12 * SS], fill=(200, 60, 60))
    draw.text((32 * SS, 40 * SS), "Trip report", font=_font(40 * SS), fill=(30, 30, 30))
    draw.text((32 * SS, 100 * SS), "Three days in the hills", font=_font(22 * SS),
              fill=(90, 90, 90))
    big = _downsample(img)
    photo = _landscape(300, 220, seed=7)
    big.paste(photo, (310, 140))
    overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(overlay).ellipse([560 * SS, 110 * SS, 630 * SS, 180 * SS],
                                    fill=(230, 80, 40, 255))
    badge = _downsample(overlay)
    big = Image.alpha_composite(big.convert("RGBA"), badge).convert("RGB")
    return big


def make_logo() -> Image.Image:
    """A small logo: two overlapping shapes and a word on white."""
    w, h = 320 * SS, 320 * SS
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.ellipse([40 * SS, 40 * SS, 200 * SS, 200 * SS], fill=(0, 150, 136))
    draw.rectangle([130 * SS, 100 * SS, 280 * SS, 220 * SS], fill=(255, 152, 0))
    draw.text((60 * SS, 240 * SS), "ORBIT", font=_font(44 * SS), fill=(33, 33, 33))
    return _downsample(img)


EXAMPLES = {
    "poster.png": make_poster,
    "photo_card.png": make_photo_card,
    "logo.png": make_logo,
}


def main(out_dir: Path = HERE) -> None:
    for name, make in EXAMPLES.items():
        path = out_dir / name
        make().save(path, optimize=True)
        print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
