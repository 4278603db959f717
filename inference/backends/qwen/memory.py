"""Memory modes for a 20B-parameter transformer plus a 7B text encoder on consumer GPUs.

Pure logic, no torch: which modes exist on a device, which one `auto` picks from the free
VRAM, and which one to fall back to after an out-of-memory error. Keeping it free of torch
lets the tests drive it with made-up VRAM figures on a machine without a GPU.

VRAM figures are estimates for Qwen-Image-Layered computed from its parameter counts
(transformer 20.4B, text encoder 8.3B, VAE 0.13B) plus activation headroom for the bucket;
they are what `auto` compares the free memory with.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass

from layerlift.inference.errors import BackendUnavailable, BadRequest

GIB = 1024**3


@dataclass(frozen=True)
class ModeSpec:
    """One memory mode: what it does, what it needs, and what it costs."""

    name: str
    weights_gib: float  # weights resident on the GPU at the peak
    library: str | None  # python package the mode needs beyond diffusers
    lossless: bool
    summary: str


# Ordered from most VRAM (fastest) to least; the OOM fallback walks this list downwards.
# bitsandbytes quantizes on the GPU while it loads (its device map puts each quantized
# component there), so int8 and nf4 peak while loading, with the transformer and the text
# encoder both resident before model offload parks them in RAM: their figures are that sum
# (int8 19 + 9 GiB, nf4 10 + 5 GiB, embeddings and lm_head staying bf16). torchao quantizes
# wherever the weights load (the CPU here), so its peak is the int8 transformer alone.
MODES: tuple[ModeSpec, ...] = (
    ModeSpec("full", 54.0, None, True, "every component on the GPU in bf16"),
    ModeSpec("offload", 38.5, None, True,
             "one component on the GPU at a time (enable_model_cpu_offload)"),
    ModeSpec("int8", 28.0, "bitsandbytes", False,
             "transformer and text encoder in 8-bit (bitsandbytes), with model offload"),
    ModeSpec("torchao", 19.5, "torchao", False,
             "transformer int8 weight-only (torchao), with model offload"),
    ModeSpec("nf4", 15.0, "bitsandbytes", False,
             "transformer and text encoder in 4-bit NF4 (bitsandbytes), with model offload"),
    ModeSpec("lowvram", 2.5, None, True,
             "layers streamed to the GPU as needed (group offloading); slow, needs ~64 GB RAM"),
)
MODE_NAMES: tuple[str, ...] = tuple(spec.name for spec in MODES)
ALL_MODE_CHOICES: tuple[str, ...] = ("auto", *MODE_NAMES)
_SPECS = {spec.name: spec for spec in MODES}

# Activations, latents and the VAE decode on top of the weights, per resolution bucket.
_ACTIVATION_GIB = {640: 3.0, 1024: 7.0}


def spec(mode: str) -> ModeSpec:
    try:
        return _SPECS[mode]
    except KeyError:
        raise BadRequest(
            f"unknown memory mode {mode!r}; choose one of: {', '.join(ALL_MODE_CHOICES)}"
        ) from None


def vram_needed_gib(mode: str, resolution: int = 640) -> float:
    """Estimated peak VRAM of `mode` for the real model at a resolution bucket."""
    return spec(mode).weights_gib + _ACTIVATION_GIB.get(resolution, _ACTIVATION_GIB[1024])


def installed_libraries() -> frozenset[str]:
    """Quantization libraries importable here (checked without importing them)."""
    return frozenset(
        name for name in ("bitsandbytes", "torchao") if importlib.util.find_spec(name) is not None
    )


def usable_modes(kind: str, libraries: Iterable[str]) -> list[str]:
    """Modes that can run on a device kind ("cuda", "mps", "cpu") with these libraries.

    On the CPU and on Apple's unified memory, moving weights between "GPU" and "CPU" saves
    nothing, and bitsandbytes/torchao kernels target CUDA, so only `full` makes sense there.
    """
    if kind != "cuda":
        return ["full"]
    libraries = set(libraries)
    return [s.name for s in MODES if s.library is None or s.library in libraries]


def check_mode(mode: str, kind: str, libraries: Iterable[str]) -> str:
    """Validate a user-chosen (non-auto) mode for this device; returns it."""
    wanted = spec(mode)
    libraries = set(libraries)
    if kind != "cuda" and mode != "full":
        raise BadRequest(
            f"memory mode {mode!r} needs a CUDA GPU; on {kind} only 'full' (or 'auto') applies"
        )
    if wanted.library and wanted.library not in libraries:
        raise BackendUnavailable(
            f"memory mode {mode!r} needs the {wanted.library} package: "
            f"pip install {wanted.library}"
        )
    return mode


def choose_auto(
    kind: str,
    free_bytes: int | None,
    libraries: Iterable[str],
    resolution: int = 640,
    device_name: str = "",
) -> tuple[str, str]:
    """Pick the fastest mode whose estimated peak fits in the free VRAM; returns (mode, why)."""
    modes = usable_modes(kind, libraries)
    if kind != "cuda":
        where = "the CPU" if kind == "cpu" else f"{device_name or kind} (shared memory)"
        return "full", f"auto chose 'full': running on {where}, where offloading saves nothing"
    if free_bytes is None:
        return "offload", "auto chose 'offload': the free GPU memory could not be measured"
    free_gib = free_bytes / GIB
    where = f"{free_gib:.1f} GiB free on {device_name or 'the GPU'}"
    skipped: list[str] = []
    for mode in modes:
        need = vram_needed_gib(mode, resolution)
        if need <= free_gib:
            because = f"; {skipped[-1]}" if skipped else ""
            return mode, f"auto chose {mode!r}: {where}, it needs about {need:.0f} GiB{because}"
        skipped.append(f"{mode!r} needs about {need:.0f} GiB at {resolution} px")
    mode = modes[-1]
    return mode, (
        f"auto chose {mode!r} although {where} is below its estimated "
        f"{vram_needed_gib(mode, resolution):.0f} GiB: it may run out of memory"
    )


def next_lower(mode: str, kind: str, libraries: Iterable[str]) -> str | None:
    """The mode to try after `mode` ran out of memory, or None when none is lower."""
    modes = usable_modes(kind, libraries)
    order = MODE_NAMES.index(spec(mode).name)
    for candidate in modes:
        if MODE_NAMES.index(candidate) > order:
            return candidate
    return None


def oom_advice(mode: str, kind: str, libraries: Iterable[str], resolution: int) -> str:
    """The sentence an OutOfMemory error ends with: what to try next."""
    lower = next_lower(mode, kind, libraries)
    tips = []
    if lower:
        tips.append(f"try --memory-mode {lower} (about {vram_needed_gib(lower, resolution):.0f} "
                    f"GiB) or --memory-mode auto")
    else:
        tips.append(f"{mode!r} is the lowest memory mode here")
    if resolution > 640:
        tips.append("use --resolution 640")
    tips.append("close other programs that use the GPU" if kind != "cpu"
                else "close other programs to free RAM")
    return "; ".join(tips)
