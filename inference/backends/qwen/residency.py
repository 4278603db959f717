"""Moving a whole component between the GPU and (pinned) RAM without copying it back.

The `offload` mode of diffusers (`enable_model_cpu_offload`) copies every component to the GPU
and back to pageable RAM for every job: 57 GB each way, about 53 s per job on an H100. Weights
never change during inference, so the copy back is waste: a `WeightSwap` keeps one CPU copy
of each tensor (pinned on CUDA, so the copy to the GPU runs at full bus speed and without a
CPU stall), onloads by copying it to the GPU, and offloads by pointing the tensors at their
CPU copies again, which frees the GPU copies at once.
"""

from __future__ import annotations

import time
from typing import Any


def module_tensors(module: Any) -> list[Any]:
    """Every parameter and buffer of `module`, each once (tied weights are one tensor)."""
    seen: set[int] = set()
    found = []
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            found.append(tensor)
    return found


def pin_in_place(module: Any) -> int:
    """Move `module`'s CPU tensors into pinned memory one at a time; returns bytes pinned.

    Pinning first means diffusers' group offloading (which pins a copy of every tensor that
    is not pinned yet) does not hold the weights twice in RAM while it sets up.
    """
    import torch

    if not torch.cuda.is_available():
        return 0
    pinned = 0
    for tensor in module_tensors(module):
        if tensor.device.type == "cpu" and not tensor.is_pinned():
            tensor.data = tensor.data.pin_memory()
            pinned += tensor.numel() * tensor.element_size()
    return pinned


class WeightSwap:
    """One module's weights, resident in RAM, onloaded to a device on demand."""

    def __init__(self, module: Any, pin: bool) -> None:
        self.module = module
        self.cpu: list[tuple[Any, Any]] = []
        self.device: Any = None  # where the weights are now, None for the CPU copies
        self.bytes = 0
        for tensor in module_tensors(module):
            data = tensor.data if tensor.device.type == "cpu" else tensor.data.cpu()
            if pin and not data.is_pinned():
                data = data.pin_memory()
            tensor.data = data
            self.cpu.append((tensor, data))
            self.bytes += data.numel() * data.element_size()
        self.seconds_moving = 0.0

    @property
    def on_device(self) -> bool:
        return self.device is not None

    def onload(self, device: Any) -> float:
        """Copy the weights to `device` (no-op if there already); returns the seconds spent."""
        import torch

        if self.device is not None and str(self.device) == str(device):
            return 0.0
        started = time.perf_counter()
        target = torch.device(device)
        if target.type == "cpu":  # the copies are the weights: nothing to move
            self.offload()
            self.device = target
            return 0.0
        for tensor, data in self.cpu:
            # Pinned sources copy asynchronously on the current stream, which orders them
            # before the kernels that use them.
            tensor.data = data.to(target, non_blocking=data.is_pinned())
        if target.type == "cuda":
            torch.cuda.current_stream(target).synchronize()
        self.device = target
        spent = time.perf_counter() - started
        self.seconds_moving += spent
        return spent

    def offload(self) -> None:
        """Point the tensors at their CPU copies again; the GPU copies are freed, none copied."""
        if self.device is None:
            return
        for tensor, data in self.cpu:
            tensor.data = data
        self.device = None

    def release(self) -> None:
        self.offload()
        self.cpu.clear()
