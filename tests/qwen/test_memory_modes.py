"""Every memory mode's placement, run for real on the tiny pipeline with the CPU as device.

The offloading modes exist for CUDA, but their hooks work on any device: with the CPU as the
"accelerator" diffusers still moves and runs every component through them. That checks what
a GPU-less machine can check: that `placement` calls diffusers' offloading and quantization
APIs correctly for this pipeline, that the lossless modes give the layers `full` gives (to a
rounding), that the quantized transformer really is quantized, and that cancel and unload
work with the hooks in place. bitsandbytes (int8, nf4) refuses to quantize without a GPU, so
for those the tests check that the config reaches the bitsandbytes quantizer and is refused
only for that.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from layerlift.inference.backends.base import CancelToken, DecomposeRequest, Progress
from layerlift.inference.backends.qwen import memory
from layerlift.inference.backends.qwen.devices import DeviceInfo
from layerlift.inference.backends.qwen.loading import ModelSource
from layerlift.inference.backends.qwen.pipeline_call import StepReporter, call_kwargs, parse_options
from layerlift.inference.settings import Settings

CPU = DeviceInfo("cpu", "cpu", "float32", "test CPU")
CAPTION = "a poster with a title, a shape and a background"


def _load(folder: Path, mode: str) -> Any:
    from layerlift.inference.backends.qwen.placement import load_pipeline

    return load_pipeline(ModelSource(folder), CPU, mode, offline=True)


def _run(pipe: Any, picture: np.ndarray, steps: int = 2,
         cancel: CancelToken | None = None) -> tuple[list[np.ndarray], StepReporter]:
    """The backend's own call path: its options, its step reporter, its keyword arguments."""
    import torch
    from PIL import Image

    request = DecomposeRequest(layers=2, seed=11, options={"caption": CAPTION, "steps": steps})
    options = parse_options(request, Settings(resolution=640))
    events: list[Progress] = []
    reporter = StepReporter(options.steps, events.append, cancel, 0.0, 1.0)
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    image = Image.fromarray(picture, "RGBA")
    output = pipe(**call_kwargs(options, image, CAPTION, generator, reporter))
    return [np.asarray(layer.convert("RGBA")) for layer in output.images[0]], reporter


@pytest.fixture(scope="module")
def full_layers(tiny_model_dir: Path, poster_small: np.ndarray) -> list[np.ndarray]:
    pipe = _load(tiny_model_dir, "full")
    layers, _ = _run(pipe, poster_small)
    del pipe
    gc.collect()
    return layers


@pytest.mark.parametrize("mode", ["offload", "lowvram"])
def test_lossless_offloading_modes_give_the_layers_full_gives(
    mode: str, tiny_model_dir: Path, poster_small: np.ndarray, full_layers: list[np.ndarray]
):
    from diffusers.hooks.group_offloading import _is_group_offload_enabled
    from layerlift.inference.backends.qwen.placement import placement_of

    pipe = _load(tiny_model_dir, mode)
    placement = placement_of(pipe)
    if mode == "offload":
        # No accelerate hooks: the transformer and the text encoder sit in RAM copies that
        # the placement onloads (and drops without copying back).
        assert not getattr(pipe, "_all_hooks", None)
        assert not _is_group_offload_enabled(pipe.transformer)
        assert placement.transformer.cpu and placement.text.cpu
        placement.prepare(memory.Job.of(2, 640))
        with placement.text_encoder("gpu"):
            assert placement.text.on_device
        assert not placement.text.on_device
        placement.before_denoise()
        assert placement.transformer.on_device
    else:
        for name in ("transformer", "text_encoder", "vae"):
            assert _is_group_offload_enabled(getattr(pipe, name)), name
    layers, _ = _run(pipe, poster_small)
    assert len(layers) == len(full_layers)
    for got, want in zip(layers, full_layers, strict=True):
        # Same weights, same numbers; the hooks' device moves let a few values round the
        # other way (measured: 1 level in ~0.004% of them).
        difference = np.abs(got.astype(int) - want.astype(int))
        assert difference.max() <= 1 and np.count_nonzero(difference) < 1e-3 * difference.size


def test_torchao_mode_quantizes_the_transformer_and_still_decomposes(
    tiny_model_dir: Path, poster_small: np.ndarray, full_layers: list[np.ndarray]
):
    pytest.importorskip("torchao")
    import torch

    pipe = _load(tiny_model_dir, "torchao")
    quantized = [m.weight for m in pipe.transformer.modules() if isinstance(m, torch.nn.Linear)]
    assert quantized and all(type(w).__module__.startswith("torchao") for w in quantized)
    # The text encoder stays unquantized (offloaded instead): only the transformer shrinks.
    encoder = [m.weight for m in pipe.text_encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert all(type(w) is torch.nn.Parameter for w in encoder)
    assert len(pipe._all_hooks) == len(pipe.model_cpu_offload_seq.split("->"))
    layers, _ = _run(pipe, poster_small)
    assert [layer.shape for layer in layers] == [layer.shape for layer in full_layers]
    # int8 weights change the numbers a little, not the picture.
    difference = np.mean([np.abs(a.astype(int) - b.astype(int)).mean()
                          for a, b in zip(layers, full_layers, strict=True)])
    assert difference < 8, difference


@pytest.mark.parametrize("mode", ["int8", "nf4"])
def test_bitsandbytes_modes_reach_the_quantizer(mode: str, tiny_model_dir: Path):
    """Without a GPU diffusers' bitsandbytes quantizer refuses; it must be that refusal."""
    pytest.importorskip("bitsandbytes")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CPU refusal does not apply")
    with pytest.raises(RuntimeError, match="GPU is needed for quantization"):
        _load(tiny_model_dir, mode)


@pytest.mark.parametrize("mode", ["offload", "lowvram"])
def test_cancel_and_unload_with_offload_hooks(mode: str, tiny_model_dir: Path,
                                              poster_small: np.ndarray):
    """A cancelled run under hooks stops at the step, and unloading frees the weights."""
    from layerlift.inference.backends.qwen import QwenBackend

    pipe = _load(tiny_model_dir, mode)
    cancel = CancelToken()
    cancel.cancel()
    _, reporter = _run(pipe, poster_small, steps=3, cancel=cancel)
    assert reporter.interrupted and reporter.steps_done == 1

    backend = QwenBackend(Settings(model=str(tiny_model_dir), device="cpu"))
    backend._pipe, backend._device, backend._mode = pipe, CPU, mode
    transformer = weakref.ref(pipe.transformer)
    del pipe
    backend.unload()
    assert backend._pipe is None
    assert transformer() is None, "unload left the weights referenced"


def test_lowvram_places_the_text_encoder_without_stream_prefetching(tiny_model_dir: Path):
    """Checked on the placed modules: leaf-level groups, none with a stream or a prefetcher.

    The CPU has no streams, so here the transformer and the VAE have none either; which
    components use one on CUDA is LOWVRAM_STREAMED (the gpu tests check the CUDA placement).
    """
    from diffusers.hooks.group_offloading import GroupOffloadingType
    from layerlift.inference.backends.qwen.placement import (
        LOWVRAM_STREAMED,
        _group_hooks,
        placement_of,
        stream_prefetching,
    )

    assert LOWVRAM_STREAMED == {"transformer": True, "vae": True, "text_encoder": False}
    pipe = _load(tiny_model_dir, "lowvram")
    encoder = pipe.text_encoder
    hooks = _group_hooks(encoder)
    linears = [m for m in encoder.modules() if type(m).__name__ == "Linear"]
    assert linears and len(hooks) >= len(linears)  # one group per leaf, at least
    assert all(hook.config.offload_type == GroupOffloadingType.LEAF_LEVEL for hook in hooks)
    assert all(hook.group.stream is None for hook in hooks)
    assert not stream_prefetching(encoder)
    # Captioning on the CPU (or onloaded whole) takes the hooks off and puts them back as
    # they were: still no stream.
    placement = placement_of(pipe)
    for way in ("cpu", "onload"):
        with placement.text_encoder(way):
            assert not _group_hooks(encoder)
        assert len(_group_hooks(encoder)) == len(hooks)
        assert not stream_prefetching(encoder)
    assert "no stream" in placement.describe()["text_encoder"]


@pytest.mark.parametrize(("budget_gib", "for_text", "for_decode"),
                         [(79.0, True, True), (50.0, False, True), (30.0, False, False)])
def test_offload_keeps_the_transformer_resident_where_the_plan_fits(
    budget_gib, for_text, for_decode, tiny_model_dir: Path, monkeypatch
):
    """Made-up free VRAM; the placed modules show where the transformer is in each phase."""
    from layerlift.inference.backends.qwen import placement as placement_module

    monkeypatch.setattr(placement_module, "live_budget", lambda info: int(budget_gib * memory.GIB))
    pipe = _load(tiny_model_dir, "offload")
    placement = placement_module.placement_of(pipe)
    placement.prepare(memory.Job.of(4, 640))
    placement.before_denoise()  # resident from an earlier job
    with placement.text_encoder("gpu"):
        assert placement.text.on_device
        assert placement.transformer.on_device is for_text
    assert not placement.text.on_device
    placement.before_denoise()
    assert placement.transformer.on_device
    placement.after_last_step()
    assert placement.transformer.on_device is for_decode
    placement.release()
