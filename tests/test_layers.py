"""The stack maths every backend, format and client relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from layerlift.inference.layers import Layer, LayerStack, composite_over, psnr, to_float, to_uint8


def _solid(h: int, w: int, rgba: tuple[int, int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgba, np.uint8), (h, w, 4)).copy()


def test_over_matches_porter_duff_by_hand():
    dst = to_float(np.array([[[0, 0, 255, 255]]], np.uint8))
    src = to_float(np.array([[[255, 0, 0, 128]]], np.uint8))
    out = composite_over(dst, src)
    a = 128 / 255
    assert out[0, 0, 3] == pytest.approx(1.0)
    assert out[0, 0, 0] == pytest.approx(a)
    assert out[0, 0, 2] == pytest.approx(1 - a)


def test_over_two_translucent_layers_straight_alpha():
    dst = np.array([[[0.0, 1.0, 0.0, 0.5]]], np.float32)
    src = np.array([[[1.0, 0.0, 0.0, 0.5]]], np.float32)
    out = composite_over(dst, src)
    assert out[0, 0, 3] == pytest.approx(0.75)
    # premultiplied red 0.5, green 0.25 -> straight = /0.75
    assert out[0, 0, 0] == pytest.approx(0.5 / 0.75)
    assert out[0, 0, 1] == pytest.approx(0.25 / 0.75)


def test_over_fully_transparent_source_keeps_destination():
    dst = np.random.default_rng(0).random((4, 4, 4)).astype(np.float32)
    src = np.zeros((4, 4, 4), np.float32)
    np.testing.assert_allclose(composite_over(dst, src), np.where(dst[..., 3:4] > 0, dst, 0))


def test_stack_composite_honours_offsets_and_order():
    bottom = Layer("bg", _solid(4, 6, (10, 20, 30, 255)))
    top = Layer("red", _solid(2, 2, (255, 0, 0, 255)), x=3, y=1)
    stack = LayerStack(6, 4, [bottom, top])
    out = stack.composite()
    assert out.shape == (4, 6, 4)
    assert tuple(out[1, 3]) == (255, 0, 0, 255)
    assert tuple(out[2, 4]) == (255, 0, 0, 255)
    assert tuple(out[0, 0]) == (10, 20, 30, 255)
    assert tuple(out[1, 2]) == (10, 20, 30, 255)
    # Swap the order: the red square disappears under the opaque background.
    assert tuple(LayerStack(6, 4, [top, bottom]).composite()[1, 3]) == (10, 20, 30, 255)


def test_layer_partly_outside_the_canvas_is_clipped():
    layer = Layer("edge", _solid(3, 3, (1, 2, 3, 255)), x=-1, y=2)
    canvas = layer.on_canvas(4, 4)
    assert canvas[..., 3].sum() == 255 * 2 * 2
    stack = LayerStack(4, 4, [layer])
    assert stack.composite()[3, 1, 3] == 255
    assert stack.composite()[0, 0, 3] == 0


def test_hidden_layers_do_not_composite():
    stack = LayerStack(2, 2, [Layer("a", _solid(2, 2, (9, 9, 9, 255)), visible=False)])
    assert stack.composite()[..., 3].max() == 0
    assert stack.composite(visible_only=False)[..., 3].min() == 255


def test_trim_keeps_canvas_position_and_pixels():
    pixels = np.zeros((10, 12, 4), np.uint8)
    pixels[3:6, 4:9] = (50, 60, 70, 200)
    layer = Layer("blob", pixels, x=5, y=7)
    trimmed = layer.trimmed()
    assert (trimmed.x, trimmed.y, trimmed.width, trimmed.height) == (9, 10, 5, 3)
    np.testing.assert_array_equal(trimmed.on_canvas(30, 30), layer.on_canvas(30, 30))


def test_trim_of_empty_layer_is_zero_sized_and_keeps_name():
    trimmed = Layer("nothing", np.zeros((5, 5, 4), np.uint8)).trimmed()
    assert (trimmed.width, trimmed.height, trimmed.name) == (0, 0, "nothing")
    assert LayerStack(5, 5, [trimmed]).composite()[..., 3].max() == 0


def test_trimmed_stack_composites_identically():
    rng = np.random.default_rng(3)
    canvases = []
    for _ in range(3):
        canvas = np.zeros((20, 30, 4), np.uint8)
        y0, x0 = rng.integers(0, 10, 2)
        canvas[y0 : y0 + 8, x0 : x0 + 15] = rng.integers(0, 256, (8, 15, 4), dtype=np.uint8)
        canvases.append(canvas)
    stack = LayerStack.from_canvases(canvases, ["a", "b", "c"])
    np.testing.assert_array_equal(stack.composite(), stack.trimmed().composite())


def test_replace_layer_inserts_sub_stack_in_place():
    canvases = [_solid(2, 2, (i, i, i, 255)) for i in range(3)]
    stack = LayerStack.from_canvases(canvases, ["a", "b", "c"])
    sub = LayerStack.from_canvases([_solid(2, 2, (7, 7, 7, 255))] * 2, ["b1", "b2"])
    assert [layer.name for layer in stack.replace_layer(1, sub)] == ["a", "b1", "b2", "c"]
    with pytest.raises(IndexError):
        stack.replace_layer(3, sub)


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert math.isinf(psnr(a, a))
    b = a.copy()
    b[0, 0, 0] = 255
    assert psnr(a, b) == pytest.approx(10 * math.log10(48), rel=1e-6)
    with pytest.raises(ValueError):
        psnr(a, np.zeros((2, 2, 3), np.uint8))


def test_psnr_ignores_hidden_colour_under_zero_alpha():
    a = np.zeros((2, 2, 4), np.uint8)
    b = a.copy()
    b[..., :3] = 200  # colour nobody can see
    assert math.isinf(psnr(a, b))


def test_rounding_roundtrip_is_exact():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(4, axis=2)
    np.testing.assert_array_equal(to_uint8(to_float(values)), values)


def test_bad_pixels_are_rejected():
    with pytest.raises(TypeError):
        Layer("f", np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError):
        Layer("g", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError):
        LayerStack.from_canvases([np.zeros((2, 2, 4), np.uint8), np.zeros((3, 2, 4), np.uint8)],
                                 ["a", "b"])


def _composite_by_hand(stack: LayerStack) -> np.ndarray:
    """Straight-alpha `over`, one layer after the other on a float canvas: the definition."""
    out = np.zeros((stack.height, stack.width, 4), np.float32)
    for layer in stack.layers:
        if layer.visible and layer.width and layer.height:
            canvas = to_float(layer.on_canvas(stack.width, stack.height))
            out = composite_over(out, canvas)
    return to_uint8(out)


def test_fast_composite_matches_porter_duff_in_strips(monkeypatch):
    """The strip-wise premultiplied compositor gives Porter-Duff `over`, to rounding."""
    from layerlift.inference import compose

    rng = np.random.default_rng(4)
    layers = [Layer("bg", rng.integers(0, 256, (31, 45, 4), dtype=np.uint8))]
    layers += [Layer(f"l{i}", rng.integers(0, 256, (17, 20, 4), dtype=np.uint8), 7 * i - 3,
                     9 * i - 4) for i in range(4)]
    layers.append(Layer("hidden", rng.integers(0, 256, (5, 5, 4), dtype=np.uint8), 2, 2,
                        visible=False))
    stack = LayerStack(45, 31, layers)
    for strip in (50, 1 << 15):
        monkeypatch.setattr(compose, "STRIP_PIXELS", strip)
        fast = stack.composite().astype(int)
        assert np.abs(fast - _composite_by_hand(stack).astype(int)).max() <= 1
        np.testing.assert_allclose(stack.composite_float(), to_float(stack.composite()),
                                   atol=0.5 / 255 + 1e-6)


def test_trimming_a_tight_layer_again_copies_nothing():
    pixels = np.zeros((50, 60, 4), np.uint8)
    pixels[10:20, 5:9] = 200
    trimmed = Layer("x", pixels).trimmed()
    assert (trimmed.x, trimmed.y, trimmed.width, trimmed.height) == (5, 10, 4, 10)
    assert trimmed.pixels.flags.c_contiguous and not np.shares_memory(trimmed.pixels, pixels)
    again = trimmed.trimmed()
    assert (again.x, again.y) == (5, 10) and np.shares_memory(again.pixels, trimmed.pixels)
