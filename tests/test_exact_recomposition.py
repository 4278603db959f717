"""Exact recomposition (`recomposite_exact`), the safety net of every backend."""

from __future__ import annotations

import numpy as np
import pytest
from layerlift.inference.errors import BadRequest
from layerlift.inference.exact_recomposition import recomposite_exact
from layerlift.inference.layers import Layer, LayerStack, psnr


def _solid(h: int, w: int, rgba: tuple[int, int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgba, np.uint8), (h, w, 4)).copy()


def _max_level_error(stack: LayerStack | np.ndarray, target: np.ndarray) -> int:
    """Largest 8-bit difference of the premultiplied composite against the target."""
    comp = (stack if isinstance(stack, np.ndarray) else stack.composite()).astype(np.float64)
    ref = target.astype(np.float64)
    comp[..., :3] *= comp[..., 3:4] / 255.0
    ref[..., :3] *= ref[..., 3:4] / 255.0
    return int(np.ceil(np.abs(comp - ref).max() - 1e-9))


def test_random_stack_recomposites_to_a_random_picture():
    rng = np.random.default_rng(7)
    h, w = 24, 32
    layers = [rng.integers(0, 256, (h, w, 4), dtype=np.uint8) for _ in range(3)]
    target = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    target[..., 3] = 255
    stack = LayerStack.from_canvases(layers, ["a", "b", "c"])
    fixed, before, after = recomposite_exact(stack, target)
    assert before < 20.0
    assert after >= 50.0
    assert after == pytest.approx(psnr(target, fixed.composite()), abs=1e-6)
    assert _max_level_error(fixed, target) <= 1
    assert [layer.name for layer in fixed] == ["a", "b", "c"]


def test_exact_stack_comes_back_bit_identical():
    h, w = 8, 8
    bottom = _solid(h, w, (10, 120, 200, 255))
    top = np.zeros((h, w, 4), np.uint8)
    top[2:6, 2:6] = (250, 40, 40, 128)
    stack = LayerStack.from_canvases([bottom, top], ["bg", "box"])
    target = stack.composite()
    fixed, before, after = recomposite_exact(stack, target)
    assert before == after == float("inf")
    for old, new in zip(stack.canvases(), fixed.canvases(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_residual_goes_into_the_bottom_where_it_shows():
    """bottom = (target - U_premul) / (1 - U_alpha) under a half-transparent top layer."""
    h, w = 4, 4
    bottom = _solid(h, w, (0, 0, 0, 255))
    top = _solid(h, w, (200, 100, 0, 102))  # alpha 0.4
    target = _solid(h, w, (150, 90, 30, 255))
    stack = LayerStack.from_canvases([bottom, top], ["bg", "veil"])
    fixed, _, after = recomposite_exact(stack, target)
    assert after >= 50.0
    canvases = fixed.canvases()
    np.testing.assert_array_equal(canvases[1], top)  # the object layer is untouched
    a = 102 / 255
    expected = (np.array([150, 90, 30]) / 255 - a * np.array([200, 100, 0]) / 255) / (1 - a)
    got = canvases[0][0, 0, :3] / 255
    np.testing.assert_allclose(got, expected, atol=1.0 / 255)
    assert canvases[0][0, 0, 3] == 255


def test_under_an_opaque_layer_the_top_colour_is_corrected():
    h, w = 4, 6
    bottom = _solid(h, w, (0, 0, 255, 255))
    top = np.zeros((h, w, 4), np.uint8)
    top[:, :3] = (255, 0, 0, 255)
    target = LayerStack.from_canvases([bottom, top], ["bg", "card"]).composite()
    target[:, :3, :3] = (240, 20, 10)  # the card is really a little different
    stack = LayerStack.from_canvases([bottom, top], ["bg", "card"])
    fixed, _, after = recomposite_exact(stack, target)
    assert after >= 50.0
    canvases = fixed.canvases()
    np.testing.assert_array_equal(canvases[0], bottom)  # hidden background kept as it was
    np.testing.assert_array_equal(canvases[1][:, :3, :3], np.full((h, 3, 3), (240, 20, 10)))


def test_a_top_colour_out_of_reach_raises_its_alpha():
    """A top layer at alpha 0.2 over black cannot reach light grey by colour alone."""
    bottom = _solid(2, 2, (0, 0, 0, 255))
    top = _solid(2, 2, (255, 255, 255, 51))
    target = _solid(2, 2, (200, 200, 200, 255))
    # An opaque middle layer covers the bottom, so only the top layer can make the change.
    middle = _solid(2, 2, (0, 0, 0, 255))
    stack = LayerStack.from_canvases([bottom, middle, top], ["bg", "wall", "mist"])
    fixed, _, after = recomposite_exact(stack, target)
    assert after >= 50.0
    top_alpha = fixed.canvases()[2][..., 3]
    assert (top_alpha >= 200).all()


def test_input_alpha_below_255_is_matched():
    h, w = 6, 6
    bottom = _solid(h, w, (30, 60, 90, 255))
    box = np.zeros((h, w, 4), np.uint8)
    box[1:5, 1:5] = (220, 220, 20, 255)
    target = LayerStack.from_canvases([bottom, box], ["bg", "box"]).composite()
    target[0, :, 3] = 0  # a transparent row
    target[5, :, 3] = 128  # a half-transparent row
    target[2, 2, 3] = 0  # a hole through the opaque box
    stack = LayerStack.from_canvases([bottom, box], ["bg", "box"])
    fixed, _, after = recomposite_exact(stack, target)
    assert after >= 50.0
    comp = fixed.composite()
    np.testing.assert_array_equal(comp[..., 3], target[..., 3])
    assert comp[2, 2, 3] == 0


def test_layers_with_offsets_and_hidden_layers():
    h, w = 10, 12
    bottom = Layer("bg", _solid(h, w, (255, 255, 255, 255)))
    dot = Layer("dot", _solid(3, 4, (0, 0, 0, 255)), x=5, y=4)
    hidden = Layer("hidden", _solid(2, 2, (255, 0, 0, 255)), x=1, y=1, visible=False)
    stack = LayerStack(w, h, [bottom, dot, hidden])
    target = _solid(h, w, (255, 255, 255, 255))
    target[4:7, 5:9] = (20, 20, 20, 255)
    target[0, 0] = (0, 255, 0, 255)
    fixed, _, after = recomposite_exact(stack, target)
    assert after >= 50.0
    assert fixed.layers[2] is hidden
    assert (fixed.layers[1].x, fixed.layers[1].y) == (0, 0)
    assert fixed.layers[1].pixels.shape == (h, w, 4)
    np.testing.assert_array_equal(fixed.composite(), target)


def test_bad_calls_raise_bad_request():
    stack = LayerStack.from_canvases([_solid(4, 4, (0, 0, 0, 255))], ["bg"])
    with pytest.raises(BadRequest):
        recomposite_exact(stack, np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(BadRequest):
        recomposite_exact(LayerStack(4, 4, []), np.zeros((4, 4, 4), np.uint8))


def test_rgb_target_and_single_layer():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    stack = LayerStack.from_canvases([_solid(5, 7, (0, 0, 0, 0))], ["only"])
    fixed, _, after = recomposite_exact(stack, target)
    assert after == float("inf")
    np.testing.assert_array_equal(fixed.composite()[..., :3], target)


def _noisy_stack(h: int, w: int, count: int, seed: int) -> tuple[LayerStack, np.ndarray]:
    rng = np.random.default_rng(seed)
    layers = [rng.integers(0, 256, (h, w, 4), dtype=np.uint8) for _ in range(count)]
    for layer in layers[1:]:
        layer[..., 3] = rng.integers(40, 240, (h, w))
    target = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    target[..., 3] = 255
    return LayerStack.from_canvases(layers, [f"l{i}" for i in range(count)]), target


def test_whole_strip_and_gathered_pixels_give_the_same_stack(monkeypatch):
    """The dense path (most pixels miss) and the gathered one must agree bit for bit."""
    from layerlift.inference import exact_recomposition as refine

    stack, target = _noisy_stack(40, 52, 4, 3)
    # Leave most of the picture exact so that the gathered path has a real mix to fix.
    target[8:] = stack.composite()[8:]
    results = []
    for dense in (0.0, 1.01):
        monkeypatch.setattr(refine, "DENSE", dense)
        fixed, before, after = recomposite_exact(stack, target)
        results.append((fixed, before, after))
        assert after >= 50.0
        assert after == pytest.approx(psnr(target, fixed.composite()), abs=1e-6)
    (a, before_a, after_a), (b, before_b, after_b) = results
    assert (before_a, after_a) == (before_b, after_b)
    for one, two in zip(a.canvases(), b.canvases(), strict=True):
        np.testing.assert_array_equal(one, two)


def test_the_input_stack_is_never_changed():
    """Layers may share pixels with others (trimming returns views): correcting copies them."""
    stack, target = _noisy_stack(30, 20, 3, 5)
    trimmed = stack.trimmed()
    copies = [layer.pixels.copy() for layer in trimmed.layers]
    fixed, _, after = recomposite_exact(trimmed, target)
    assert after >= 50.0
    for layer, copy in zip(trimmed.layers, copies, strict=True):
        np.testing.assert_array_equal(layer.pixels, copy)
    for old, new in zip(stack.layers, fixed.layers, strict=True):
        assert not np.shares_memory(old.pixels, new.pixels)


def test_many_strips_and_layers_with_offsets(monkeypatch):
    """Strips much smaller than the picture, and layers that start and end inside them."""
    from layerlift.inference import compose

    monkeypatch.setattr(compose, "STRIP_PIXELS", 64)
    rng = np.random.default_rng(11)
    h, w = 37, 23
    layers = [Layer("bg", rng.integers(0, 256, (h, w, 4), dtype=np.uint8))]
    for index, (x, y, lw, lh) in enumerate([(3, 5, 10, 20), (-4, 30, 15, 12), (12, -6, 11, 9)]):
        pixels = rng.integers(0, 256, (lh, lw, 4), dtype=np.uint8)
        layers.append(Layer(f"part {index}", pixels, x, y))
    stack = LayerStack(w, h, layers)
    target = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    target[: h // 2, :, 3] = 255
    fixed, before, after = recomposite_exact(stack, target)
    assert before == pytest.approx(psnr(target, stack.composite()), abs=1e-6)
    assert after >= 50.0
    assert after == pytest.approx(psnr(target, fixed.composite()), abs=1e-6)
    assert _max_level_error(fixed.composite()[: h // 2], target[: h // 2]) <= 1


def test_in_place_corrects_the_callers_own_canvases():
    stack, target = _noisy_stack(12, 9, 3, 6)
    arrays = [layer.pixels for layer in stack.layers]
    fixed, _, after = recomposite_exact(stack, target, in_place=True)
    assert after >= 50.0
    for array, layer in zip(arrays, fixed.layers, strict=True):
        assert layer.pixels is array  # no copies were made
    assert psnr(target, LayerStack.from_canvases(arrays, ["a", "b", "c"]).composite()) >= 50.0


def test_the_composite_found_on_the_way_is_the_stacks_composite(monkeypatch):
    """What exact recomposition remembers is what flattening the result gives, byte for byte,
    trimmed or not; a changed stack flattens afresh."""
    from dataclasses import replace

    from layerlift.inference import compose

    monkeypatch.setattr(compose, "STRIP_PIXELS", 128)  # several strips, dense and sparse
    stack, target = _noisy_stack(33, 29, 3, 9)
    target[10:] = stack.composite()[10:]
    fixed, _, _ = recomposite_exact(stack, target)
    remembered = fixed.remembered_composite()
    assert remembered is not None
    fresh = compose.composite8(fixed.placed(), fixed.width, fixed.height)
    np.testing.assert_array_equal(remembered, fresh)
    trimmed = fixed.trimmed()
    assert trimmed.remembered_composite() is remembered
    np.testing.assert_array_equal(trimmed.composite(), fresh)
    other = fixed.trimmed()
    other.layers[0] = replace(other.layers[0], visible=False)
    assert other.remembered_composite() is None
    np.testing.assert_array_equal(other.composite(),
                                  compose.composite8(other.placed(), other.width, other.height))
    trimmed.layers[1] = replace(trimmed.layers[1], pixels=trimmed.layers[1].pixels.copy())
    assert trimmed.remembered_composite() is None
