"""How much time LayerLift adds around the bare Qwen-Image-Layered pipeline call.

For each input the script times (model loading excluded, measured once before):

- bare: `pipe(**kwargs)` called directly with the arguments the backend would pass;
- layerlift: `QwenBackend.decompose` + `LayerStack.trimmed` + writing a PSD, i.e. what a CLI
  or bridge job costs end to end once the model is loaded;
- the pipeline call inside that run, taken from the backend's own progress events (from the
  first denoising report to the first refining report), so that
  overhead = layerlift - call inside, measured in the same run rather than across two runs.

By default it builds the tiny random-weight pipeline of the test suite (no weights needed) and
runs examples/poster.png (480x640) and a 4096x4096 picture. With --model it measures a real
checkpoint (then pass --device cuda). Run: `.venv/bin/python bench/qwen_overhead.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from layerlift.inference.backends.base import DecomposeRequest, Progress  # noqa: E402
from layerlift.inference.backends.qwen import QwenBackend  # noqa: E402
from layerlift.inference.backends.qwen.pipeline_call import (  # noqa: E402
    StepReporter,
    call_kwargs,
    parse_options,
)
from layerlift.inference.formats import write_stack  # noqa: E402
from layerlift.inference.settings import Settings  # noqa: E402

CAPTION = "a poster with a title, shapes and a background"


def inputs(sizes: list[int]) -> list[tuple[str, np.ndarray]]:
    poster = Image.open(REPO / "examples" / "poster.png").convert("RGBA")
    found = [("poster 480x640", np.asarray(poster))]
    for size in sizes:
        big = poster.resize((size, size), Image.Resampling.LANCZOS)
        found.append((f"poster {size}x{size}", np.asarray(big)))
    return found


def time_bare(backend: QwenBackend, image: np.ndarray, request: DecomposeRequest) -> float:
    import torch

    options = parse_options(request, backend.settings)
    reporter = StepReporter(options.steps, lambda _: None, None, 0.0, 1.0)
    generator = torch.Generator("cpu").manual_seed(options.seed)
    picture = Image.fromarray(image, "RGBA")
    started = time.perf_counter()
    backend._pipe(**call_kwargs(options, picture, options.caption, generator, reporter))
    return time.perf_counter() - started


def time_layerlift(backend: QwenBackend, image: np.ndarray, request: DecomposeRequest,
                   out: Path) -> dict[str, float]:
    marks: dict[str, float] = {}

    def progress(event: Progress) -> None:
        now = time.perf_counter()
        if event.stage == "running" and event.step == 0:
            marks.setdefault("call_start", now)
        if event.stage == "refining":
            marks.setdefault("call_end", now)
            if event.message == "making the stack exact":
                marks["exact_start"] = now
            if event.fraction >= 1.0:
                marks["refine_end"] = now

    started = time.perf_counter()
    stack = backend.decompose(image, request, progress)
    decomposed = time.perf_counter()
    trimmed = stack.trimmed()
    write_stack(trimmed, out)
    finished = time.perf_counter()
    call = marks["call_end"] - marks["call_start"]
    return {
        "total_s": finished - started,
        "call_inside_s": call,
        "overhead_s": finished - started - call,
        "refine_s": decomposed - marks["call_end"],
        "restore_s": marks["exact_start"] - marks["call_end"],
        "exact_s": marks["refine_end"] - marks["exact_start"],
        "export_s": finished - decomposed,
        "psnr_before": float(stack.meta["psnr_before"]),
        "psnr": float(stack.meta["psnr"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: build the tiny test pipeline)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096],
                        help="square input sizes besides the 480x640 poster")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(REPO))
            from tests.qwen.tiny_pipeline import save_tiny_pipeline

            model = str(save_tiny_pipeline(Path(tmp) / "tiny"))
        backend = QwenBackend(Settings(model=model, device=args.device, steps=args.steps))
        started = time.perf_counter()
        backend.load()
        load_s = time.perf_counter() - started
        request = DecomposeRequest(layers=args.layers, seed=0,
                                   options={"caption": CAPTION, "steps": args.steps})
        rows = []
        warm = inputs([])[0][1]
        time_bare(backend, warm, request)  # first call pays one-off costs (allocator, kernels)
        for name, image in inputs(args.sizes):
            bare = time_bare(backend, image, request)
            measured = time_layerlift(backend, image, request, Path(tmp) / "out.psd")
            rows.append({"input": name, "bare_call_s": bare, **measured})
        backend.unload()

    if args.json:
        print(json.dumps({"load_s": load_s, "layers": args.layers, "steps": args.steps,
                          "rows": rows}, indent=2))
        return 0
    print(f"model loaded in {load_s:.1f} s (excluded); {args.layers} layers, "
          f"{args.steps} step(s), device {args.device}")
    print(f"{'input':<18}{'bare call':>10}{'call in run':>12}{'overhead':>10}{'restore':>9}"
          f"{'exact':>8}{'refine':>8}{'export':>8}{'PSNR before->after':>22}")
    for row in rows:
        print(f"{row['input']:<18}{row['bare_call_s']:>9.2f}s{row['call_inside_s']:>11.2f}s"
              f"{row['overhead_s']:>9.2f}s{row['restore_s']:>8.2f}s{row['exact_s']:>7.2f}s"
              f"{row['refine_s']:>7.2f}s{row['export_s']:>7.2f}s"
              f"{row['psnr_before']:>12.1f} -> {row['psnr']:.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
