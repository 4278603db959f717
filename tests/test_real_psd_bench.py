"""bench/real_psd.py: real Photoshop documents scored against their own layers.

The truth extraction is checked here on documents written by LayerLift's own PSD writer (what
is kept, what is left out and why); the `corpus` test runs the whole benchmark on psd-tools'
test files, documents made in Photoshop, and holds the classic backend to the issue's rule
there: its mean beats the identity floor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from layerlift.inference.formats.psd import write_psd
from layerlift.inference.layers import Layer, LayerStack

from bench import real_psd
from bench.corpus import psd_files_in
from bench.synthetic import jpeg_round_trip
from tests.markers import corpus_dir


def _poster(tmp_path, size=96, background_alpha=255):
    ground = np.zeros((size, size, 4), np.uint8)
    ground[...] = (240, 230, 200, background_alpha)
    card = np.zeros((40, 50, 4), np.uint8)
    card[...] = (30, 90, 200, 255)
    disc = np.zeros((30, 30, 4), np.uint8)
    yy, xx = np.mgrid[:30, :30]
    disc[(yy - 14.5) ** 2 + (xx - 14.5) ** 2 <= 14**2] = (220, 40, 40, 255)
    stack = LayerStack(size, size, [Layer("ground", ground), Layer("card", card, x=10, y=20),
                                    Layer("disc", disc, x=45, y=40)], {})
    path = tmp_path / "poster.psd"
    write_psd(stack, path)
    return path


def test_a_document_gives_its_picture_and_its_layers_as_truth(tmp_path):
    document = real_psd.load_document(_poster(tmp_path), "poster.psd")
    assert isinstance(document, real_psd.Document), document
    assert document.picture.shape == (96, 96, 4)
    assert len(document.layers) == 3
    assert tuple(document.picture[50, 20, :3]) == (30, 90, 200)  # the card
    assert tuple(document.picture[55, 60, :3]) == (220, 40, 40)  # the disc over it


def test_a_document_that_cannot_be_a_truth_says_why(tmp_path):
    small = real_psd.load_document(_poster(tmp_path, size=40), "small.psd")
    assert small == "40x40 is under 64 px a side"
    see_through = real_psd.load_document(_poster(tmp_path, background_alpha=128), "clear.psd")
    assert see_through == "its picture is not opaque"


def test_classic_beats_the_floor_on_a_written_document(tmp_path):
    document = real_psd.load_document(_poster(tmp_path), "poster.psd")
    assert isinstance(document, real_psd.Document)
    backend = real_psd.make_backend("classic")
    for encoding, picture in (("png", document.picture),
                              ("jpeg q85", jpeg_round_trip(document.picture, 85))):
        score = real_psd.score(backend, document, picture, encoding)
        assert score.pred_layers == 3
        assert score.soft_iou >= score.floor_soft_iou + 0.15, score
        assert score.rgb_l1 < score.floor_rgb_l1, score


@pytest.mark.corpus
def test_classic_beats_the_floor_on_real_photoshop_documents(tmp_path, capsys):
    corpus = corpus_dir()
    if psd_files_in(corpus) is None:
        pytest.skip(f"the corpus {corpus} holds no psd-tools test files")
    out = tmp_path / "scores.json"
    assert real_psd.main(["--corpus", str(corpus), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())["scores"]
    for encoding in ("png", "jpeg q85"):
        mine = [s for s in scores if s["encoding"] == encoding]
        assert len(mine) >= 10, f"only {len(mine)} usable documents"
        mean = {k: np.mean([s[k] for s in mine])
                for k in ("soft_iou", "floor_soft_iou", "rgb_l1", "floor_rgb_l1")}
        assert mean["soft_iou"] >= mean["floor_soft_iou"] + 0.15, (encoding, mean)
        assert mean["rgb_l1"] < mean["floor_rgb_l1"], (encoding, mean)
        if encoding == "png":  # the exactness guarantee holds on lossless inputs
            assert min(s["psnr"] for s in mine) >= 50
