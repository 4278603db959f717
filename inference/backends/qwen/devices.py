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


# The device settings a user may give: a kind, or `cuda:N` for one GPU of several ("gpu" is
# also read, as cuda). The CLI's help, the settings window's list and the refusal below
# come from here.
DEVICE_KINDS = ("auto", "cuda", "mps", "cpu")
DEVICE_HELP = "auto, cuda, cuda:N, mps or cpu"
# What the settings window lists (it takes any other text as well).
DEVICE_CHOICES = ("auto", "cuda", "cuda:0", "cuda:1", "mps", "cpu")


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
    # GPU memory this process's allocator holds (our own weights and cache): usable by the
    # next job, so it counts with the free memory when a job is planned.
    reserved_bytes: int = 0

    @property
    def budget_bytes(self) -> int | None:
        """The GPU memory a job of this process may use: free plus what we hold already."""
        return None if self.free_bytes is None else self.free_bytes + self.reserved_bytes


def _parse(setting: str | None) -> tuple[str, int | None]:
    text = (setting or "auto").strip().lower()
    if text in (*DEVICE_KINDS, "gpu"):
        return ("cuda" if text == "gpu" else text), None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise BadRequest(f"unknown device {setting!r}; use {DEVICE_HELP}")


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
            reserved_bytes=int(torch.cuda.memory_reserved(index)),
        )
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BackendUnavailable("no Apple (MPS) GPU is usable here")
        total = getattr(torch.mps, "recommended_max_memory", lambda: None)()
        return DeviceInfo(device="mps", kind="mps", dtype="bfloat16", name="Apple GPU (MPS)",
                          total_bytes=total)
    return DeviceInfo(device="cpu", kind="cpu", dtype="float32", name="CPU", warning=CPU_WARNING)


def live_budget(info: DeviceInfo) -> int | None:
    """`budget_bytes` measured now (CUDA only): free memory plus this process's reserve."""
    if info.kind != "cuda":
        return None
    import torch

    index = torch.device(info.device).index or 0
    free, _total = torch.cuda.mem_get_info(index)
    return int(free) + int(torch.cuda.memory_reserved(index))


def ram_bytes() -> int | None:
    """Physical RAM of this machine, without psutil or torch (None where unknown)."""
    import os
    import sys

    if sys.platform == "win32":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong),
                        ("total", ctypes.c_ulonglong), ("available", ctypes.c_ulonglong),
                        ("page_total", ctypes.c_ulonglong), ("page_free", ctypes.c_ulonglong),
                        ("virtual_total", ctypes.c_ulonglong),
                        ("virtual_free", ctypes.c_ulonglong), ("extended", ctypes.c_ulonglong)]

        status = _Status()
        status.length = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore
            return int(status.total)
        return None
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def available_ram_bytes() -> int | None:
    """RAM available to new allocations (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


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
