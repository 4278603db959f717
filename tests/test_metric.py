"""The LayerD score: hand-built cases whose numbers can be worked out on paper."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from layerlift.inference.layers import LayerStack

from bench.layerd_metric import (
    dtw_path,
    evaluate,
    occlusion_groups,
    over,
    recomposition_psnr,
    rgb_l1,
    soft_iou,
    to_planar,
)
from bench.synthetic import make_sample

REPO = Path(__file__).resolve().parent.parent
SIZE = 32
RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)


def layer(color=RED, box=None, alpha=255, size=SIZE) -> np.ndarray:
    """A full-canvas layer: `color` at `alpha` inside box (x0, y0, x1, y1), transparent outside."""
    out = np.zeros((size, size, 4), np.uint8)
    x0, y0, x1, y1 = box if box is not None else (0, 0, size, size)
    out[y0:y1, x0:x1, :3] = color
    out[y0:y1, x0:x1, 3] = alpha
    return out


def background(color=GREY) -> np.ndarray:
    return layer(color)


def total_cost(result: dict) -> np.ndarray:
    return (np.array(result["rgb_l1"]) + 1.0 - np.array(result["soft_iou"])) / 2.0


def test_identical_lists_score_perfectly_at_every_merge_count():
    sample = make_sample("translucent", 3, (64, 64))
    result = evaluate(sample.layers, sample.layers)
    assert result["rgb_l1"] == [0.0] * 6
    assert result["soft_iou"] == [1.0] * 6
    assert result["pred_count"] == result["gt_count"] == len(sample.layers)

    flat = [background(), layer(RED, (2, 2, 20, 20)), layer(BLUE, (10, 10, 30, 30))]
    result = evaluate(flat, [f.copy() for f in flat])
    assert result["rgb_l1"] == [0.0] * 6
    assert result["soft_iou"] == [1.0] * 6
    assert result["merges"] == 0


def test_shifted_square_scores_match_the_hand_computation():
    truth = [background(), layer(RED, (5, 5, 15, 15))]
    pred = [background(), layer(RED, (8, 5, 18, 15))]  # 3 px to the right
    # Alpha: overlap 7x10 = 70 px, union 13x10 = 130 px.
    assert soft_iou(pred[1], truth[1]) == pytest.approx(70 / 130)
    # Colour, over the 100 truth pixels: 70 match; the other 30 hold transparent black in the
    # prediction, off by (255, 0, 0) -> a channel mean of 1/3.
    assert rgb_l1(pred[1], truth[1]) == pytest.approx(30 * (1 / 3) / 100)
    # The prediction's alpha plays no part in L1; a swapped call sees 30 uncovered pixels too.
    assert rgb_l1(truth[1], pred[1]) == pytest.approx(0.1)

    result = evaluate(pred, truth)
    # DTW pairs background with background and square with square; two layers a side
    # leave nothing to merge, so all six entries are the same.
    assert result["rgb_l1"] == pytest.approx([(0.0 + 0.1) / 2] * 6)
    assert result["soft_iou"] == pytest.approx([(1.0 + 70 / 130) / 2] * 6)
    assert result["merges"] == 0


def test_soft_iou_uses_partial_alpha():
    truth = layer(RED, (0, 0, 10, 10), alpha=255)
    pred = layer(RED, (0, 0, 10, 10), alpha=51)  # 0.2 everywhere the truth is
    assert soft_iou(pred, truth) == pytest.approx(0.2)
    assert rgb_l1(pred, truth) == 0.0


def test_empty_union_scores_zero_iou_without_dividing_by_zero():
    empty = np.zeros((SIZE, SIZE, 4), np.uint8)
    assert soft_iou(empty, empty) == 0.0
    assert rgb_l1(empty, empty) == 0.0  # no truth pixels to compare
    result = evaluate([empty], [empty])
    assert result["soft_iou"] == [0.0] * 6
    assert result["rgb_l1"] == [0.0] * 6

    # A prediction with nothing in it against a real layer: IoU 0, colour all wrong.
    result = evaluate([empty], [layer(RED, (0, 0, 8, 8))])
    assert result["soft_iou"] == [0.0] * 6
    assert result["rgb_l1"] == pytest.approx([1 / 3] * 6)


def test_occlusion_groups_on_hand_built_masks():
    def mask(x0, x1):
        out = np.zeros((4, 12), np.uint8)
        out[:, x0:x1] = 255
        return out

    # Layer 0 overlaps only layer 2; layer 1 overlaps nothing.
    assert occlusion_groups([mask(0, 4), mask(5, 7), mask(2, 5)]) == [[0], [1, 2]]
    # A chain 0-1-2 where each touches the next: nothing can be grouped.
    assert occlusion_groups([mask(0, 4), mask(3, 8), mask(7, 12)]) == [[0], [1], [2]]
    # Pairwise disjoint: one group.
    assert occlusion_groups([mask(0, 2), mask(3, 5), mask(6, 8)]) == [[0, 1, 2]]
    # A fully transparent layer meets nothing and goes with the top group.
    assert occlusion_groups([mask(0, 12), mask(0, 0), mask(2, 3)]) == [[0], [1, 2]]
    assert occlusion_groups([]) == []


def test_splitting_a_layer_into_disjoint_parts_costs_nothing():
    truth = [background(), layer(RED, (4, 4, 28, 20)), layer(BLUE, (12, 12, 20, 30))]
    left = layer(RED, (4, 4, 16, 20))
    right = layer(RED, (16, 4, 28, 20))
    pred = [background(), left, right, truth[2]]
    # left and right do not overlap each other, so grouping flattens them into the truth's
    # red layer before any comparison: a perfect score with no merge spent.
    result = evaluate(pred, truth, max_merges=0)
    assert result["pred_groups"] == 3
    assert result["rgb_l1"] == [0.0]
    assert result["soft_iou"] == [1.0]

    # The same for disjoint elements the truth keeps apart and the prediction joins.
    truth = [background(), layer(RED, (2, 2, 10, 10)), layer(GREEN, (20, 20, 30, 30))]
    joined = layer(RED, (2, 2, 10, 10))
    joined[20:30, 20:30] = (*GREEN, 255)
    result = evaluate([background(), joined], truth)
    assert result["gt_groups"] == 2
    assert result["rgb_l1"] == [0.0] * 6
    assert result["soft_iou"] == [1.0] * 6


def test_dtw_prefers_the_diagonal_on_ties():
    assert dtw_path(np.zeros((2, 2))) == [(0, 0), (1, 1)]
    # All ties: the diagonal step is taken first from the end, so the extra prediction row
    # is absorbed at the start, not at the end.
    assert dtw_path(np.zeros((3, 2))) == [(0, 0), (1, 0), (2, 1)]
    assert dtw_path(np.zeros((2, 3))) == [(0, 0), (0, 1), (1, 2)]
    # A costly centre: the path goes round it; with up and left tied, it steps back on the
    # prediction axis first.
    cost = np.zeros((3, 3))
    cost[1, 1] = 9.0
    assert dtw_path(cost) == [(0, 0), (0, 1), (1, 2), (2, 2)]


def test_dtw_keeps_order_and_finds_the_cheap_alignment():
    cost = np.array(
        [
            [0.0, 0.9, 0.9, 0.9],
            [0.9, 0.1, 0.2, 0.9],
            [0.9, 0.9, 0.9, 0.0],
        ]
    )
    path = dtw_path(cost)
    assert path == [(0, 0), (1, 1), (1, 2), (2, 3)]
    assert dtw_path(np.array([[0.3]])) == [(0, 0)]
    assert dtw_path(np.array([[0.1, 0.2, 0.3]])) == [(0, 0), (0, 1), (0, 2)]
    # Order is preserved: a crossing match (pred 0 <-> truth 1, pred 1 <-> truth 0) is not
    # possible, whatever the costs say.
    crossed = dtw_path(np.array([[0.9, 0.0], [0.0, 0.9]]))
    assert crossed == [(0, 0), (1, 1)]
    for path in (crossed, dtw_path(np.random.default_rng(0).random((5, 3)))):
        steps = np.diff(np.array(path), axis=0)
        assert path[0] == (0, 0)
        assert ((steps >= 0) & (steps <= 1)).all() and (steps.sum(axis=1) >= 1).all()


def overlapping_truth() -> list[np.ndarray]:
    """Background, a red square and a blue square over part of it."""
    return [background(), layer(RED, (2, 2, 18, 18)), layer(BLUE, (10, 10, 28, 28))]


def test_truth_side_merge_forgives_under_segmentation():
    truth = overlapping_truth()
    both = truth[1].copy()
    both[10:28, 10:28] = (*BLUE, 255)  # the blue square over the red one, in one layer
    result = evaluate([background(), both], truth)
    assert result["rgb_l1"][0] > 0.05
    assert result["soft_iou"][0] < 0.95
    # Merging the truth's two squares gives exactly the predicted layer.
    assert result["merges"] == 1
    assert result["rgb_l1"][1:] == pytest.approx([0.0] * 5, abs=1e-12)
    assert result["soft_iou"][1:] == pytest.approx([1.0] * 5)
    assert np.all(np.diff(total_cost(result)) <= 1e-12)


def test_prediction_side_merge_forgives_over_segmentation():
    truth = overlapping_truth()
    # The blue square cut into two overlapping pieces: grouping cannot join them.
    top = layer(BLUE, (10, 10, 28, 20))
    bottom = layer(BLUE, (10, 16, 28, 28))
    pred = [background(), truth[1], top, bottom]
    result = evaluate(pred, truth)
    assert result["pred_groups"] == 4
    assert result["rgb_l1"][0] > 0.0
    assert result["soft_iou"][0] < 1.0
    assert result["merges"] >= 1
    assert result["rgb_l1"][1] == pytest.approx(0.0, abs=1e-12)
    assert result["soft_iou"][1] == pytest.approx(1.0)
    assert np.all(np.diff(total_cost(result)) <= 1e-12)
    # With no merges allowed the 0-merge figure is all there is.
    assert evaluate(pred, truth, max_merges=0)["rgb_l1"] == result["rgb_l1"][:1]


def test_merges_only_on_sides_with_more_than_two_layers():
    truth = overlapping_truth()[:2]
    pred = [background(), layer(RED, (2, 2, 10, 18)), layer(RED, (6, 2, 18, 18))]
    # pred has 3 layers (the two red halves overlap) and may merge; the truth has 2.
    result = evaluate(pred, truth)
    assert result["merges"] == 1
    assert result["soft_iou"][1] == pytest.approx(1.0)
    # Two layers a side: no merge is possible, the six figures repeat.
    result = evaluate(pred[:2], truth)
    assert result["merges"] == 0
    assert len(set(result["rgb_l1"])) == 1

    # Against a one-layer truth (the flat picture), merging a 2-layer prediction would help,
    # but the rule forbids it; a 3-layer prediction merges once and stops at two.
    flat = LayerStack.from_canvases(overlapping_truth(), ["a", "b", "c"]).composite()
    result = evaluate(overlapping_truth()[:2], [flat])
    assert result["merges"] == 0
    result = evaluate(overlapping_truth(), [flat])
    assert result["merges"] == 1
    assert total_cost(result)[1] < total_cost(result)[0]


def test_useless_merges_are_not_taken():
    # Identical overlapping layers on both sides: every matched similarity is already 1, so
    # no merge can raise it and none is applied.
    truth = overlapping_truth()
    result = evaluate(truth, [t.copy() for t in truth])
    assert result["merges"] == 0
    # A duplicated layer: both copies match the same truth layer perfectly, so merging them
    # gains exactly nothing, and a merge that gains nothing is not a useful merge.
    result = evaluate([truth[0], truth[1], truth[1].copy(), truth[2]], truth)
    assert result["merges"] == 0
    assert result["rgb_l1"] == [0.0] * 6


def test_merging_keeps_colour_under_a_transparent_upper_layer():
    lower = layer(RED, (0, 0, 8, 8))
    lower[10, 10] = (7, 8, 9, 0)  # hidden colour: RGB L1 can see it
    upper = layer(BLUE, (4, 4, 8, 8), alpha=128)
    merged = over(to_planar(lower), to_planar(upper))
    pixels = np.rint(merged.T.reshape(SIZE, SIZE, 4) * 255).astype(np.uint8)
    assert tuple(pixels[10, 10]) == (7, 8, 9, 0)
    assert tuple(pixels[0, 0]) == (*RED, 255)
    # Blue at 128/255 over opaque red: straight-alpha over, rounded once.
    assert tuple(pixels[5, 5]) == (127, 0, 128, 255)


@pytest.mark.parametrize("bigger", ["pred", "truth"])
def test_the_side_with_the_bigger_gain_is_merged_first(bigger):
    red, blue = (2, 2, 18, 18), (10, 10, 28, 28)

    def pieces(color, box, overlap):
        # Two pieces of one rectangle sharing `overlap` rows: a small overlap leaves each piece
        # far from the whole (a big gain from merging), a large one leaves each close to it.
        x0, y0, x1, y1 = box
        middle = (y0 + y1) // 2
        return [layer(color, (x0, y0, x1, middle + overlap)),
                layer(color, (x0, middle - overlap, x1, y1))]

    small, large = 1, 6
    pred = [background(), *pieces(RED, red, large if bigger == "truth" else small),
            layer(BLUE, blue)]
    truth = [background(), layer(RED, red),
             *pieces(BLUE, blue, small if bigger == "truth" else large)]
    result = evaluate(pred, truth, max_merges=1)
    assert result["merge_log"][0][0] == bigger
    both = evaluate(pred, truth)
    assert sorted(side for side, _ in both["merge_log"]) == ["pred", "truth"]
    assert both["rgb_l1"][2] == pytest.approx(0.0, abs=1e-12)
    assert both["soft_iou"][2] == pytest.approx(1.0)


def test_layerd_merge_rule_agrees_on_clear_cases():
    truth = overlapping_truth()
    both = truth[1].copy()
    both[10:28, 10:28] = (*BLUE, 255)
    a = evaluate([background(), both], truth, merge_rule="layerd")
    b = evaluate([background(), both], truth, merge_rule="partners")
    assert a["rgb_l1"] == pytest.approx(b["rgb_l1"])
    assert a["soft_iou"] == pytest.approx(b["soft_iou"])


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="no layers"):
        evaluate([], [background()])
    with pytest.raises(ValueError, match="differ"):
        evaluate([background()], [np.zeros((SIZE, SIZE + 1, 4), np.uint8)])
    with pytest.raises(ValueError, match="layer 1"):
        evaluate([background(), np.zeros((4, 4, 4), np.uint8)], [background()])
    with pytest.raises(ValueError, match="merge_rule"):
        evaluate([background()], [background()], merge_rule="best")
    with pytest.raises(TypeError):
        evaluate([background().astype(np.float32)], [background()])


def test_recomposition_psnr():
    sample = make_sample("design", 1, (48, 40))
    assert recomposition_psnr(sample.layers, sample.image) == float("inf")
    assert recomposition_psnr([sample.image], sample.image) == float("inf")
    off = sample.image.copy()
    off[..., :3] = np.clip(off[..., :3].astype(int) + 3, 0, 255).astype(np.uint8)
    value = recomposition_psnr([off], sample.image)
    assert 35.0 < value < 50.0
    with pytest.raises(ValueError):
        recomposition_psnr([sample.image], sample.image[:, :-1])


def test_a_typical_sample_evaluates_well_under_a_second():
    sample = make_sample("translucent", 1, (256, 256))
    rng = np.random.default_rng(0)
    noisy = [
        np.clip(t.astype(np.int16) + rng.integers(-30, 31, t.shape), 0, 255).astype(np.uint8)
        for t in sample.layers
    ]
    pred = [sample.image, *noisy[2:], noisy[1]]  # wrong order, one extra layer
    start = time.perf_counter()
    result = evaluate(pred, sample.layers)
    elapsed = time.perf_counter() - start
    assert len(result["rgb_l1"]) == 6
    assert elapsed < 1.0


def test_quality_script_runs_the_identity_floor(tmp_path):
    """The benchmark script end to end, as a user runs it, on the built-in one-layer floor."""
    out = tmp_path / "identity.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "quality.py"), "--backend", "identity",
         "--count", "2", "--size", "48x32", "--tiers", "flat,translucent", "--json", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RGB L1" in proc.stdout and "alpha soft IoU" in proc.stdout
    report = json.loads(out.read_text())
    assert report["size"] == [48, 32]
    assert set(report["tiers"]) == {"flat", "translucent"}
    flat = report["tiers"]["flat"]
    assert [s["seed"] for s in flat["samples"]] == [0, 1]
    summary = flat["summary"]
    assert summary["pred_layers"] == 1.0
    assert summary["true_layers"] >= 3
    assert summary["exact"] == 2  # one layer that is the picture recomposes it exactly
    assert len(summary["rgb_l1"]) == len(summary["soft_iou"]) == 6
    # One layer against several: poor alpha overlap, which merges of the truth then forgive.
    assert summary["soft_iou"][0] < 0.7
    assert summary["soft_iou"][5] >= summary["soft_iou"][0]


def test_quality_script_refuses_bad_arguments_and_unknown_backends(capsys):
    from bench import quality

    with pytest.raises(SystemExit) as exc:
        quality.main(["--tiers", "poster"])
    assert exc.value.code == 2
    assert quality.main(["--backend", "nonesuch", "--count", "1"]) == 2
    assert "unknown backend" in capsys.readouterr().err
