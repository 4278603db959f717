"""Each memory mode of the qwen backend: load time, run time, peak memory, and how far its
layers are from `full`'s.

On CUDA this is the check of the memory-mode table in the README: peak VRAM per mode
(torch's allocator peak, which is what decides an out-of-memory error), and the speed each
mode costs. On the CPU the offloading hooks still run (the CPU stands in for the GPU), so the
figures there show the modes' overhead and that the lossless ones are lossless; peak memory
is then the process's peak RSS above what it held before loading.

By default it builds the tiny random-weight pipeline of the test suite (no weights needed).
With --model it measures a real checkpoint: `python bench/qwen_modes.py --model
/models/Qwen-Image-Layered --device cuda --steps 20`. Modes are loaded through the backend's
own placement code, one after another, each unloaded before the next.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from layerlift.inference.backends.base import DecomposeRequest  # noqa: E402
from layerlift.inference.backends.qwen import devices, memory  # noqa: E402
from layerlift.inference.backends.qwen.library_noise import quiet_known_noise  # noqa: E402
from layerlift.inference.backends.qwen.loading import ModelSource, check_model_files  # noqa: E402
from layerlift.inference.backends.qwen.pipeline_call import (  # noqa: E402
    StepReporter,
    call_kwargs,
    parse_options,
)
from layerlift.inference.backends.qwen.placement import load_pipeline  # noqa: E402
from layerlift.inference.settings import Settings  # noqa: E402

CAPTION = "a poster with a title, shapes and a background"
GIB = 1024**3


class PeakMemory:
    """Peak memory of one phase: CUDA allocator peak, or the process's peak RSS on Linux."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.base = 0

    @staticmethod
    def _rss_peak() -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def reset(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return
        with contextlib.suppress(OSError):  # "5" resets VmHWM to the current RSS (Linux)
            Path("/proc/self/clear_refs").write_text("5")
        self.base = self._rss_peak() or 0

    def peak_gib(self) -> float | None:
        if self.kind == "cuda":
            import torch

            return (torch.cuda.max_memory_allocated() - self.base) / GIB
        peak = self._rss_peak()
        return None if peak is None else (peak - self.base) / GIB


def run_once(pipe: Any, image: np.ndarray, layers: int, steps: int) -> list[np.ndarray]:
    import torch

    request = DecomposeRequest(layers=layers, seed=0, options={"caption": CAPTION,
                                                               "steps": steps})
    options = parse_options(request, Settings(resolution=640))
    reporter = StepReporter(options.steps, lambda _: None, None, 0.0, 1.0)
    generator = torch.Generator("cpu").manual_seed(options.seed)
    output = pipe(**call_kwargs(options, Image.fromarray(image, "RGBA"), CAPTION, generator,
                                reporter))
    return [np.asarray(layer.convert("RGBA")) for layer in output.images[0]]


def measure(source: ModelSource, info: devices.DeviceInfo, mode: str, image: np.ndarray,
            layers: int, steps: int) -> tuple[dict, list[np.ndarray] | None]:
    peak = PeakMemory(info.kind)
    gc.collect()
    peak.reset()
    row: dict[str, Any] = {"mode": mode}
    started = time.perf_counter()
    try:
        pipe = load_pipeline(source, info, mode, offline=True)
        row["load_s"] = time.perf_counter() - started
        row["load_peak_gib"] = peak.peak_gib()
        peak.reset()
        started = time.perf_counter()
        result = run_once(pipe, image, layers, steps)
        row["run_s"] = time.perf_counter() - started
        row["run_peak_gib"] = peak.peak_gib()
    except Exception as exc:  # a mode that cannot run here is a row, not the end
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row, None
    del pipe
    devices.release_memory(info.kind)
    return row, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: build the tiny test pipeline)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--modes", nargs="*", default=None,
                        help="modes to measure (default: every mode whose library is here)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"),
                        help="override the device's dtype (bfloat16 on the CPU runs the CUDA "
                             "dtype path, slowly)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    quiet_known_noise()  # before the tiny pipeline's builder imports diffusers
    info = devices.probe(args.device)
    if args.dtype:
        info = dataclasses.replace(info, dtype=args.dtype)
    libraries = memory.installed_libraries()
    modes = args.modes or [
        spec.name for spec in memory.MODES
        if spec.library is None or spec.library in libraries
    ]
    if "full" in modes:  # the reference the others are compared with comes first
        modes = ["full", *(m for m in modes if m != "full")]
    image = np.asarray(Image.open(REPO / "examples" / "poster.png").convert("RGBA"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            from tests.qwen.tiny_pipeline import save_tiny_pipeline

            folder = str(save_tiny_pipeline(Path(tmp) / "tiny"))
        source = ModelSource(Path(folder))
        check_model_files(source)
        reference = None
        for mode in modes:
            row, result = measure(source, info, mode, image, args.layers, args.steps)
            if result is not None:
                if reference is None and mode == "full":
                    reference = result
                if reference is not None:
                    diff = [np.abs(a.astype(int) - b.astype(int))
                            for a, b in zip(result, reference, strict=True)]
                    row["max_diff"] = int(max(d.max() for d in diff))
                    row["mean_diff"] = float(np.mean([d.mean() for d in diff]))
            rows.append(row)

    header = {"device": info.device, "device_name": info.name, "dtype": info.dtype,
              "model": "tiny test pipeline" if args.model is None else args.model,
              "layers": args.layers, "steps": args.steps}
    if args.json:
        print(json.dumps({**header, "rows": rows}, indent=2))
        return 0
    print(f"{header['model']} on {info.name or info.device} ({info.dtype}), "
          f"{args.layers} layers, {args.steps} steps, poster 480x640 at the 640 bucket")
    unit = "VRAM" if info.kind == "cuda" else "RSS"
    print(f"{'mode':<9}{'load':>8}{'peak ' + unit:>12}{'run':>9}{'peak ' + unit:>12}"
          f"{'vs full: max':>14}{'mean':>8}")

    def gib(value: float | None) -> str:
        if value is None:
            return "n/a"
        value = max(value, 0.0)  # RSS can shrink below the starting point
        return f"{value:.2f} GiB" if value >= 1 else f"{value * 1024:.0f} MiB"

    for row in rows:
        if "error" in row:
            print(f"{row['mode']:<9}  cannot run here: {row['error']}")
            continue
        compare = (f"{row['max_diff']:>14}{row['mean_diff']:>8.3f}" if "max_diff" in row
                   else f"{'':>14}{'':>8}")
        print(f"{row['mode']:<9}{row['load_s']:>7.1f}s{gib(row['load_peak_gib']):>12}"
              f"{row['run_s']:>8.1f}s{gib(row['run_peak_gib']):>12}{compare}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
