"""How much time LayerLift adds around the bare Qwen-Image-Layered pipeline call.

Two modes, one JSON shape (`--json`: one row per input with `input` and `overhead_s`, plus the
stage times):

- with the model (default): for each input the script times, model loading excluded,
  - bare: `pipe(**kwargs)` called directly with the arguments the backend would pass;
  - layerlift: `QwenBackend.decompose` + `LayerStack.trimmed` + writing a PSD, i.e. what a CLI
    job costs end to end once the model is loaded, with the pipeline call inside that run
    taken from the backend's own progress events (first denoising report to first refining
    report), so that overhead = layerlift - call inside, measured in the same run;
  - handoff (bench/handoff.py): the same decomposition as a job of the real `JobRunner`
    (job store on disk) behind the real bridge server, submitted by the real client: from the
    pipeline call's return to the job's "done" event (`handoff_announce_s`, the result
    complete on disk), to the client holding every layer (`handoff_held_s`) and to the
    client holding them with the job done, ready to insert (`handoff_shown_s`).
  By default it builds the tiny random-weight pipeline of the test suite (no weights needed)
  and runs examples/poster.png (480x640) and a 4096x4096 picture. With --model it measures a
  real checkpoint (then pass --device cuda).
- `--no-model`: the model is skipped; the low-resolution layers come from `--layers-from`
  (`noise`: smooth random layers like the tiny pipeline's, the worst case for restoring;
  `classic`: the classic backend run on the picture at the model's bucket size; or a saved
  stack folder, e.g. one written by `--save-layers`). Then exactly the backend's own
  refinement runs (`QwenBackend._refine`: restore + exact recomposition + trimming), a PSD
  export and the job store's write. Each input runs in a fresh process so that its peak RSS
  (`peak_rss_mb`) is its own. `target_s` = restore + exact + PSD, the issue's 6 s figure;
  `announce_s` = refine + job store write, what a bridge client waits for after denoising;
  the handoff run (as above, the model replaced by the saved layers) measures it for real.

Wall times are printed with the process CPU time beside them (`*_cpu_s`): on a shared machine
the CPU time is the steadier figure. Run from the repository root:
`.venv/bin/python bench/qwen_overhead.py --no-model --sizes 1024 2048 4096 --json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

from layerlift.inference.backends.base import DecomposeRequest, Progress  # noqa: E402
from layerlift.inference.backends.qwen import QwenBackend  # noqa: E402
from layerlift.inference.backends.qwen.pipeline_call import (  # noqa: E402
    StepReporter,
    bucket_size,
    call_kwargs,
    parse_options,
)
from layerlift.inference.formats import write_stack  # noqa: E402
from layerlift.inference.job_store import JobStore  # noqa: E402
from layerlift.inference.settings import Settings  # noqa: E402

from bench.handoff import RefineOnly, time_handoff  # noqa: E402

CAPTION = "a poster with a title, shapes and a background"


def user_caption():
    """The caption a user typed, as the Qwen backend records it (no model captioning)."""
    from layerlift.inference.backends.qwen.caption import CaptionResult

    return CaptionResult(CAPTION, "user", "user")
JOB_ID = "0123456789abcdef"


def inputs(sizes: list[int]) -> list[tuple[str, np.ndarray]]:
    poster = Image.open(REPO / "examples" / "poster.png").convert("RGBA")
    found = [("poster 480x640", np.asarray(poster))]
    for size in sizes:
        big = poster.resize((size, size), Image.Resampling.LANCZOS)
        found.append((f"poster {size}x{size}", np.asarray(big)))
    return found


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Marks:
    """Wall and CPU time stamps by name."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def mark(self, name: str, first: bool = False) -> None:
        if first and name in self.wall:
            return
        self.wall[name] = time.perf_counter()
        self.cpu[name] = time.process_time()

    def span(self, start: str, end: str) -> tuple[float, float]:
        return (self.wall[end] - self.wall[start], self.cpu[end] - self.cpu[start])


def _refine_progress(marks: Marks):
    """A progress callback that stamps the backend's refinement stages."""

    def progress(event: Progress) -> None:
        if event.stage == "running" and event.step == 0:
            marks.mark("call_start", first=True)
        if event.stage == "refining":
            marks.mark("call_end", first=True)
            if event.message == "making the stack exact":
                marks.mark("exact_start")
            if event.fraction >= 1.0:
                marks.mark("refine_end")

    return progress


def _export(stack, folder: Path, marks: Marks) -> None:
    """What follows a decomposition: trim, write the PSD, write the job store's copy."""
    marks.mark("export_start")
    trimmed = stack.trimmed()
    marks.mark("trim_end")
    write_stack(trimmed, folder / "out.psd")
    marks.mark("psd_end")
    JobStore(folder / "jobs").save({"id": JOB_ID}, trimmed)
    marks.mark("store_end")


def _stage_row(marks: Marks, stack) -> dict[str, float]:
    row: dict[str, float] = {}
    for name, start, end in (
        ("restore", "call_end", "exact_start"),
        ("exact", "exact_start", "refine_end"),
        ("refine", "call_end", "decomposed"),
        ("trim", "export_start", "trim_end"),
        ("psd", "trim_end", "psd_end"),
        ("store", "psd_end", "store_end"),
    ):
        row[f"{name}_s"], row[f"{name}_cpu_s"] = marks.span(start, end)
    row["export_s"] = row["trim_s"] + row["psd_s"]
    row["target_s"] = row["restore_s"] + row["exact_s"] + row["psd_s"]
    row["announce_s"] = row["refine_s"] + row["store_s"]
    row["psnr_before"] = float(stack.meta["psnr_before"])
    row["psnr"] = float(stack.meta["psnr"])
    return row


# --- with the model ---------------------------------------------------------------------------


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
                   folder: Path, save_layers: Path | None = None) -> dict[str, float]:
    marks = Marks()
    if save_layers is not None:
        _capture_low_layers(backend, save_layers)
    marks.mark("started")
    stack = backend.decompose(image, request, _refine_progress(marks))
    marks.mark("decomposed")
    _export(stack, folder, marks)
    row = _stage_row(marks, stack)
    call = marks.wall["call_end"] - marks.wall["call_start"]
    total = marks.wall["psd_end"] - marks.wall["started"]
    row.update(total_s=total, call_inside_s=call, overhead_s=total - call)
    return row


def _capture_low_layers(backend: QwenBackend, folder: Path) -> None:
    """Make the next decomposition save the pipeline's low-resolution layers in `folder`."""
    from layerlift.inference.formats.pngdir import write_png_dir
    from layerlift.inference.layers import LayerStack

    refine = backend._refine

    def saving(pixels, layers_low, *args, **kwargs):
        names = [f"layer {i}" for i in range(len(layers_low))]
        write_png_dir(LayerStack.from_canvases(layers_low, names), folder)
        backend._refine = refine
        return refine(pixels, layers_low, *args, **kwargs)

    backend._refine = saving


def run_model(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
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
        for index, (name, image) in enumerate(inputs(args.sizes)):
            bare = time_bare(backend, image, request)
            save = None
            if args.save_layers:
                save = Path(args.save_layers) / name.replace(" ", "_")
            run = Path(tmp) / f"run{index}"
            measured = time_layerlift(backend, image, request, run, save)
            rss = peak_rss_mb()
            handoff = time_handoff(backend, image, request, run / "jobs") if args.handoff else {}
            rows.append({"input": name, "bare_call_s": bare, **measured,
                         **{f"handoff_{key}": value for key, value in handoff.items()},
                         "peak_rss_mb": rss})
        backend.unload()
    return {"mode": "model", "load_s": load_s}, rows


# --- without the model ------------------------------------------------------------------------


def noise_layers(width: int, height: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random layers with the tiny pipeline's statistics (alpha about 143 +- 20).

    Every layer covers every pixel with a partial alpha: the whole canvas is "edge", which is
    the most work restoring and making exact can be given.
    """
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(count):
        noise = np.pad(rng.standard_normal((height, width, 4)), ((1, 1), (1, 1), (0, 0)),
                       mode="edge")
        field = sum(noise[dy : dy + height, dx : dx + width] for dy in range(3)
                    for dx in range(3))
        field /= field.std()
        values = np.empty_like(field)
        values[..., :3] = 150 + 40 * field[..., :3]
        values[..., 3] = 143 + 20 * field[..., 3]
        layers.append(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    return layers


def low_layers(source: str, image: np.ndarray, count: int, resolution: int) -> list[np.ndarray]:
    """Low-resolution layers for `image` at the model's bucket size, from `source`."""
    width, height = bucket_size(image.shape[1], image.shape[0], resolution)
    if source == "noise":
        return noise_layers(width, height, count)
    if source == "classic":
        from layerlift.inference.backends.classic import ClassicBackend

        small = np.asarray(Image.fromarray(image, "RGBA").resize((width, height),
                                                                 Image.Resampling.BOX))
        stack = ClassicBackend().decompose(small, DecomposeRequest(layers=count))
        return stack.canvases()
    from layerlift.inference.formats import read_stack

    return read_stack(Path(source)).canvases()


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """One input, no model: refine as the backend does, export, store; in this process."""
    image = dict(inputs(args.sizes))[args.child]
    layers_low = low_layers(args.layers_from, image, args.layers, args.resolution)
    backend = QwenBackend(Settings(steps=1))
    options = parse_options(DecomposeRequest(layers=len(layers_low), seed=0,
                                             options={"resolution": args.resolution}),
                            backend.settings)
    rss_before = peak_rss_mb()
    marks = Marks()
    with tempfile.TemporaryDirectory() as tmp:
        marks.mark("call_end")
        stack = backend._refine(image, layers_low, options, user_caption(), {},
                                _refine_progress(marks))
        marks.mark("decomposed")
        _export(stack, Path(tmp), marks)
    row = _stage_row(marks, stack)
    row.update(
        input=args.child,
        layers=len(layers_low),
        model_size=[int(layers_low[0].shape[1]), int(layers_low[0].shape[0])],
        overhead_s=row["refine_s"] + row["psd_s"] + row["trim_s"],
        rss_before_mb=rss_before,
        peak_rss_mb=peak_rss_mb(),
    )
    if args.handoff:
        del stack
        with tempfile.TemporaryDirectory() as tmp:
            handoff = time_handoff(RefineOnly(layers_low, args.resolution), image,
                                   DecomposeRequest(layers=len(layers_low)), Path(tmp))
        row.update({f"handoff_{key}": value for key, value in handoff.items()})
    return row


def run_no_model(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = []
    for name, _ in inputs(args.sizes):
        command = [sys.executable, __file__, "--no-model", "--child", name,
                   "--layers-from", args.layers_from, "--layers", str(args.layers),
                   "--resolution", str(args.resolution), "--sizes", *map(str, args.sizes)]
        if not args.handoff:
            command.append("--no-handoff")
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"the run for {name} failed")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"mode": "no-model", "layers_from": args.layers_from}, rows


# --- output -----------------------------------------------------------------------------------


def _print_table(head: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace):
    if head["mode"] == "model":
        print(f"model loaded in {head['load_s']:.1f} s (excluded); {args.layers} layers, "
              f"{args.steps} step(s), device {args.device}")
    else:
        print(f"no model: layers from {head['layers_from']}; load {os.getloadavg()[0]:.1f}")
    print(f"{'input':<18}{'overhead':>9}{'restore':>9}{'exact':>8}{'trim':>7}{'psd':>7}"
          f"{'store':>7}{'target':>8}{'announce':>9}{'peak RSS':>10}{'PSNR before->after':>22}")
    for row in rows:
        print(f"{row['input']:<18}{row['overhead_s']:>8.2f}s{row['restore_s']:>8.2f}s"
              f"{row['exact_s']:>7.2f}s{row['trim_s']:>6.2f}s{row['psd_s']:>6.2f}s"
              f"{row['store_s']:>6.2f}s{row['target_s']:>7.2f}s{row['announce_s']:>8.2f}s"
              f"{row['peak_rss_mb']:>7.0f} MB"
              f"{row['psnr_before']:>12.1f} -> {row['psnr']:.1f} dB")
        cpu = "  ".join(f"{name} {row[f'{name}_cpu_s']:.2f}" for name in
                        ("restore", "exact", "trim", "psd", "store"))
        print(f"{'':<18}cpu s: {cpu}")
        if "bare_call_s" in row:
            print(f"{'':<18}bare call {row['bare_call_s']:.2f} s, call in run "
                  f"{row['call_inside_s']:.2f} s")
        if "handoff_announce_s" in row:
            print(f"{'':<18}through runner + store + bridge: model done -> job announced "
                  f"{row['handoff_announce_s']:.2f} s (store {row['handoff_store_s']:.2f} s), "
                  f"-> client holds the layers {row['handoff_held_s']:.2f} s, "
                  f"-> client can insert them (done too) {row['handoff_shown_s']:.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: build the tiny test pipeline)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096],
                        help="square input sizes besides the 480x640 poster")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save-layers", metavar="FOLDER",
                        help="model mode: save each input's low-resolution layers there")
    parser.add_argument("--no-model", action="store_true",
                        help="skip the model; time LayerLift's CPU work alone")
    parser.add_argument("--layers-from", default="noise",
                        help="no-model: 'noise', 'classic' or a saved stack folder")
    parser.add_argument("--resolution", type=int, default=640, help="no-model: the bucket")
    parser.add_argument("--no-handoff", dest="handoff", action="store_false",
                        help="skip the run through job runner, store and bridge")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    head, rows = run_no_model(args) if args.no_model else run_model(args)
    head.update(layers=args.layers, steps=args.steps, load_average=list(os.getloadavg()),
                cpus=os.cpu_count())
    if args.json:
        print(json.dumps({**head, "rows": rows}, indent=2))
    else:
        _print_table(head, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
