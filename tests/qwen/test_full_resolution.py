"""Bringing low-resolution layers back to full resolution (inference.full_resolution)."""

from __future__ import annotations

import numpy as np
import pytest
from layerlift.inference.exact_recomposition import recomposite_exact
from layerlift.inference.full_resolution import restore_layers, upsample_alpha
from layerlift.inference.layers import LayerStack, psnr
from PIL import Image


def _scene(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(picture, background layer, disc layer): a red disc with a hard edge on blue."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < (size * 0.3) ** 2
    picture = np.zeros((size, size, 4), np.uint8)
    picture[...] = (30, 60, 200, 255)
    picture[disc] = (220, 40, 40, 255)
    background = picture.copy()
    background[...] = (30, 60, 200, 255)
    fg = np.zeros_like(picture)
    fg[disc] = picture[disc]
    return picture, background, fg


def _resized(canvas: np.ndarray, size: int) -> np.ndarray:
    """Plain premultiplied Lanczos scaling to size x size: what restoring must beat."""
    premul = canvas.astype(np.float32) / 255.0
    premul[..., :3] *= premul[..., 3:4]
    out = np.stack([np.asarray(Image.fromarray(premul[..., c], mode="F").resize(
        (size, size), Image.Resampling.LANCZOS)) for c in range(4)], axis=-1)
    out = np.clip(out, 0.0, 1.0)
    alpha = out[..., 3:4]
    out[..., :3] = np.where(alpha > 0, out[..., :3] / np.maximum(alpha, 1e-6), 0.0)
    return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def _down(layer: np.ndarray, size: int) -> np.ndarray:
    """Premultiplied downscale, as a model's clean low-resolution output would be."""
    return _resized(layer, size)


def test_restored_layers_beat_plain_upscaling():
    picture, background, fg = _scene(384)
    low = [_down(background, 96), _down(fg, 96)]
    naive = LayerStack.from_canvases([_resized(layer, 384) for layer in low], ["a", "b"])
    restored = restore_layers(low, picture)
    assert [layer.shape for layer in restored] == [(384, 384, 4)] * 2
    stack = LayerStack.from_canvases(restored, ["a", "b"])
    assert psnr(picture, stack.composite()) > psnr(picture, naive.composite()) + 6
    # The disc's alpha edge snaps to the picture's edge: far less error than bicubic.
    plain_alpha = naive.layers[1].pixels[..., 3].astype(float)
    error_plain = np.abs(plain_alpha - fg[..., 3]).mean()
    error_guided = np.abs(restored[1][..., 3].astype(float) - fg[..., 3]).mean()
    assert error_guided < error_plain * 0.6


def test_alpha_stays_zero_far_from_the_layer():
    picture, _, fg = _scene(256)
    low = _down(fg, 64)[..., 3].astype(np.float32) / 255.0
    guide = picture[..., :3].astype(np.float32) / 255.0
    alpha = upsample_alpha(low, guide)
    assert alpha.dtype == np.float32 and alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert alpha[:20, :20].max() == 0.0  # a corner far from the disc


def test_refinement_then_makes_the_stack_exact():
    picture, background, fg = _scene(200)
    # A model that got the disc's colour wrong: refinement must still recomposite exactly.
    wrong = fg.copy()
    wrong[fg[..., 3] > 0, :3] = (200, 200, 0)
    low = [_down(background, 80), _down(wrong, 80)]
    stack = LayerStack.from_canvases(restore_layers(low, picture), ["a", "b"])
    exact, before, after = recomposite_exact(stack, picture)
    assert after >= before
    assert psnr(picture, exact.composite()) == pytest.approx(after, abs=1e-3)
    assert after > 45


def test_same_size_and_downscale():
    picture, background, fg = _scene(120)
    same = restore_layers([background, fg], picture)
    assert np.array_equal(same[1][..., 3], fg[..., 3])
    small = np.asarray(Image.fromarray(picture).resize((60, 60), Image.Resampling.BOX))
    down = restore_layers([background, fg], small)
    assert down[0].shape == (60, 60, 4)


def test_bad_input():
    with pytest.raises(ValueError):
        restore_layers([], np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        restore_layers([np.zeros((4, 4, 4), np.uint8), np.zeros((5, 5, 4), np.uint8)],
                       np.zeros((8, 8, 4), np.uint8))
