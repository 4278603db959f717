"""Each memory mode of the qwen backend: load time, peak memory, seconds per step, the fixed
time every job pays, and how far its layers are from `full`'s.

Every job runs through the backend's own job path (`QwenBackend._run`: the placement's moves,
the text phase, the denoising loop, the VAE), so what is timed is what a user's job costs.
Each point is run twice, with STEPS_A and STEPS_B denoising steps: the difference gives the
seconds per step, and the fixed time per job is what is left of the shorter run once its
steps, its text encoding and its VAE decode are taken out (moving weights, hooks, set-up).
The issue's bar: in every mode the fixed time is at most 10 % of a 50-step run of the job.

Three ways to run it:

- default: the tiny random-weight pipeline of the test suite (no weights needed), on any
  device; on the CPU the offloading hooks still run (the CPU stands in for the GPU), peak
  memory is then the process's peak RSS;
- `--model PATH --device cuda`: a real checkpoint, every mode loaded from disk;
- `--real-size` (CUDA only): the real architecture with random weights built in memory
  (bench/real_size.py: 20.43B + 8.29B + 0.13B parameters, bf16, no download), measured in the
  lossless modes at the points of docs/qwen.md (640/4, 1024/4, 640/10, 1024/10 layers),
  printing the table of measured figures for this GPU. With `--captions` it also times
  captioning per token in each way the mode can take.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from layerlift.inference.backends.base import CancelToken, DecomposeRequest  # noqa: E402
from layerlift.inference.backends.qwen import devices, memory  # noqa: E402
from layerlift.inference.backends.qwen.library_noise import quiet_known_noise  # noqa: E402
from layerlift.inference.backends.qwen.loading import ModelSource, check_model_files  # noqa: E402
from layerlift.inference.backends.qwen.pipeline_call import parse_options  # noqa: E402
from layerlift.inference.settings import Settings  # noqa: E402

CAPTION = "a poster with a title, shapes and a background"
GIB = 1024**3
STEPS_A, STEPS_B = 2, 4
REAL_POINTS = ((640, 4), (1024, 4), (640, 10), (1024, 10))
REAL_MODES = ("full", "offload", "lowvram")
REFUSE_REAL_SIZE = ("--real-size builds the real 20B + 8B architecture (about 54 GiB of "
                    "bf16 weights) and measures CUDA memory modes: it needs a CUDA GPU, and "
                    "torch sees none here; the tiny pipeline (no option) runs anywhere")


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


def backend_for(pipe: Any, info: devices.DeviceInfo, mode: str,
                folder: Path | None = None) -> Any:
    """A QwenBackend around an already placed pipeline (as after its own loading)."""
    from layerlift.inference.backends.qwen import QwenBackend

    backend = QwenBackend(Settings(model=str(folder) if folder else None, device=info.device,
                                   memory_mode=mode))
    backend._pipe, backend._device, backend._mode = pipe, info, mode
    backend._source = ModelSource(folder) if folder else None
    return backend


def run_job(backend: Any, image: np.ndarray, layers: int, resolution: int, steps: int,
            caption: str | None = CAPTION) -> dict[str, Any]:
    """One job through the backend's job path; its layers, timings and peak VRAM."""
    options = {"steps": steps, "resolution": resolution}
    if caption:
        options["caption"] = caption
    request = DecomposeRequest(layers=layers, seed=0, options=options)
    parsed = parse_options(request, backend.settings)
    job = memory.Job.of(layers, resolution, (image.shape[1], image.shape[0]))
    result, caption_result, extra = backend._run(image, parsed, job, lambda _: None,
                                                 CancelToken())
    return {"layers": result, "timings": extra["timings"], "peak": extra.get("peak_vram_gib"),
            "caption": caption_result, "placement": extra["placement"]}


def two_runs(backend: Any, image: np.ndarray, layers: int, resolution: int,
             steps: tuple[int, int] = (STEPS_A, STEPS_B)) -> dict[str, Any]:
    """Seconds per step and the fixed time per job, from runs of two step counts."""
    short = run_job(backend, image, layers, resolution, steps[0])
    long = run_job(backend, image, layers, resolution, steps[1])
    per_step = (long["timings"]["denoise_s"] - short["timings"]["denoise_s"]) / (
        steps[1] - steps[0])
    t = short["timings"]
    fixed = t["total_s"] - t["caption_s"] - t["text_s"] - t["decode_s"] - steps[0] * per_step
    fifty = 50 * per_step + t["text_s"] + t["decode_s"] + fixed
    return {
        "s_per_step": per_step,
        "run_50_s": fifty,
        "fixed_s": fixed,
        "fixed_share": fixed / fifty if fifty > 0 else None,
        "moves_s": t["moves_s"],
        "text_s": t["text_s"],
        "decode_s": t["decode_s"],
        "peak_gib": max(x for x in (short["peak"], long["peak"], 0.0) if x is not None),
        "layers": short["layers"],
        "placement": short["placement"],
    }


def measure(source: ModelSource, info: devices.DeviceInfo, mode: str, image: np.ndarray,
            layers: int, resolution: int) -> tuple[dict, list[np.ndarray] | None]:
    from layerlift.inference.backends.qwen.placement import load_pipeline

    peak = PeakMemory(info.kind)
    gc.collect()
    peak.reset()
    row: dict[str, Any] = {"mode": mode}
    started = time.perf_counter()
    try:
        job = memory.Job.of(layers, resolution, (image.shape[1], image.shape[0]))
        pipe = load_pipeline(source, info, mode, offline=True, job=job)
        row["load_s"] = time.perf_counter() - started
        row["load_peak_gib"] = peak.peak_gib()
        backend = backend_for(pipe, info, mode, source.folder)
        run_job(backend, image, layers, resolution, 1)  # one-off costs (allocator, kernels)
        peak.reset()
        measured = two_runs(backend, image, layers, resolution)
        row["run_peak_gib"] = peak.peak_gib()
        result = measured.pop("layers")
        row.update(measured)
    except Exception as exc:  # a mode that cannot run here is a row, not the end
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row, None
    backend.unload()
    del pipe, backend
    devices.release_memory(info.kind)
    return row, result


def _gib(value: float | None) -> str:
    if value is None:
        return "n/a"
    value = max(value, 0.0)  # RSS can shrink below the starting point
    return f"{value:.2f} GiB" if value >= 1 else f"{value * 1024:.0f} MiB"


def _models(args: argparse.Namespace, info: devices.DeviceInfo) -> int:
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
            row, result = measure(source, info, mode, image, args.layers, args.resolution)
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
              "layers": args.layers, "resolution": args.resolution,
              "steps": [STEPS_A, STEPS_B]}
    if args.json:
        print(json.dumps({**header, "rows": rows}, indent=2, default=str))
        return 0
    print(f"{header['model']} on {info.name or info.device} ({info.dtype}), "
          f"{args.layers} layers, poster 480x640 at the {args.resolution} bucket")
    unit = "VRAM" if info.kind == "cuda" else "RSS"
    print(f"{'mode':<9}{'load':>8}{'peak ' + unit:>12}{'s/step':>9}{'fixed/job':>11}"
          f"{'of 50 steps':>12}{'peak ' + unit:>12}{'vs full: max':>14}{'mean':>8}")
    for row in rows:
        if "error" in row:
            print(f"{row['mode']:<9}  cannot run here: {row['error']}")
            continue
        compare = (f"{row['max_diff']:>14}{row['mean_diff']:>8.3f}" if "max_diff" in row
                   else f"{'':>14}{'':>8}")
        print(f"{row['mode']:<9}{row['load_s']:>7.1f}s{_gib(row['load_peak_gib']):>12}"
              f"{row['s_per_step']:>8.2f}s{row['fixed_s']:>10.2f}s"
              f"{100 * (row['fixed_share'] or 0):>11.1f}%{_gib(row['run_peak_gib']):>12}"
              f"{compare}")
    return 0


# -- the real architecture -----------------------------------------------------------------------
def _to_cpu(pipe: Any) -> None:
    for name in ("transformer", "text_encoder", "vae"):
        getattr(pipe, name).to("cpu")
    devices.release_memory("cuda")


def caption_per_token(backend: Any, image: np.ndarray, ways: list[str],
                      counts: tuple[int, int] = (8, 40)) -> dict[str, Any]:
    """Seconds per generated caption token in each way (from two lengths: prefill cancels)."""
    from layerlift.inference.backends.qwen import caption
    from layerlift.inference.backends.qwen.placement import placement_of

    pipe = backend._pipe
    placement = placement_of(pipe)
    picture = caption.prompt_image(pipe, Image.fromarray(image, "RGBA"), 640)
    found: dict[str, Any] = {}
    for way in ways:
        times = []
        try:
            for count in counts:
                started = time.perf_counter()
                result = caption.caption_picture(pipe, placement, picture, True, way, "bench",
                                                 lambda _: None, None,
                                                 four_bit=backend._four_bit_encoder,
                                                 max_new_tokens=count, budget_s=1e9)
                times.append((time.perf_counter() - started, result.tokens))
            (t1, n1), (t2, n2) = times
            found[way] = {"s_per_token": (t2 - t1) / max(1, n2 - n1),
                          "tokens": [n1, n2], "seconds": [t1, t2]}
        except Exception as exc:
            found[way] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    return found


# Run in a child process: memory it holds is outside this process's allocator, so the probe,
# the plan and the allocator here see only what it leaves, as on a smaller card.
BALLAST = """
import sys, time, torch
free, _ = torch.cuda.mem_get_info()
held = torch.empty(max(0, free - int(float(sys.argv[1]) * 2**30)), dtype=torch.uint8, device="cuda")
print(held.numel(), flush=True)
time.sleep(24 * 3600)
"""


def hold_all_but(card_gib: float) -> subprocess.Popen[str]:
    """A child process holding all of the GPU but `card_gib` GiB, for as long as it lives.

    That is how a big card measures what a 12 or 16 GB card's user gets: LayerLift's probe
    reads the free memory left, its plan picks and streams by it, and an allocation past it
    fails for real.
    """
    child = subprocess.Popen([sys.executable, "-c", BALLAST, str(card_gib)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    held = child.stdout.readline().strip()
    if not held:
        child.kill()
        raise RuntimeError("the process that was to hold the rest of the GPU did not start")
    print(f"holding {int(held) / GIB:.1f} GiB in another process: a {card_gib:g} GiB card",
          file=sys.stderr, flush=True)
    return child


def real_size(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        print(REFUSE_REAL_SIZE, file=sys.stderr)
        return 2
    from bench.real_size import build_pipeline

    info = devices.probe(args.device if args.device != "auto" else "cuda")
    free_gib = (info.free_bytes or 0) / GIB
    ram = devices.ram_bytes()
    build_on = "cuda" if free_gib >= memory.WEIGHTS_GIB + 2 else "cpu"
    if build_on == "cpu" and ram is not None and ram / GIB < memory.WEIGHTS_GIB + 8:
        print(f"--real-size needs {memory.WEIGHTS_GIB:.0f} GiB for the weights: {free_gib:.0f} "
              f"GiB free on {info.name} and {ram / GIB:.0f} GiB of RAM here", file=sys.stderr)
        return 2
    image = np.asarray(Image.open(REPO / "examples" / "poster.png").convert("RGBA"))
    points = [tuple(int(x) for x in p.split("x")) for p in args.points] if args.points \
        else list(REAL_POINTS)
    started = time.perf_counter()
    pipe = build_pipeline(build_on)
    build_s = time.perf_counter() - started
    ballast = None
    if args.card_gib:
        _to_cpu(pipe)
        build_on = "cpu"
        devices.release_memory("cuda")
        ballast = hold_all_but(args.card_gib)
        info = devices.probe(args.device if args.device != "auto" else "cuda")
    try:
        return _measure_real_size(args, pipe, info, image, points, build_on, build_s)
    finally:
        if ballast is not None:
            ballast.kill()


def _measure_real_size(args: argparse.Namespace, pipe: Any, info: devices.DeviceInfo,
                       image: np.ndarray, points: list[tuple[int, ...]], build_on: str,
                       build_s: float) -> int:
    import torch
    from layerlift.inference.backends.qwen.placement import place, placement_of

    modes = args.modes or list(REAL_MODES)
    rows: list[dict[str, Any]] = []
    captions: dict[str, Any] = {}
    on_cpu = build_on == "cpu"
    for mode in modes:
        if mode not in REAL_MODES:
            rows.append({"mode": mode, "error": "--real-size measures the lossless modes; "
                                                "quantized ones load from a folder (--model)"})
            continue
        if mode != "full" and not on_cpu:
            _to_cpu(pipe)
            on_cpu = True
        started = time.perf_counter()
        try:
            resolution, layers = points[0]
            place(pipe, mode, info, memory.Job.of(layers, resolution))
        except Exception as exc:
            rows.append({"mode": mode, "error": f"placement: {type(exc).__name__}: {exc}"})
            continue
        place_s = time.perf_counter() - started
        backend = backend_for(pipe, info, mode)
        first = True
        for resolution, layers in points:
            row: dict[str, Any] = {"mode": mode, "resolution": resolution, "layers": layers,
                                   "place_s": place_s if first else None,
                                   "plan_gib": memory.plan(mode, memory.Job.of(
                                       layers, resolution, (image.shape[1],
                                                            image.shape[0]))).vram_gib}
            try:
                if first:  # one-off costs: kernels, the allocator, lowvram's order tracing
                    warm = time.perf_counter()
                    run_job(backend, image, layers, resolution, 1)
                    row["first_job_s"] = time.perf_counter() - warm
                    first = False
                measured = two_runs(backend, image, layers, resolution,
                                    (args.steps_a, args.steps_b))
                measured.pop("layers")
                row.update(measured)
            except Exception as exc:
                if not devices.is_out_of_memory(exc):
                    raise
                row["error"] = "out of memory: " + str(exc).splitlines()[0][:120]
            if "error" in row:  # outside the handler: its frames hold the activations
                devices.release_memory("cuda")
            rows.append(row)
            print(json.dumps(row, default=str), file=sys.stderr, flush=True)
        if args.captions:
            # (The 4-bit way loads its copy from a model folder: --model measures it.)
            ways = {"full": ["gpu"], "offload": ["gpu"], "lowvram": ["onload", "cpu"]}[mode]
            captions[mode] = caption_per_token(backend, image, ways)
        placement_of(pipe).release()
        devices.release_memory("cuda")
    header = {"device": info.device, "device_name": info.name, "torch": torch.__version__,
              "cuda": torch.version.cuda, "built_on": build_on, "build_s": build_s,
              "steps": [args.steps_a, args.steps_b], "card_gib": args.card_gib,
              "free_gib": (info.free_bytes or 0) / GIB}
    if args.json:
        print(json.dumps({**header, "rows": rows, "captions": captions}, indent=2,
                         default=str))
        return 0
    print(f"Real-size architecture, random weights, bf16, on {info.name} (torch "
          f"{torch.__version__}, CUDA {torch.version.cuda}); poster 480x640")
    print("| mode | bucket | layers | peak VRAM (GiB, allocator) | plan (GiB) | s per step "
          "| 50 steps | fixed time per job | fixed / 50-step run | moves per job |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['mode']} | {row.get('resolution', '')} | {row.get('layers', '')} "
                  f"| {row['error']} | {row.get('plan_gib', 0):.1f} | | | | | |")
            continue
        print(f"| {row['mode']} | {row['resolution']} | {row['layers']} | "
              f"{row['peak_gib']:.1f} | {row['plan_gib']:.1f} | {row['s_per_step']:.2f} | "
              f"{row['run_50_s']:.0f} s | {row['fixed_s']:.2f} s | "
              f"{100 * row['fixed_share']:.1f} % | {row['moves_s']:.2f} s |")
    for mode, ways in captions.items():
        for way, figures in ways.items():
            if "error" in figures:
                print(f"caption in {mode}, {way}: {figures['error']}")
            else:
                print(f"caption in {mode}, {way}: {figures['s_per_token']:.3f} s per token "
                      f"({300 * figures['s_per_token']:.0f} s for 300 tokens)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: build the tiny test pipeline)")
    parser.add_argument("--real-size", action="store_true",
                        help="the real architecture with random weights, built in memory "
                             "(CUDA only)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--modes", nargs="*", default=None,
                        help="modes to measure (default: every mode whose library is here; "
                             "--real-size: full offload lowvram)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--resolution", type=int, choices=[640, 1024], default=640)
    parser.add_argument("--points", nargs="*", metavar="RESxLAYERS",
                        help="--real-size: the jobs to measure (default 640x4 1024x4 640x10 "
                             "1024x10)")
    parser.add_argument("--steps-a", type=int, default=STEPS_A)
    parser.add_argument("--steps-b", type=int, default=STEPS_B)
    parser.add_argument("--captions", action="store_true",
                        help="--real-size: also time captioning per token in each way")
    parser.add_argument("--card-gib", type=float,
                        help="--real-size: measure as on a card with this much free memory (the "
                             "weights are built on the big card, then another process holds "
                             "the rest of it)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"),
                        help="override the device's dtype (bfloat16 on the CPU runs the CUDA "
                             "dtype path, slowly)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    quiet_known_noise()  # before the pipeline builders import diffusers
    if args.real_size:
        return real_size(args)
    info = devices.probe(args.device)
    if args.dtype:
        info = dataclasses.replace(info, dtype=args.dtype)
    return _models(args, info)


if __name__ == "__main__":
    sys.exit(main())
