"""The qwen backend end to end on the tiny random-weight pipeline, loaded from disk.

These run the real `QwenImageLayeredPipeline` (captioning, denoising loop, VAE) on the CPU;
nothing here patches the pipeline. Runs are kept few and 1-3 steps long: each takes
several seconds on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from layerlift.inference.backends.base import CancelToken, DecomposeRequest, Progress
from layerlift.inference.errors import Cancelled
from layerlift.inference.layers import psnr
from layerlift.inference.recursive import decompose_layer

REPO = Path(__file__).resolve().parents[2]
CAPTION = "a poster with a title, a shape and a background"


@pytest.fixture(scope="module")
def first_run(tiny_backend, poster_small):
    """The session's first run of the shared backend (so it includes loading the model)."""
    events: list[Progress] = []
    request = DecomposeRequest(layers=2, seed=3, options={"caption": CAPTION})
    stack = tiny_backend.decompose(poster_small, request, events.append, CancelToken())
    return stack, events


def test_decompose_returns_refined_full_resolution_layers(first_run, poster_small):
    stack, _ = first_run
    height, width = poster_small.shape[:2]
    assert (stack.width, stack.height) == (width, height)
    assert [layer.name for layer in stack.layers] == ["Background", "Layer 2"]
    for layer in stack.layers:  # trimmed to alpha bounds, inside the canvas
        assert layer.x >= 0 and layer.x + layer.width <= width
        assert layer.y >= 0 and layer.y + layer.height <= height
        if layer.width:
            assert layer.pixels[..., 3].any(axis=0)[[0, -1]].all()
    meta = stack.meta
    assert meta["backend"] == "qwen"
    assert meta["caption"] == CAPTION and meta["caption_source"] == "user"
    assert meta["memory_mode"] == "full" and meta["device"] == "cpu"
    assert (meta["resolution"], meta["steps"]) == (640, 1)
    # The model works at its bucket, not at the input's size.
    assert meta["model_size"] != [width, height] and max(meta["model_size"]) >= 640
    # Refinement: the stack recomposites to the input, whatever the random model drew.
    assert meta["psnr"] >= meta["psnr_before"]
    assert meta["psnr"] > 40
    assert psnr(poster_small, stack.composite()) == pytest.approx(meta["psnr"], abs=1e-3)


def test_progress_events(first_run):
    _, events = first_run
    stages = [event.stage for event in events]
    assert stages[0] == "loading"  # the session's first run loads the model
    assert "running" in stages and stages[-1] == "refining"
    steps = [(e.step, e.total) for e in events if e.stage == "running" and e.step]
    assert steps == [(1, 1)]
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_model_captions_when_no_caption_is_given(tiny_backend, first_run, poster_small):
    request = DecomposeRequest(layers=1, options={"caption": "", "caption_language": "zh",
                                                   "true_cfg_scale": 1.0})
    events: list[Progress] = []
    stack = tiny_backend.decompose(poster_small, request, events.append)
    meta = stack.meta
    assert meta["caption_source"] == "model"
    assert isinstance(meta["caption"], str)
    assert meta["caption_language"] == "zh"
    # Captioning is its own stage, with the tokens generated so far.
    captioning = [event for event in events if event.stage == "captioning"]
    assert captioning[0].message == "Captioning the picture…"
    assert all("Captioning the picture…" in event.message for event in captioning)
    assert captioning[-1].message.endswith(f"{meta['caption_tokens']} token"
                                           + ("" if meta["caption_tokens"] == 1 else "s"))
    stages = [event.stage for event in events]
    assert stages.index("captioning") < stages.index("running")
    # Which way it took and how long, in the result (the CPU run captions on the CPU).
    assert meta["caption_way"] == "cpu" and meta["caption_why"]
    assert 0 < meta["caption_seconds"] <= meta["timings"]["total_s"]
    assert meta["timings"]["caption_s"] == pytest.approx(meta["caption_seconds"], abs=0.01)
    assert len(stack.layers) == 1
    # Loaded once per session: the second run does not load again.
    assert all(event.stage != "loading" for event in events)


def test_a_caption_is_capped_at_max_new_tokens(tiny_model_dir, poster_small):
    """Random weights that never end a caption stop at the cap (diffusers would ask 512)."""
    from layerlift.inference.backends.qwen import QwenBackend, memory
    from layerlift.inference.settings import Settings

    backend = QwenBackend(Settings(model=str(tiny_model_dir), device="cpu", steps=1))
    backend.load()
    backend._pipe.text_encoder.generation_config.eos_token_id = None  # never stops by itself
    try:
        stack = backend.decompose(poster_small[::2, ::2],
                                  DecomposeRequest(layers=1, options={"true_cfg_scale": 1.0}))
    finally:
        backend.unload()
    assert stack.meta["caption_tokens"] == memory.CAPTION_MAX_NEW_TOKENS
    assert stack.meta["caption_truncated"] is True
    assert stack.meta["caption"]


def test_cancel_stops_within_one_step(tiny_backend, first_run, poster_small):
    cancel = CancelToken()
    seen: list[int] = []

    def progress(event: Progress) -> None:
        if event.stage == "running" and event.step:
            seen.append(event.step)
            if event.step == 1:
                cancel.cancel()

    request = DecomposeRequest(layers=1, options={"caption": CAPTION, "steps": 3})
    with pytest.raises(Cancelled, match="step 1/3"):
        tiny_backend.decompose(poster_small, request, progress, cancel)
    assert seen == [1]


def test_recursive_decomposition_replaces_the_layer_in_place(tiny_backend, first_run,
                                                             poster_small):
    stack, _ = first_run
    target = stack.layers[1]
    request = DecomposeRequest(seed=5, options={"caption": "one shape", "true_cfg_scale": 1.0})
    result = decompose_layer(tiny_backend, stack, 1, 2, request)
    assert len(result.layers) == len(stack.layers) + 1
    assert result.layers[0] is stack.layers[0]
    assert [layer.name for layer in result.layers[1:]] == [
        f"{target.name} / Background", f"{target.name} / Layer 2"
    ]
    for layer in result.layers[1:]:  # placed inside the parent's bounds
        if layer.width:
            assert target.x <= layer.x and layer.x + layer.width <= target.x + target.width
    assert result.meta["recursive"][0]["layers"] == 2
    # The parent stack still looks the same.
    assert psnr(stack.composite(), result.composite()) > 40


def test_job_runner_runs_and_cancels_the_real_pipeline(tiny_settings, poster_small):
    from layerlift.inference.job_snapshot import JobSnapshot
    from layerlift.inference.jobs import JobRunner

    runner = JobRunner(settings=tiny_settings).start()
    cancelled_once = threading.Event()

    def listener(record: JobSnapshot, *_: object) -> None:
        # The job to cancel is the 3-step one; known by its options, so no race with submit.
        if (record.params.options.get("steps") == 3 and record.progress.step == 1
                and not cancelled_once.is_set()):
            cancelled_once.set()
            runner.cancel(record.id)

    runner.subscribe(listener)
    try:
        # The tray's "Load model": loads into the runner's own instance, once.
        loading: list = []
        assert runner.preload("qwen", loading.append) == "qwen"
        assert loading and loading[0].stage == "loading"
        again: list = []
        runner.preload("qwen", again.append)
        assert again == [], "a loaded model is not loaded twice"

        small = poster_small[::2, ::2]
        done = runner.submit(small, DecomposeRequest(layers=1, options={"caption": CAPTION}),
                             "qwen")
        record = runner.wait(done.id, timeout=240)
        assert record.state == "done", record
        assert record.result.layers == 1
        # The job result reports recomposition before and after refinement.
        assert record.result.quality_before.psnr is not None
        assert record.result.quality.exact or record.result.quality.psnr >= 40
        # What the backend reports to the user: the caption, how it was made, the phases.
        details = record.result.details
        assert details["caption"] == CAPTION and details["caption_way"] == "user"
        assert details["memory_mode"] == "full" and details["fixed_seconds"] >= 0
        assert details["total_seconds"] >= details["denoise_seconds"] > 0
        assert runner.read_result(done.id).width == small.shape[1]

        request = DecomposeRequest(layers=1, options={"caption": CAPTION, "steps": 3})
        job = runner.submit(small, request, "qwen")
        record = runner.wait(job.id, timeout=240)
        assert record.state == "cancelled", record
        assert cancelled_once.is_set()
        assert record.progress.step == 1
    finally:
        runner.stop()


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAYERLIFT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "layerlift.desktop.cli", "decompose", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


def test_cli_writes_a_psd_through_the_real_pipeline(tiny_model_dir, tmp_path):
    import torch
    from layerlift.inference.formats import read_stack

    out = tmp_path / "poster.psd"
    # The command as written (no --device): with no GPU it runs on the CPU and says
    # so, rather than refusing; with one it runs there.
    result = _cli(str(REPO / "examples" / "poster.png"), "--backend", "qwen",
                  "--model", str(tiny_model_dir), "--steps", "1",
                  "-n", "2", "-o", str(out), "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "qwen"
    if torch.cuda.is_available() or (torch.backends.mps.is_available()):
        assert "CPU" not in (summary["note"] or "")
    else:
        assert "CPU" in (summary["note"] or "")
    # The model captioned the picture: the caption, the way and its time are reported.
    assert summary["caption_source"] == "model" and isinstance(summary["caption"], str)
    assert summary["caption_way"] in ("gpu", "onload", "4bit", "cpu")
    assert summary["caption_seconds"] >= 0 and summary["memory_mode"]
    assert summary["canvas"] == {"width": 480, "height": 640}
    assert len(summary["layers"]) == 2
    stack = read_stack(out)
    assert len(stack.layers) == 2 and (stack.width, stack.height) == (480, 640)
    # The libraries' import-time notes (torchao under this torch) stay out of the CLI.
    from layerlift.inference.backends.qwen.library_noise import KNOWN_NOISE

    for _, text in KNOWN_NOISE:
        assert text not in result.stderr


def test_cli_names_the_missing_file(model_copy, tmp_path):
    (model_copy / "vae" / "config.json").unlink()
    result = _cli(str(REPO / "examples" / "poster.png"), "--backend", "qwen",
                  "--model", str(model_copy), "--device", "cpu",
                  "-o", str(tmp_path / "x.psd"), home=tmp_path / "home")
    assert result.returncode == 1
    assert "vae/config.json" in result.stderr
    assert not (tmp_path / "x.psd").exists()


def test_bad_layer_count_is_rejected_before_loading(tiny_settings):
    from layerlift.inference.backends.qwen import QwenBackend
    from layerlift.inference.errors import BadRequest

    backend = QwenBackend(tiny_settings)
    with pytest.raises(BadRequest):
        backend.decompose(np.zeros((8, 8, 4), np.uint8),
                          DecomposeRequest(layers=2, options={"resolution": 800}))
    assert backend._pipe is None


def test_recursive_rejects_bad_targets(tiny_backend, first_run):
    from layerlift.inference.errors import BadRequest
    from layerlift.inference.layers import Layer

    stack, _ = first_run
    with pytest.raises(BadRequest, match="no layer 9"):
        decompose_layer(tiny_backend, stack, 9, 2)
    empty = stack.replace_layer(0, type(stack)(stack.width, stack.height, [
        Layer("Empty", np.zeros((4, 4, 4), np.uint8))
    ]))
    with pytest.raises(BadRequest, match="empty"):
        decompose_layer(tiny_backend, empty, 0, 2)


def test_corrupt_weights_fail_with_a_clear_error(model_copy, poster_small):
    from layerlift.inference.backends.qwen import QwenBackend
    from layerlift.inference.errors import BackendUnavailable
    from layerlift.inference.settings import Settings

    (model_copy / "text_encoder" / "model.safetensors").write_bytes(b"not a safetensors file")
    backend = QwenBackend(Settings(model=str(model_copy), device="cpu", steps=1))
    with pytest.raises(BackendUnavailable, match=r"loading the model from .* failed"):
        backend.decompose(poster_small, DecomposeRequest(layers=1, options={"caption": "x"}))
    assert backend._pipe is None
