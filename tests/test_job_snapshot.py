"""JobSnapshot: the one place where a job becomes JSON and back, and where "exact" is coded."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from layerlift.desktop.gui.document_jobs import DocumentJobs, SplitLayer, WholePicture, land
from layerlift.inference.job_snapshot import (
    JobError,
    JobParams,
    JobResult,
    JobSnapshot,
    Quality,
)
from layerlift.inference.job_states import TERMINAL, JobState, parse_state
from layerlift.inference.layers import Layer, LayerStack
from layerlift.inference.recursive import splice_sublayers


def _done(psnr: float, **details) -> JobSnapshot:
    return JobSnapshot(
        id="0123456789abcdef", state=JobState.DONE, backend="classic", created=1.0,
        finished=2.0, params=JobParams(layers=3, seed=7, width=40, height=30),
        result=JobResult(layers=3, names=("background", "a", "b"), quality=Quality(psnr),
                         quality_before=Quality(31.5), details=details))


def test_an_exact_result_travels_as_null_and_exact_and_comes_back_infinite():
    job = _done(math.inf, caption="a poster", steps=50)
    text = json.dumps(job.to_json(), allow_nan=False)  # no Infinity on the wire
    data = json.loads(text)
    assert data["result"]["psnr"] is None and data["result"]["exact"] is True
    assert data["result"]["caption"] == "a poster"
    back = JobSnapshot.from_json(data)
    assert back == job
    assert back.result.quality.exact and back.result.quality.describe() == "exact"


def test_a_finite_result_keeps_its_figure():
    data = json.loads(json.dumps(_done(56.25).to_json(), allow_nan=False))
    assert data["result"] == {**data["result"], "psnr": 56.25, "exact": False}
    assert JobSnapshot.from_json(data).result.quality.describe() == "56.2 dB"


def test_unknown_states_and_missing_fields_read_leniently():
    job = JobSnapshot.from_json({"id": "x", "state": "teleporting"})
    assert job.state is JobState.FAILED and job.result is None and job.error is None
    assert parse_state("done") is JobState.DONE
    with pytest.raises(KeyError):
        JobSnapshot.from_json({"state": "done"})
    failed = JobSnapshot.from_json({"id": "y", "state": "failed",
                                    "error": {"code": "oom", "message": "no VRAM"}})
    assert failed.error == JobError("oom", "no VRAM") and failed.terminal
    assert {s for s in JobState if s.terminal} == TERMINAL


def test_snapshots_are_frozen():
    job = _done(40.0)
    with pytest.raises(AttributeError):
        job.state = JobState.FAILED  # type: ignore[misc]
    with pytest.raises(TypeError):
        job.params.options["x"] = 1  # type: ignore[index]


def _stack() -> LayerStack:
    pixels = np.zeros((10, 12, 4), np.uint8)
    pixels[2:6, 3:9] = (200, 10, 10, 255)
    return LayerStack(20, 16, [Layer("background", np.full((16, 20, 4), 255, np.uint8)),
                               Layer("shape", pixels, 4, 5)])


def test_splice_puts_the_sublayers_where_the_layer_was():
    stack = _stack()
    parent = stack.layers[1].trimmed()
    sub = LayerStack(parent.width, parent.height, [
        Layer("left", parent.pixels[:, :3].copy()),
        Layer("right", parent.pixels[:, 3:].copy(), 3, 0)])
    spliced = splice_sublayers(stack, 1, sub, "test")
    assert [layer.name for layer in spliced.layers] == ["background", "shape / left",
                                                        "shape / right"]
    np.testing.assert_array_equal(spliced.composite(), stack.composite())
    assert len(stack.layers) == 2  # the input stack is untouched
    with pytest.raises(ValueError):
        splice_sublayers(stack, 1, LayerStack(3, 3, []))


def test_document_jobs_follow_a_request_from_tag_to_landing():
    jobs = DocumentJobs()
    source = np.zeros((30, 40, 4), np.uint8)
    tag = jobs.submit(WholePicture(source))
    assert jobs.busy and jobs.cancel_now() is None  # no id yet: remembered
    assert jobs.accepted(tag, "0123456789abcdef") is not None
    assert jobs.take_cancel_request()  # the early cancel applies now
    assert jobs.cancel_now() == "0123456789abcdef"
    done = _done(math.inf)
    purpose = jobs.finished(done)
    assert isinstance(purpose, WholePicture) and not jobs.busy
    result = LayerStack(40, 30, [Layer("background", source)])
    landing = land(done, purpose, result, source, None)
    assert landing.stack is result and "(recomposition exact)" in landing.status
    # The user opened another picture meanwhile: the result is not forced on it.
    other = land(done, purpose, result, source.copy(), None)
    assert other.stack is None and "no longer open" in other.status


def test_a_split_lands_only_on_the_stack_it_was_made_from():
    stack = _stack()
    parent = stack.layers[1].trimmed()
    sub = LayerStack(parent.width, parent.height, [Layer("only", parent.pixels)])
    purpose = SplitLayer(1, stack)
    landing = land(_done(60.0), purpose, sub, None, stack)
    assert landing.stack is not None and "'shape' split into 1 layers" in landing.status
    assert land(_done(60.0), purpose, sub, None, _stack()).stack is None
    wrong = land(_done(60.0), purpose, LayerStack(2, 2, []), None, stack)
    assert wrong.error is not None and wrong.error[0] == "Cannot place the sub-layers"


def test_a_refused_submission_frees_the_window():
    jobs = DocumentJobs()
    tag = jobs.submit(WholePicture(np.zeros((2, 2, 4), np.uint8)))
    assert jobs.refused(tag) and not jobs.busy
    assert not jobs.refused(tag)  # not ours any more
