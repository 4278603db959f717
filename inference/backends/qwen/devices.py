"""Which torch device runs the model, in which dtype, and how much memory it has free.

Isolated because it is the only place (with memory freeing) that touches CUDA/MPS APIs:
everything else gets a plain `DeviceInfo`, which tests can build by hand.
"""

from __future__ import annotations

import gc
import importlib.util
from dataclasses import dataclass
from typing import Any

from layerlift.inference.errors import BackendUnavailable, BadRequest

CPU_WARNING = (
    "running Qwen-Image-Layered on the CPU: the real model takes hours per image and about "
    "120 GB of RAM in float32; use a CUDA GPU if you have one"
)


@dataclass(frozen=True)
class DeviceInfo:
    """The chosen device. `free_bytes`/`total_bytes` are None where they cannot be measured."""

    device: str  # "cuda:0", "mps", "cpu"
    kind: str  # "cuda", "mps", "cpu"
    dtype: str  # torch dtype name: "bfloat16" or "float32"
    name: str = ""
    free_bytes: int | None = None
    total_bytes: int | None = None
    warning: str | None = None


def _parse(setting: str | None) -> tuple[str, int | None]:
    text = (setting or "auto").strip().lower()
    if text in ("auto", "cpu", "mps", "cuda", "gpu"):
        return ("cuda" if text == "gpu" else text), None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise BadRequest(f"unknown device {setting!r}; use auto, cuda, cuda:N, mps or cpu")


def gpu_check(setting: str | None) -> tuple[bool, str]:
    """Whether the device setting can be honoured here (imports torch; model must be set).

    `auto` needs a CUDA or MPS device: choosing the Qwen backend automatically on a CPU-only
    machine would start an hours-long run nobody asked for. `cpu` is always allowed.
    """
    kind, index = _parse(setting)
    if kind == "cpu":
        return True, "CPU run requested"
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed (pip install 'layerlift[qwen]')"
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if kind == "cuda":
        if not has_cuda:
            return False, "no CUDA GPU is usable here (--device cpu runs on the CPU, slowly)"
        if index is not None and index >= torch.cuda.device_count():
            return False, f"there is no cuda:{index} ({torch.cuda.device_count()} CUDA devices)"
        return True, "CUDA GPU present"
    if kind == "mps":
        return (True, "Apple GPU present") if has_mps else (False, "no Apple (MPS) GPU here")
    if has_cuda or has_mps:
        return True, "GPU present"
    return False, (
        "no usable GPU (CUDA or MPS) was found; pass --device cpu to run on the CPU anyway "
        "(hours per image with the real model)"
    )


def probe(setting: str | None) -> DeviceInfo:
    """Resolve the device setting to a concrete device with its dtype and free memory."""
    import torch

    kind, index = _parse(setting)
    if kind == "auto":
        if torch.cuda.is_available():
            kind = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            kind = "mps"
        else:
            kind = "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA GPU is usable here (--device cpu runs on the CPU)")
        index = torch.cuda.current_device() if index is None else index
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(f"there is no cuda:{index}")
        free, total = torch.cuda.mem_get_info(index)
        return DeviceInfo(
            device=f"cuda:{index}", kind="cuda", dtype="bfloat16",
            name=torch.cuda.get_device_name(index), free_bytes=int(free), total_bytes=int(total),
        )
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BackendUnavailable("no Apple (MPS) GPU is usable here")
        total = getattr(torch.mps, "recommended_max_memory", lambda: None)()
        return DeviceInfo(device="mps", kind="mps", dtype="bfloat16", name="Apple GPU (MPS)",
                          total_bytes=total)
    return DeviceInfo(device="cpu", kind="cpu", dtype="float32", name="CPU", warning=CPU_WARNING)


def torch_dtype(info: DeviceInfo) -> Any:
    import torch

    return getattr(torch, info.dtype)


def release_memory(kind: str) -> None:
    """Give cached allocator blocks back so the next job (or another program) can use them."""
    gc.collect()
    if kind == "cpu":
        return
    import torch

    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif kind == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


# How an allocation failure reads when it is not torch.OutOfMemoryError: CUDA/MPS messages,
# cuBLAS failing to get a workspace, and torch's CPU allocator (errno 12).
_OOM_SIGNS = ("out of memory", "cublas_status_alloc_failed", "can't allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OOM error and the RuntimeErrors CUDA/MPS/cuBLAS/the CPU raise for it."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is present whenever this runs
        pass
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(sign in text for sign in _OOM_SIGNS)
    return False
