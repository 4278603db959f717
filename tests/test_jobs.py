"""The job runner on its own: FIFO, states, cancel, results on disk first, retention, restart."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from layerlift.inference.backends.base import DecomposeRequest
from layerlift.inference.errors import BadRequest, InputError
from layerlift.inference.job_snapshot import JobError
from layerlift.inference.job_store import JobStore
from layerlift.inference.jobs import JobRunner, QueueFull, ResultUnavailable, UnknownJob
from layerlift.inference.settings import Settings

from tests.bridge_fixtures import GatedBackend, picture, split_provider

WAIT = 20.0


@pytest.fixture
def runner():
    GatedBackend.reset()
    runner = JobRunner(provider=split_provider()).start()
    yield runner
    GatedBackend.release.set()
    runner.stop()


def test_job_runs_and_result_is_on_disk_before_done(runner):
    seen = []
    on_disk_when_done = threading.Event()

    def listener(record, owner):
        seen.append((record.state, owner))
        if record.state == "done":
            folder = runner.store.folder(record.id)
            saved = json.loads((folder / "job.json").read_text())
            if saved["state"] == "done" and runner.store.read_result(record.id).layers:
                on_disk_when_done.set()

    runner.subscribe(listener)
    image = picture()
    job = runner.submit(image, DecomposeRequest(), "split", owner="me")
    assert job.state == "queued" and job.position == 1
    final = runner.wait(job.id, WAIT)
    assert final.state == "done"
    assert final.result.layers == 2 and final.result.quality.exact is True
    assert on_disk_when_done.is_set()
    states = [state for state, _ in seen]
    for expected in ("queued", "loading", "running", "refining", "writing", "done"):
        assert expected in states
    assert states.index("writing") < states.index("done")
    assert {owner for _, owner in seen} == {"me"}
    stack = runner.read_result(job.id)
    assert [layer.name for layer in stack.layers] == ["background", "quarter"]
    np.testing.assert_array_equal(stack.composite(), image)


def test_fifo_positions_and_cancel_of_queued(runner):
    first = runner.submit(picture(), DecomposeRequest(), "gated")
    assert GatedBackend.started.wait(WAIT)
    second = runner.submit(picture(), DecomposeRequest(), "split")
    third = runner.submit(picture(), DecomposeRequest(), "split")
    assert (second.position, third.position) == (1, 2)
    cancelled = runner.cancel(second.id)
    assert cancelled.state == "cancelled"
    assert runner.get(third.id).position == 1
    assert runner.active_count() == 2
    GatedBackend.release.set()
    assert runner.wait(third.id, WAIT).state == "done"
    done_first = runner.get(first.id)
    assert done_first.state == "done"
    assert done_first.finished <= runner.get(third.id).started
    assert runner.get(second.id).started is None
    with pytest.raises(ResultUnavailable):
        runner.read_result(second.id)


def test_cancel_running_job(runner):
    job = runner.submit(picture(), DecomposeRequest(), "gated")
    assert GatedBackend.started.wait(WAIT)
    assert runner.get(job.id).state in ("loading", "running")
    runner.cancel(job.id)
    final = runner.wait(job.id, WAIT)
    assert final.state == "cancelled"
    assert final.error.code == "cancelled"
    with pytest.raises(ResultUnavailable):
        runner.read_result(job.id)
    # The runner is free again.
    follow = runner.submit(picture(), DecomposeRequest(), "split")
    assert runner.wait(follow.id, WAIT).state == "done"


def test_failure_is_recorded_with_its_code(runner):
    job = runner.submit(picture(), DecomposeRequest(), "failing")
    final = runner.wait(job.id, WAIT)
    assert final.state == "failed"
    assert final.error == JobError("bad_request", "this backend refuses every picture")


def test_bad_submissions_are_refused(runner):
    with pytest.raises(BadRequest):
        runner.submit(picture(), DecomposeRequest(), "nope")
    with pytest.raises(InputError, match=r"\(h, w, 3\|4\) uint8") as caught:
        runner.submit(np.zeros((4, 4), np.uint8), DecomposeRequest(), "split")
    assert caught.value.code == "bad_input"
    with pytest.raises(UnknownJob):
        runner.cancel("0123456789abcdef")
    with pytest.raises(UnknownJob):
        runner.get("../../etc")


def test_queue_limit():
    GatedBackend.reset()
    runner = JobRunner(provider=split_provider(), max_queue=1).start()
    try:
        runner.submit(picture(), DecomposeRequest(), "gated")
        assert GatedBackend.started.wait(WAIT)
        runner.submit(picture(), DecomposeRequest(), "split")
        with pytest.raises(QueueFull):
            runner.submit(picture(), DecomposeRequest(), "split")
    finally:
        GatedBackend.release.set()
        runner.stop()


def test_jobs_survive_a_restart():
    first = JobRunner(provider=split_provider()).start()
    job = first.submit(picture(), DecomposeRequest(layers=2, seed=7), "split")
    first.wait(job.id, WAIT)
    first.stop()
    second = JobRunner(provider=split_provider())
    records = second.jobs()
    assert [record.id for record in records] == [job.id]
    assert records[0].state == "done"
    assert records[0].params.seed == 7
    stack = second.read_result(job.id)
    assert len(stack.layers) == 2


def _fake_record(store: JobStore, job_id: str, finished: float, payload: int) -> None:
    record = {"id": job_id, "state": "done", "backend": "split", "created": finished,
              "finished": finished, "params": {}}
    folder = store.save(record)
    (folder / "blob.bin").write_bytes(b"x" * payload)


def test_retention_by_age_and_size_oldest_first(tmp_path):
    store = JobStore(tmp_path / "jobs")
    now = time.time()
    _fake_record(store, "a" * 16, now - 30 * 86400, 10)  # too old
    _fake_record(store, "b" * 16, now - 3 * 86400, 600_000)
    _fake_record(store, "c" * 16, now - 2 * 86400, 600_000)
    _fake_record(store, "d" * 16, now - 1 * 86400, 600_000)
    removed = store.prune(keep_days=14, max_mb=1.2, protect=["b" * 16], now=now)
    # "a" by age; then the oldest unprotected until under 1.2 MB: "c" (b is running).
    assert removed == ["a" * 16, "c" * 16]
    left = sorted(record["id"] for record in store.load_records())
    assert left == ["b" * 16, "d" * 16]


def test_runner_prunes_with_settings(tmp_path):
    store = JobStore(tmp_path / "jobs")
    _fake_record(store, "e" * 16, time.time() - 100 * 86400, 10)
    runner = JobRunner(settings=Settings(results_keep_days=1), store=store,
                       provider=split_provider())
    assert runner.jobs() == []
    assert not store.folder("e" * 16).exists()


def test_half_written_folders_are_dropped(tmp_path):
    root = tmp_path / "jobs"
    (root / ".tmp-0123456789abcdef-1234").mkdir(parents=True)
    JobStore(root)
    assert list(root.iterdir()) == []


def test_newest_result_comes_from_memory_and_matches_the_disk(runner, monkeypatch):
    """The result just announced is served without decoding it from its folder again."""
    first = runner.submit(picture(), DecomposeRequest(), "split")
    assert runner.wait(first.id, WAIT).state == "done"
    on_disk = runner.store.read_result(first.id)

    def no_disk(job_id):
        raise AssertionError("read from disk")

    monkeypatch.setattr(runner.store, "read_result", no_disk)
    kept = runner.read_result(first.id)
    assert kept.meta == on_disk.meta
    assert [(layer.name, layer.x, layer.y, layer.visible, layer.meta) for layer in kept] == [
        (layer.name, layer.x, layer.y, layer.visible, layer.meta) for layer in on_disk]
    for ours, theirs in zip(kept.layers, on_disk.layers, strict=True):
        np.testing.assert_array_equal(ours.pixels, theirs.pixels)
        assert not ours.pixels.flags.writeable  # shared with every reader: never changed
    kept.meta["x"] = 1
    assert "x" not in runner.read_result(first.id).meta

    monkeypatch.undo()
    second = runner.submit(picture(), DecomposeRequest(), "split")
    assert runner.wait(second.id, WAIT).state == "done"
    monkeypatch.setattr(runner.store, "read_result", no_disk)
    with pytest.raises(AssertionError, match="read from disk"):
        runner.read_result(first.id)  # no longer the newest: read back from its folder


def test_only_our_own_temporary_folders_are_dropped(tmp_path):
    """The start-up clean-up removes exactly what `save` makes, nothing else."""
    root = tmp_path / "jobs"
    root.mkdir()
    (root / ".tmp-notes").write_text("not a job")
    (root / ".tmp-holiday").mkdir()
    (root / ".tmp-holiday" / "photo.jpg").write_bytes(b"keep")
    (root / ".tmp-0123456789abcdef-1a2b3c4d").mkdir()
    JobStore(root)
    assert sorted(p.name for p in root.iterdir()) == [".tmp-holiday", ".tmp-notes"]
    assert (root / ".tmp-holiday" / "photo.jpg").read_bytes() == b"keep"
