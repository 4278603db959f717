"""Loading the pipeline for one memory mode: quantization configs and device placement.

The only module that calls `from_pretrained`. Quantized modes quantize at load time through
diffusers' `PipelineQuantizationConfig`, with one config per component because the
transformer (diffusers) and the text encoder (transformers) take different config classes.

`place()` returns a `Placement`, which the backend asks, job by job, to get the text encoder
ready (for the caption and the prompt embeddings), to get the transformer ready for the
denoising, and what to do after the last step. Where each component sits per mode:

- full: every component on the GPU.
- offload: the VAE on the GPU; the transformer on the GPU while the plan lets it stay, else in
  pinned RAM (`WeightSwap`); the text encoder in pinned RAM, onloaded whole for the text phase.
- int8, nf4, torchao: every component on the GPU when the plan fits, else diffusers' model
  offload (`enable_model_cpu_offload`).
- lowvram: leaf-level group offloading; transformer and VAE with a CUDA stream (prefetching),
  the text encoder without one.

The text encoder in `lowvram` must not use stream prefetching: the execution order that the
prefetcher records in the first forward does not hold in `generate()` (captioning), which then
fails with a device mismatch (measured on CUDA). Without a stream every leaf is onloaded when
it runs and the order does not matter.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from layerlift.inference.backends.qwen import memory
from layerlift.inference.backends.qwen.devices import DeviceInfo, live_budget, torch_dtype
from layerlift.inference.backends.qwen.library_noise import quiet_known_noise
from layerlift.inference.backends.qwen.loading import ModelSource
from layerlift.inference.backends.qwen.residency import WeightSwap, pin_in_place

log = logging.getLogger(__name__)
GIB = memory.GIB
# Which lowvram components stream their weights with CUDA-stream prefetching.
LOWVRAM_STREAMED = {"transformer": True, "vae": True, "text_encoder": False}


def quantization_config(mode: str, dtype: Any) -> Any | None:
    """The `quantization_config` for `from_pretrained`, or None for unquantized modes."""
    if mode not in ("int8", "nf4", "torchao"):
        return None
    from diffusers import PipelineQuantizationConfig

    if mode == "torchao":
        from diffusers import TorchAoConfig
        from torchao.quantization import Int8WeightOnlyConfig

        # The text encoder stays bf16 and is offloaded; the transformer is what must shrink.
        return PipelineQuantizationConfig(
            quant_mapping={"transformer": TorchAoConfig(Int8WeightOnlyConfig())}
        )
    from diffusers import BitsAndBytesConfig as DiffusersBnb
    from transformers import BitsAndBytesConfig as TransformersBnb

    if mode == "int8":
        kwargs: dict[str, Any] = {"load_in_8bit": True}
    else:
        kwargs = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": dtype,
        }
    return PipelineQuantizationConfig(
        quant_mapping={
            "transformer": DiffusersBnb(**kwargs),
            "text_encoder": TransformersBnb(**kwargs),
        }
    )


def load_pipeline(source: ModelSource, info: DeviceInfo, mode: str, offline: bool,
                  job: memory.Job | None = None) -> Any:
    """Load the pipeline from `source` and place it on `info.device` as `mode` says.

    The placement is kept on the pipeline (`placement_of(pipe)`).
    """
    quiet_known_noise()
    import diffusers.utils.logging
    import transformers.utils.logging
    from diffusers import QwenImageLayeredPipeline

    # LayerLift reports loading as its own progress stage; the libraries' tqdm bars would
    # only scribble over the CLI's bar and the server's log.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    dtype = torch_dtype(info)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": offline}
    quant = quantization_config(mode, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    pipe = QwenImageLayeredPipeline.from_pretrained(str(source.folder), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    place(pipe, mode, info, job)
    return pipe


def placement_of(pipe: Any) -> Placement:
    placement = getattr(pipe, "_layerlift_placement", None)
    if placement is None:
        raise RuntimeError("the pipeline was not placed by placement.place()")
    return placement


class Placement:
    """Where a loaded pipeline's components are, and the moves one job needs."""

    mode = "full"

    def __init__(self, pipe: Any, info: DeviceInfo) -> None:
        import torch

        self.pipe = pipe
        self.info = info
        self.device = torch.device(info.device)
        self.moves_s = 0.0  # seconds spent moving weights during the current job

    def prepare(self, job: memory.Job) -> None:
        """Before a job: adapt to its plan (nothing to do for most modes)."""
        self.moves_s = 0.0

    @contextlib.contextmanager
    def text_encoder(self, way: str) -> Iterator[Any]:
        """The text encoder ready to run; yields the device its inputs go to.

        `way` is "gpu" (as the mode places it), "onload" (whole on the GPU), or "cpu".
        """
        yield self.pipe._execution_device

    def before_denoise(self) -> None:
        """The transformer ready for the denoising loop."""

    def after_last_step(self) -> None:
        """Called from the last step's callback, before the VAE decodes."""

    def describe(self) -> dict[str, str]:
        """Where each component is placed (for the log, the result, and the tests)."""
        return {"transformer": "GPU", "text_encoder": "GPU", "vae": "GPU"}

    def release(self) -> None:
        """Drop what this placement holds (hooks, pinned copies)."""


class FullPlacement(Placement):
    mode = "full"

    def __init__(self, pipe: Any, info: DeviceInfo) -> None:
        super().__init__(pipe, info)
        pipe.to(self.device)


class HookPlacement(Placement):
    """Quantized modes: all resident when the plan fits, else diffusers' model offload."""

    def __init__(self, pipe: Any, info: DeviceInfo, mode: str, job: memory.Job | None) -> None:
        super().__init__(pipe, info)
        self.mode = mode
        self.offloaded = False
        budget = info.budget_bytes
        job = job or memory.Job()
        if (info.kind == "cuda" and budget is not None
                and memory.resident_plan(mode, job).needed_gib() <= budget / GIB):
            pipe.to(self.device)
            log.info("%s: every component resident (%.1f GiB planned for %s)", mode,
                     memory.resident_plan(mode, job).vram_gib, job.describe())
        else:
            self._offload()

    def _offload(self) -> None:
        self.pipe.enable_model_cpu_offload(device=self.device)
        self.offloaded = True

    def prepare(self, job: memory.Job) -> None:
        super().prepare(job)
        if self.offloaded or self.info.kind != "cuda":
            return
        budget = live_budget(self.info)
        if budget is not None and memory.resident_plan(self.mode, job).needed_gib() > budget / GIB:
            log.info("%s: %s does not fit with every component resident; offloading", self.mode,
                     job.describe())
            self._offload()

    def describe(self) -> dict[str, str]:
        where = "model offload" if self.offloaded else "GPU"
        return {"transformer": where, "text_encoder": where, "vae": where}

    def release(self) -> None:
        remove = getattr(self.pipe, "remove_all_hooks", None)
        if callable(remove):
            with contextlib.suppress(Exception):
                remove()


class OffloadPlacement(Placement):
    """`offload`: the VAE resident, the transformer resident while it fits, the text encoder
    onloaded whole from pinned RAM for the text phase; offloading never copies back."""

    mode = "offload"

    def __init__(self, pipe: Any, info: DeviceInfo) -> None:
        super().__init__(pipe, info)
        pin = info.kind == "cuda"
        pipe.vae.to(self.device)
        self.transformer = WeightSwap(pipe.transformer, pin)
        self.text = WeightSwap(pipe.text_encoder, pin)
        self.residency = memory.Residency(False, False)

    def _budget_gib(self) -> float | None:
        budget = live_budget(self.info)
        return None if budget is None else budget / GIB

    def prepare(self, job: memory.Job) -> None:
        super().prepare(job)
        self.residency = memory.offload_residency(job, self._budget_gib())
        log.debug("offload for %s: %s", job.describe(), self.residency.describe())

    @contextlib.contextmanager
    def text_encoder(self, way: str) -> Iterator[Any]:
        if not self.residency.keep_transformer_for_text:
            self.transformer.offload()
        self.moves_s += self.text.onload(self.device)
        try:
            yield self.device
        finally:
            self.text.offload()

    def before_denoise(self) -> None:
        self.moves_s += self.transformer.onload(self.device)

    def after_last_step(self) -> None:
        if not self.residency.keep_transformer_for_decode:
            self.transformer.offload()

    def describe(self) -> dict[str, str]:
        transformer = "GPU" if self.transformer.on_device else "pinned RAM"
        return {"transformer": transformer, "text_encoder": "pinned RAM, onloaded for text",
                "vae": "GPU"}

    def release(self) -> None:
        self.transformer.release()
        self.text.release()


def _group_hooks(module: Any) -> list[Any]:
    """The group-offloading hooks diffusers attached to `module` and its submodules."""
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING

    hooks = []
    for submodule in module.modules():
        registry = getattr(submodule, "_diffusers_hook", None)
        hook = registry.get_hook(_GROUP_OFFLOADING) if registry is not None else None
        if hook is not None:
            hooks.append(hook)
    return hooks


def stream_prefetching(module: Any) -> bool:
    """Whether `module` streams its weights with CUDA-stream prefetching (lazy prefetch hook)."""
    from diffusers.hooks.group_offloading import _LAZY_PREFETCH_GROUP_OFFLOADING

    registry = getattr(module, "_diffusers_hook", None)
    if registry is not None and registry.get_hook(_LAZY_PREFETCH_GROUP_OFFLOADING) is not None:
        return True
    return any(hook.group.stream is not None for hook in _group_hooks(module))


class LowVramPlacement(Placement):
    """`lowvram`: every component streamed leaf by leaf; the text encoder without a stream."""

    mode = "lowvram"

    def __init__(self, pipe: Any, info: DeviceInfo) -> None:
        super().__init__(pipe, info)
        cuda = info.kind == "cuda"
        for name, streamed in LOWVRAM_STREAMED.items():
            module = getattr(pipe, name)
            use_stream = cuda and streamed
            if use_stream:
                # Pinned once here, in place: group offloading would otherwise pin a copy of
                # every weight while the unpinned original is still held.
                pin_in_place(module)
            self._apply(module, use_stream)

    def _apply(self, module: Any, use_stream: bool) -> None:
        import torch
        from diffusers.hooks import apply_group_offloading

        apply_group_offloading(
            module,
            onload_device=self.device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=use_stream,
        )

    def _remove_text_hooks(self) -> None:
        from diffusers.hooks.group_offloading import (
            _GROUP_OFFLOADING,
            _LAYER_EXECUTION_TRACKER,
            _LAZY_PREFETCH_GROUP_OFFLOADING,
        )
        from diffusers.hooks.hooks import HookRegistry

        registry = HookRegistry.check_if_exists_or_initialize(self.pipe.text_encoder)
        for name in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER,
                     _LAZY_PREFETCH_GROUP_OFFLOADING):
            registry.remove_hook(name, recurse=True)

    @contextlib.contextmanager
    def text_encoder(self, way: str) -> Iterator[Any]:
        if way not in ("onload", "cpu"):
            yield self.device  # streamed leaf by leaf through its hooks
            return
        encoder = self.pipe.text_encoder
        self._remove_text_hooks()
        swap = WeightSwap(encoder, pin=False)  # the weights are back on the CPU, as they were
        try:
            if way == "onload":
                self.moves_s += swap.onload(self.device)
                yield self.device
            else:
                import torch

                yield torch.device("cpu")
        finally:
            swap.release()
            self._apply(encoder, use_stream=False)

    def describe(self) -> dict[str, str]:
        cuda = self.info.kind == "cuda"
        return {name: "leaf-level group offload" + (", CUDA stream" if cuda and streamed
                                                     else ", no stream")
                for name, streamed in LOWVRAM_STREAMED.items()}


def place(pipe: Any, mode: str, info: DeviceInfo, job: memory.Job | None = None) -> Placement:
    """Put a loaded pipeline's components where `mode` wants them on `info.device`.

    Separate from loading so the placement of every mode can be exercised on the tiny
    pipeline: with the CPU as the "accelerator" the moves and hooks still run every
    component, which is how the tests check that the offloaded modes give the same layers.
    """
    if mode == "full":
        placement: Placement = FullPlacement(pipe, info)
    elif mode == "offload":
        placement = OffloadPlacement(pipe, info)
    elif mode == "lowvram":
        placement = LowVramPlacement(pipe, info)
    else:
        placement = HookPlacement(pipe, info, mode, job)
    pipe._layerlift_placement = placement
    return placement
