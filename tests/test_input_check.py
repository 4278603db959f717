"""One fault of an input picture gets one error code, whichever way the picture came in: a
file, the bridge's announced size, the job runner, a backend called directly."""

from __future__ import annotations

import numpy as np
import pytest
from layerlift.bridge.limits import Limits
from layerlift.bridge.protocol import ImageSpec, check_image_spec
from layerlift.bridge.wire import ENCODING_PNG
from layerlift.inference.backends.base import DecomposeRequest
from layerlift.inference.backends.classic import ClassicBackend
from layerlift.inference.errors import LayerLiftError
from layerlift.inference.formats import read_image
from layerlift.inference.input_check import MAX_PIXELS, check_size, checked_pixels
from layerlift.inference.jobs import JobRunner

from tests.bridge_fixtures import split_provider
from tests.helpers import png_header_only


def _code(call) -> str:
    with pytest.raises(LayerLiftError) as caught:
        call()
    return caught.value.code


def test_an_empty_picture_is_bad_input_everywhere(tmp_path):
    empty = np.zeros((0, 5, 4), np.uint8)
    runner = JobRunner(provider=split_provider())
    assert {
        _code(lambda: checked_pixels(empty)),
        _code(lambda: runner.submit(empty, DecomposeRequest(), "split")),
        _code(lambda: ClassicBackend().decompose(empty, DecomposeRequest())),
        _code(lambda: check_image_spec(ImageSpec(ENCODING_PNG, 0, 5, 10), Limits())),
    } == {"bad_input"}


def test_a_picture_that_is_not_rgb_or_rgba_is_bad_input():
    for wrong in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)):
        assert _code(lambda wrong=wrong: checked_pixels(wrong)) == "bad_input"
        assert _code(lambda wrong=wrong: ClassicBackend().decompose(
            wrong, DecomposeRequest())) == "bad_input"


def test_over_the_limit_is_image_too_large_from_a_file_and_over_the_bridge(tmp_path):
    over = png_header_only(tmp_path / "over.png", 8001, 8000)
    assert _code(lambda: read_image(over)) == "image_too_large"
    spec = ImageSpec(ENCODING_PNG, 8001, 8000, 1000)
    assert _code(lambda: check_image_spec(spec, Limits())) == "image_too_large"
    assert Limits().max_image_pixels == MAX_PIXELS
    # The bridge's side limit, with the same code.
    long_side = ImageSpec(ENCODING_PNG, Limits().max_image_side + 1, 1, 1000)
    assert _code(lambda: check_image_spec(long_side, Limits())) == "image_too_large"


def test_the_limit_sentence_names_the_picture_and_says_why():
    with pytest.raises(LayerLiftError) as caught:
        check_size(9000, 9000, label="'big.png'")
    message = caught.value.message
    assert message.startswith("'big.png' is 9000 x 9000 pixels (81.0 megapixels)")
    assert "64.0 megapixels" in message and "8 GB" in message
    check_size(8000, 8000)  # at the limit: accepted
    check_size(10**6, 10**6, max_pixels=None)  # no limit given, none applied
