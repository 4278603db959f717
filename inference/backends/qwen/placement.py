"""Loading the pipeline for one memory mode: quantization configs and device placement.

The only module that calls `from_pretrained`. Quantized modes quantize at load time through
diffusers' `PipelineQuantizationConfig`, with one config per component because the
transformer (diffusers) and the text encoder (transformers) take different config classes.
"""

from __future__ import annotations

from typing import Any

from layerlift.inference.backends.qwen.devices import DeviceInfo, torch_dtype
from layerlift.inference.backends.qwen.library_noise import quiet_known_noise
from layerlift.inference.backends.qwen.loading import ModelSource


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


def load_pipeline(source: ModelSource, info: DeviceInfo, mode: str, offline: bool) -> Any:
    """Load the pipeline from `source` and place it on `info.device` as `mode` says."""
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
    place(pipe, mode, info)
    return pipe


def place(pipe: Any, mode: str, info: DeviceInfo) -> None:
    """Put a loaded pipeline's components where `mode` wants them on `info.device`.

    Separate from loading so the placement of every mode can be exercised on the tiny
    pipeline: with the CPU as the "accelerator" the hooks still move and run every
    component, which is how the tests check that the offloaded modes give the same layers.
    """
    import torch

    device = torch.device(info.device)
    if mode == "full":
        pipe.to(device)
    elif mode == "lowvram":
        # Leaf-level groups stream each layer in just before it runs. A side CUDA stream
        # overlaps the copies with compute; other devices have no streams to use.
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=info.kind == "cuda",
        )
    else:
        # offload and the quantized modes: whole components move to the GPU when they run.
        pipe.enable_model_cpu_offload(device=device)
