"""Memory-mode logic with made-up VRAM figures (no GPU needed), and OOM handling."""

from __future__ import annotations

import pytest
from layerlift.inference.backends.base import DecomposeRequest, Progress
from layerlift.inference.backends.qwen import QwenBackend, memory
from layerlift.inference.backends.qwen.devices import DeviceInfo, is_out_of_memory
from layerlift.inference.backends.qwen.pipeline_call import parse_options
from layerlift.inference.errors import BackendUnavailable, BadRequest, OutOfMemory
from layerlift.inference.settings import Settings

GIB = memory.GIB
BNB = {"bitsandbytes"}
ALL = {"bitsandbytes", "torchao"}


@pytest.mark.parametrize(
    ("free_gib", "libraries", "resolution", "expected"),
    [
        (79, set(), 640, "full"),
        (62, set(), 1024, "full"),
        (58, set(), 1024, "offload"),  # full needs ~61 GiB at 1024
        (47, ALL, 640, "offload"),
        (32, BNB, 640, "int8"),
        (24, BNB, 640, "nf4"),  # int8 peaks at ~31 GiB while bitsandbytes loads
        (24, ALL, 640, "torchao"),
        (24, set(), 640, "lowvram"),  # quantized modes need their libraries
        (20, BNB, 1024, "lowvram"),  # nf4 needs ~22 GiB at 1024
        (16, BNB, 640, "lowvram"),
        (8, ALL, 640, "lowvram"),
        (2, ALL, 640, "lowvram"),  # nothing fits: the lowest, with a warning
    ],
)
def test_auto_choice_from_free_vram(free_gib, libraries, resolution, expected):
    mode, why = memory.choose_auto("cuda", int(free_gib * GIB), libraries, resolution, "GPU X")
    assert mode == expected
    assert f"{free_gib:.1f} GiB free on GPU X" in why
    if free_gib == 2:
        assert "may run out of memory" in why


def test_auto_choice_off_cuda_and_without_a_figure():
    assert memory.choose_auto("cpu", None, ALL)[0] == "full"
    assert memory.choose_auto("mps", None, ALL)[0] == "full"
    mode, why = memory.choose_auto("cuda", None, ALL)
    assert mode == "offload" and "could not be measured" in why


def test_fallback_order():
    assert memory.next_lower("full", "cuda", ALL) == "offload"
    assert memory.next_lower("offload", "cuda", ALL) == "int8"
    assert memory.next_lower("offload", "cuda", set()) == "lowvram"
    assert memory.next_lower("int8", "cuda", ALL) == "torchao"
    assert memory.next_lower("torchao", "cuda", BNB) == "nf4"
    assert memory.next_lower("nf4", "cuda", ALL) == "lowvram"
    assert memory.next_lower("lowvram", "cuda", ALL) is None
    assert memory.next_lower("full", "cpu", ALL) is None


def test_vram_estimates_fall_with_the_mode():
    needs = [memory.vram_needed_gib(mode) for mode in memory.MODE_NAMES]
    assert needs == sorted(needs, reverse=True)
    assert all(memory.vram_needed_gib(m, 1024) > memory.vram_needed_gib(m, 640)
               for m in memory.MODE_NAMES)


def test_check_mode_errors():
    assert memory.check_mode("offload", "cuda", set()) == "offload"
    with pytest.raises(BackendUnavailable, match="pip install bitsandbytes"):
        memory.check_mode("nf4", "cuda", set())
    with pytest.raises(BadRequest, match="needs a CUDA GPU"):
        memory.check_mode("offload", "cpu", ALL)
    with pytest.raises(BadRequest, match="unknown memory mode"):
        memory.check_mode("tiny", "cuda", ALL)


def test_oom_advice_names_the_next_mode():
    advice = memory.oom_advice("full", "cuda", set(), 1024)
    assert "--memory-mode offload" in advice and "--resolution 640" in advice
    assert "lowest memory mode" in memory.oom_advice("lowvram", "cuda", ALL, 640)


def test_out_of_memory_detection():
    import torch

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert is_out_of_memory(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
        "tried to allocate 204485376 bytes. Error code 12 (Cannot allocate memory)"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def _backend_after_oom(memory_mode: str) -> QwenBackend:
    """A backend in the state a CUDA OOM in 'full' mode leaves it (no pipeline loaded here)."""
    backend = QwenBackend(Settings(model="unused", memory_mode=memory_mode))
    backend._device = DeviceInfo("cuda:0", "cuda", "bfloat16", "Test GPU", 10 * GIB, 24 * GIB)
    backend._mode = "full"
    return backend


def test_oom_under_auto_steps_down_and_retries():
    backend = _backend_after_oom("auto")
    events: list[Progress] = []
    options = parse_options(DecomposeRequest(layers=2), backend.settings)
    backend._after_out_of_memory(RuntimeError("CUDA out of memory"), options, events.append)
    assert backend._auto_floor == "offload"
    assert "retrying in 'offload'" in events[-1].message
    # The next load under auto starts from the lower mode.
    info = backend._device
    assert backend._choose_mode(info, 640)[0] == "offload"


def test_oom_with_a_chosen_mode_names_the_next_one():
    backend = _backend_after_oom("full")
    options = parse_options(DecomposeRequest(layers=2), backend.settings)
    with pytest.raises(OutOfMemory) as caught:
        backend._after_out_of_memory(RuntimeError("CUDA out of memory"), options, print)
    assert caught.value.code == "out_of_memory"
    assert "Test GPU" in caught.value.message and "--memory-mode offload" in caught.value.message


def test_request_options_are_validated():
    settings = Settings()
    assert parse_options(DecomposeRequest(), settings).layers == 4
    with pytest.raises(BadRequest):
        DecomposeRequest(layers=11)
    for bad in ({"resolution": 512}, {"steps": 0}, {"steps": 1.5}, {"caption_language": "fr"},
                {"true_cfg_scale": "high"}, {"cfg_normalize": "yes"}, {"caption": 3}):
        with pytest.raises(BadRequest):
            parse_options(DecomposeRequest(layers=2, options=bad), settings)
    options = parse_options(
        DecomposeRequest(layers=3, seed=7, options={"resolution": 1024, "steps": 20,
                                                    "caption": " a cat ",
                                                    "caption_language": "zh"}),
        settings,
    )
    assert (options.resolution, options.steps, options.caption, options.use_en_prompt,
            options.seed) == (1024, 20, "a cat", False, 7)


def test_quantization_configs_per_component():
    """int8/nf4 quantize both big components, each with its own library's config class."""
    pytest.importorskip("bitsandbytes")
    import torch
    from layerlift.inference.backends.qwen.placement import quantization_config

    assert quantization_config("full", torch.bfloat16) is None
    assert quantization_config("lowvram", torch.bfloat16) is None
    int8 = quantization_config("int8", torch.bfloat16).quant_mapping
    assert set(int8) == {"transformer", "text_encoder"}
    assert int8["transformer"].__class__.__module__.startswith("diffusers")
    assert int8["text_encoder"].__class__.__module__.startswith("transformers")
    assert all(config.load_in_8bit for config in int8.values())
    nf4 = quantization_config("nf4", torch.bfloat16).quant_mapping
    assert all(config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
               for config in nf4.values())
    assert nf4["transformer"].bnb_4bit_compute_dtype == torch.bfloat16


def test_bucket_size_matches_the_pipeline_and_rejects_thin_pictures():
    pytest.importorskip("diffusers")
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_layered import calculate_dimensions
    from layerlift.inference.backends.qwen.pipeline_call import bucket_size

    for width, height, resolution in ((480, 640, 640), (4096, 4096, 1024), (1920, 1080, 640)):
        assert bucket_size(width, height, resolution) == calculate_dimensions(
            resolution * resolution, width / height
        )
    with pytest.raises(BadRequest, match="too thin"):
        bucket_size(4000, 10, 640)
