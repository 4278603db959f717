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


def _machine(free_gib: float | None, libraries=frozenset(), ram_gib: float = 128,
             name: str = "GPU X") -> memory.Machine:
    free = None if free_gib is None else int(free_gib * GIB)
    return memory.Machine("cuda", name, free, free, int(ram_gib * GIB), frozenset(libraries))


# (free VRAM, libraries, layers, resolution) -> what `auto` picks for that job.
@pytest.mark.parametrize(
    ("free_gib", "libraries", "layers", "resolution", "expected"),
    [
        (79, set(), 4, 640, "full"),
        (79, set(), 4, 1024, "full"),  # 70.4 GiB at its peak
        (79, set(), 10, 640, "full"),  # 69.9
        (79, set(), 10, 1024, "offload"),  # full needs 95 GiB: the measured OOM on 80 GB
        (64, set(), 4, 640, "full"),
        (62, set(), 4, 640, "offload"),  # 60.2 GiB plus the margin does not fit
        (62, set(), 4, 1024, "offload"),
        (47, ALL, 4, 640, "offload"),
        (32, BNB, 4, 640, "int8"),  # int8 peaks at ~29 GiB while bitsandbytes loads
        (24, BNB, 4, 640, "nf4"),
        (24, ALL, 4, 640, "torchao"),
        (24, set(), 4, 640, "lowvram"),  # quantized modes need their libraries
        (20, BNB, 4, 1024, "nf4"),
        (20, set(), 4, 1024, "lowvram"),
        (16, BNB, 4, 1024, None),  # the VAE's decode alone needs ~17 GiB at 1024 px (measured)
        (16, BNB, 4, 640, "lowvram"),
        (8, ALL, 4, 640, "lowvram"),  # 6.7 GiB planned, 6.4 measured
        (8, ALL, 5, 640, None),
    ],
)
def test_auto_choice_per_job(free_gib, libraries, layers, resolution, expected):
    job = memory.Job.of(layers, resolution)
    mode, why = memory.choose_auto(job, _machine(free_gib, libraries))
    assert mode == expected, why
    assert f"{free_gib:.1f} GiB free on GPU X" in why
    assert job.describe() in why


def test_a_job_that_fits_no_mode_names_the_biggest_that_does():
    machine = _machine(8, ALL)
    mode, why = memory.choose_auto(memory.Job.of(10, 1024), machine)
    assert mode is None and "no memory mode fits 10 layers at 1024 px" in why
    best = memory.largest_job(machine, 1024)
    assert (best.resolution, best.layers) == (640, 4)
    assert [(j.layers, j.resolution) for j in memory.largest_jobs(machine, 1024)] == [
        (1, 1024), (4, 640)]
    text = memory.refusal(memory.Job.of(10, 1024), machine)
    assert "'lowvram'" in text and "--layers 4 --resolution 640" in text
    assert "1 layer at 1024 px (--layers 1 --resolution 1024)" in text
    # RAM counts too: lowvram and offload hold the weights in RAM.
    small_ram = _machine(24, set(), ram_gib=32)
    assert memory.choose_auto(memory.Job.of(4, 640), small_ram)[0] is None
    assert "RAM" in memory.judge("lowvram", memory.Job.of(4, 640), small_ram)[1]
    assert memory.choose_auto(memory.Job.of(4, 640), _machine(24, BNB, ram_gib=32))[0] == "nf4"


def test_auto_choice_off_cuda_and_without_a_figure():
    job = memory.Job()
    assert memory.choose_auto(job, memory.Machine("cpu"))[0] == "full"
    assert memory.choose_auto(job, memory.Machine("mps"))[0] == "full"
    mode, why = memory.choose_auto(job, _machine(None, ALL))
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


def test_plans_fall_with_the_mode_and_grow_with_the_job():
    job = memory.Job.of(4, 640)
    lossless = [memory.plan(mode, job).vram_gib for mode in ("full", "offload", "lowvram")]
    assert lossless == sorted(lossless, reverse=True)
    for mode in memory.MODE_NAMES:
        small = memory.plan(mode, memory.Job.of(2, 640)).run_vram_gib
        assert memory.plan(mode, memory.Job.of(4, 640)).run_vram_gib > small
        assert memory.plan(mode, memory.Job.of(4, 1024)).run_vram_gib > small
        assert memory.plan(mode, job, act_ratio=2).run_vram_gib > memory.plan(mode,
                                                                               job).run_vram_gib


def test_check_mode_errors():
    assert memory.check_mode("offload", "cuda", set()) == "offload"
    with pytest.raises(BackendUnavailable, match="pip install bitsandbytes"):
        memory.check_mode("nf4", "cuda", set())
    with pytest.raises(BadRequest, match="needs a CUDA GPU"):
        memory.check_mode("offload", "cpu", ALL)
    with pytest.raises(BadRequest, match="unknown memory mode"):
        memory.check_mode("tiny", "cuda", ALL)


def test_oom_advice_names_what_the_plan_says_fits():
    job = memory.Job.of(4, 1024)
    advice = memory.oom_advice("full", job, _machine(60, set()))
    assert "--memory-mode offload fits this job by the plan" in advice
    assert "--resolution 640" in advice
    advice = memory.oom_advice("lowvram", memory.Job.of(10, 640), _machine(8, ALL))
    assert "lowest memory mode" in advice and "--layers 4 --resolution 640" in advice


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


def _gpu(free_gib: float) -> DeviceInfo:
    return DeviceInfo("cuda:0", "cuda", "bfloat16", "Test GPU", int(free_gib * GIB),
                      int(80 * GIB))


def _backend(memory_mode: str, monkeypatch) -> QwenBackend:
    """A backend with made-up machine figures (nothing is loaded: these test the planning)."""
    monkeypatch.setattr("layerlift.inference.backends.qwen.devices.ram_bytes",
                        lambda: 128 * GIB)
    monkeypatch.setattr(memory, "installed_libraries", lambda: frozenset())
    return QwenBackend(Settings(model="unused", memory_mode=memory_mode))


def _out_of_memory_in(backend: QwenBackend, mode: str, info: DeviceInfo, job, events):
    """The state a CUDA OOM in `mode` leaves, then the backend's handling of it."""
    backend._device, backend._mode = info, mode
    return backend._after_out_of_memory(RuntimeError("CUDA out of memory"), job, events.append)


def test_auto_retries_the_job_lower_and_plans_the_next_job_afresh(monkeypatch):
    backend = _backend("auto", monkeypatch)
    info = _gpu(79)
    big = memory.Job.of(10, 640)  # planned 69.9 GiB in full
    small = memory.Job.of(2, 640)
    assert backend._choose_mode(info, big)[0] == "full"
    events: list[Progress] = []
    below = _out_of_memory_in(backend, "full", info, big, events)
    assert below == "full"
    assert "retrying this job in a lower mode" in events[-1].message
    # This job retries below 'full'...
    assert backend._choose_mode(info, big, below)[0] == "offload"
    # ...the next jobs plan afresh: a small one gets 'full' again; the big one, now known to
    # need more than 79 GiB there, does not.
    assert backend._choose_mode(info, small)[0] == "full"
    mode, why = backend._choose_mode(info, big)
    assert mode == "offload" and "10 layers at 640 px" in why
    assert backend._plan_ratio > 1


def test_a_job_that_fits_no_mode_is_refused_before_loading(monkeypatch):
    backend = _backend("auto", monkeypatch)
    with pytest.raises(OutOfMemory) as caught:
        backend._choose_mode(_gpu(8), memory.Job.of(10, 1024))
    assert "fits no memory mode" in caught.value.message
    assert "--layers 4 --resolution 640" in caught.value.message
    assert backend._pipe is None


def test_oom_with_a_chosen_mode_names_the_mode_and_settings_that_fit(monkeypatch):
    backend = _backend("full", monkeypatch)
    with pytest.raises(OutOfMemory) as caught:
        _out_of_memory_in(backend, "full", _gpu(60), memory.Job.of(4, 1024), [])
    message = caught.value.message
    assert caught.value.code == "out_of_memory"
    assert "Test GPU" in message and "memory mode 'full'" in message
    assert "4 layers at 1024 px" in message
    assert "--memory-mode offload fits this job by the plan" in message


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
