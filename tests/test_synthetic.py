"""The synthetic benchmark: deterministic samples whose layers are an exact decomposition."""

from __future__ import annotations

import numpy as np
import pytest
from layerlift.inference.backends.base import MAX_LAYERS
from layerlift.inference.layers import LayerStack, psnr
from scipy import ndimage

from bench.synthetic import (
    CLEAN_TIERS,
    DEGRADED_TIERS,
    TIERS,
    Sample,
    iter_samples,
    make_sample,
    visible_fractions,
)

SMALL = (64, 64)
SEEDS = range(4)


@pytest.mark.parametrize("tier", TIERS)
def test_same_arguments_give_the_same_bytes(tier):
    a = make_sample(tier, 5, SMALL)
    b = make_sample(tier, 5, SMALL)
    assert a.names == b.names
    assert np.array_equal(a.image, b.image)
    assert all(np.array_equal(x, y) for x, y in zip(a.layers, b.layers, strict=True))
    assert not np.array_equal(a.image, make_sample(tier, 6, SMALL).image)


def test_old_tiers_come_first_and_are_kept():
    assert TIERS[:4] == ("flat", "design", "photo", "translucent")
    assert set(TIERS) == set(CLEAN_TIERS) | set(DEGRADED_TIERS)


def test_tiers_differ_for_the_same_seed():
    images = [make_sample(tier, 0, SMALL).image for tier in TIERS]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])


@pytest.mark.parametrize("tier", CLEAN_TIERS)
def test_layers_recompose_the_image_exactly(tier):
    for seed in SEEDS:
        sample = make_sample(tier, seed, SMALL)
        composite = LayerStack.from_canvases(sample.layers, sample.names).composite()
        assert np.array_equal(composite, sample.image)
        assert np.array_equal(composite, sample.clean)
        assert psnr(sample.image, composite) == float("inf")
        assert (sample.image[..., 3] == 255).all()
        assert sample.degradation == ""


@pytest.mark.parametrize("tier", DEGRADED_TIERS)
def test_degraded_tiers_are_a_close_copy_of_the_exact_composite(tier):
    kinds = set()
    for seed in range(8):
        sample = make_sample(tier, seed, (96, 96))
        composite = LayerStack.from_canvases(sample.layers, sample.names).composite()
        assert np.array_equal(composite, sample.clean)
        assert not np.array_equal(sample.image, sample.clean)
        assert 22.0 <= psnr(sample.image, sample.clean) < float("inf"), sample.degradation
        assert (sample.image[..., 3] == 255).all()
        kinds.add(sample.degradation.split()[0])
        assert sample.degradation.split()[-1] in CLEAN_TIERS
    assert kinds == ({"jpeg"} if tier == "jpeg" else {"blur", "resampled"})


def test_jpeg_quality_stays_in_the_issue_range():
    for seed in range(12):
        quality = int(make_sample("jpeg", seed, SMALL).degradation.split()[1][1:])
        assert 70 <= quality <= 95


def test_typography_has_styled_text_in_one_layer_each():
    styled = outlined = 0
    for seed in range(8):
        sample = make_sample("typography", seed, (256, 256))
        assert {"title", "tagline"} <= set(sample.names)
        for name in ("title", "tagline", "paragraph"):
            if name not in sample.names:
                continue
            layer = sample.layers[sample.names.index(name)]
            alpha = layer[..., 3]
            _, blobs = ndimage.label(alpha > 0)
            assert blobs >= 3 or (alpha < 255).sum() > 0.5 * (alpha > 0).sum()
            colours = len(np.unique(layer[alpha == 255, :3], axis=0))
            styled += colours > 1 or (alpha[alpha > 0] < 128).mean() > 0.4
            outlined += colours > 1
    assert styled >= 3 and outlined >= 1


def test_textured_background_is_not_flat():
    for seed in SEEDS:
        sample = make_sample("textured", seed, (128, 128))
        background = sample.layers[0][..., :3].astype(np.float32)
        rough = np.abs(np.diff(background, axis=1)).mean()
        assert rough > 0.5  # grain at least: no flat or smooth gradient model explains it


@pytest.mark.parametrize("tier", TIERS)
def test_layers_are_full_canvas_with_an_opaque_background(tier):
    for seed in SEEDS:
        sample = make_sample(tier, seed, SMALL)
        assert isinstance(sample, Sample)
        assert (sample.tier, sample.seed) == (tier, seed)
        assert 3 <= len(sample.layers) <= MAX_LAYERS
        assert len(sample.names) == len(sample.layers) == len(set(sample.names))
        assert sample.names[0] == "background"
        for pixels in sample.layers:
            assert pixels.shape == (64, 64, 4)
            assert pixels.dtype == np.uint8
            assert pixels[..., 3].any()
            # Straight alpha with no stray colour where nothing is drawn.
            assert not pixels[pixels[..., 3] == 0, :3].any()
        assert (sample.layers[0][..., 3] == 255).all()
        # Every layer shows enough of itself to be recoverable from the picture.
        assert min(visible_fractions(sample.layers)[1:]) >= 0.1


def test_layers_keep_the_parts_hidden_by_layers_above():
    for seed in SEEDS:
        layers = make_sample("flat", seed, SMALL).layers
        # The second shape always overlaps the first; the first keeps the covered part.
        first, second = layers[1][..., 3], layers[2][..., 3]
        assert ((first == 255) & (second == 255)).any()


def test_sizes_are_width_by_height():
    sample = make_sample("photo", 2, (96, 40))
    assert sample.image.shape == (40, 96, 4)
    assert sample.size == (96, 40)
    assert all(layer.shape == (40, 96, 4) for layer in sample.layers)
    assert make_sample("flat", 0).image.shape == (256, 256, 4)
    assert make_sample("design", 0, (16, 16)).image.shape == (16, 16, 4)


def test_shapes_have_anti_aliased_edges():
    alpha = make_sample("flat", 1, SMALL).layers[1][..., 3]
    partial = (alpha > 0) & (alpha < 255)
    assert partial.any()
    assert (alpha == 255).sum() > partial.sum()


def test_design_text_is_many_blobs_of_one_colour():
    for seed in SEEDS:
        sample = make_sample("design", seed, (256, 256))
        title = sample.layers[sample.names.index("title")]
        alpha = title[..., 3]
        _, blobs = ndimage.label(alpha > 0)
        assert blobs >= 3
        assert len(np.unique(title[alpha > 0, :3], axis=0)) == 1
        # Text sits above the shapes.
        assert sample.names.index("title") > max(
            i for i, n in enumerate(sample.names) if n == "background" or n[-1].isdigit()
        )


def test_photo_insert_is_one_textured_opaque_rectangle():
    for seed in SEEDS:
        sample = make_sample("photo", seed, SMALL)
        photo = sample.layers[sample.names.index("photo")]
        alpha = photo[..., 3]
        rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
        box = alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert (box == 255).all()
        assert len(np.unique(photo[alpha > 0, :3], axis=0)) > 50


def test_translucent_shapes_and_soft_effects():
    saw_effect = False
    for seed in SEEDS:
        sample = make_sample("translucent", seed, SMALL)
        for name, pixels in zip(sample.names[1:], sample.layers[1:], strict=True):
            peak = int(pixels[..., 3].max())
            if name.startswith(("shadow", "glow")):
                saw_effect = True
                assert len(np.unique(pixels[..., 3])) > 20  # a soft falloff, not an edge
            else:
                assert round(0.3 * 255) <= peak <= round(0.8 * 255)
        effects = [n for n in sample.names if n.startswith(("shadow", "glow"))]
        assert 1 <= len(effects) <= 2
    assert saw_effect


def test_iter_samples_counts_from_the_base_seed():
    samples = list(iter_samples("flat", 3, SMALL, base_seed=10))
    assert [s.seed for s in samples] == [10, 11, 12]
    assert np.array_equal(samples[1].image, make_sample("flat", 11, SMALL).image)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="tier"):
        make_sample("poster", 0)
    with pytest.raises(ValueError, match="px"):
        make_sample("flat", 0, (8, 64))
    with pytest.raises(ValueError, match="size"):
        make_sample("flat", 0, (64,))


def test_styled_text_works_without_font_files(monkeypatch):
    import bench.synthetic as synthetic

    monkeypatch.setattr(synthetic, "FONT_DIRS", ())
    synthetic._font_path.cache_clear()
    synthetic._styled_font.cache_clear()
    try:
        sample = make_sample("typography", 1, (128, 128))
        title = sample.layers[sample.names.index("title")]
        assert title[..., 3].any()
    finally:
        synthetic._font_path.cache_clear()
        synthetic._styled_font.cache_clear()
