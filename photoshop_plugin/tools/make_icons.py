"""Draw the panel's icons (three stacked layers) at the sizes manifest.json declares.

Run with the project's Python (Pillow): `.venv/bin/python photoshop_plugin/tools/make_icons.py`.
The PNGs are committed; this script exists so they can be redrawn instead of hand-edited.
UXP picks `name@1x.png` / `name@2x.png` for a manifest path `name.png` with scale [1, 2].
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).resolve().parent.parent / "icons"
# name -> (size at 1x, colour of the glyph)
SETS = {
    "panel-dark": (23, (225, 225, 225, 255)),
    "panel-light": (23, (70, 70, 70, 255)),
    "plugin": (48, (47, 128, 237, 255)),
}


def draw(size: int, colour: tuple[int, int, int, int]) -> Image.Image:
    """Three offset sheets, the top one solid: 'a picture lifted into layers'."""
    scale = 8  # draw large, then downsample for smooth edges
    big = size * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    sheet = int(big * 0.58)
    step = int(big * 0.14)
    width = max(scale, big // 16)
    for i in range(3):
        x0 = int(big * 0.08) + i * step
        y0 = int(big * 0.34) - i * step + step
        box = (x0, y0, x0 + sheet, y0 + int(sheet * 0.72))
        radius = big // 14
        if i == 2:
            pen.rounded_rectangle(box, radius, fill=colour)
        else:
            pen.rounded_rectangle(box, radius, outline=colour, width=width)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    ICONS.mkdir(exist_ok=True)
    for name, (size, colour) in SETS.items():
        for factor in (1, 2):
            draw(size * factor, colour).save(ICONS / f"{name}@{factor}x.png", optimize=True)


if __name__ == "__main__":
    main()
