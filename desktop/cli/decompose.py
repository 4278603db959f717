"""`layerlift decompose`: one picture in, one layered file out.

The command runs the backend in-process (or on a running server with `--remote`), writes the
stack with the format chosen by the output's suffix, and prints one summary line (or a JSON
object with `--json`). Everything a user can get wrong exits 2 with a sentence saying what.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from layerlift.desktop.cli.argtypes import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    int_in_range,
)
from layerlift.desktop.cli.backend_options import add_backend_options, request_options
from layerlift.desktop.cli.progress import ProgressBar
from layerlift.inference.backends import backend_names
from layerlift.inference.backends.base import MAX_LAYERS, CancelToken, DecomposeRequest
from layerlift.inference.backends.qwen.memory import ALL_MODE_CHOICES, mode_summaries
from layerlift.inference.errors import BadRequest, Cancelled, InputError, LayerLiftError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "decompose",
        help="decompose a picture into layers and write PSD, ORA or a PNG folder",
        description="Decompose INPUT into RGBA layers and write them as a layered file.",
    )
    parser.add_argument("input", type=Path, help="PNG, JPEG, WebP, TIFF or PSD picture")
    parser.add_argument(
        "-n", "--layers", type=int_in_range(1, MAX_LAYERS, "the layer count"), default=None,
        help=f"about how many layers to produce (1-{MAX_LAYERS}; default: the backend decides)",
    )
    parser.add_argument(
        "-o", "--output", default=None,
        help="OUT.psd, OUT.ora or OUT_DIR/ (default: INPUT_STEM.psd in the current folder)",
    )
    parser.add_argument(
        "--backend", default="auto", choices=["auto", *backend_names()],
        help="auto picks qwen when its weights are configured and a GPU is usable, else classic",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--remote", nargs="?", const="", default=None, metavar="URL",
        help="send the job to a running `layerlift serve` (default URL from the settings)",
    )
    qwen = parser.add_argument_group("qwen backend settings (this run only)")
    qwen.add_argument("--model", help="model folder or Hugging Face repo id (in the local cache)")
    qwen.add_argument("--memory-mode", choices=ALL_MODE_CHOICES, help=memory_mode_help())
    qwen.add_argument("--device", help="auto, cuda, cuda:N, mps or cpu")
    qwen.add_argument(
        "--online", action="store_true",
        help="allow the Hugging Face hub to be contacted (off by default: no network)",
    )
    # The per-job options are generated from the backends' declared schemas.
    parser.set_defaults(backend_option_names=add_backend_options(parser))
    return parser


def memory_mode_help() -> str:
    """The memory modes, described once (memory.py's `ModeSpec.summary`)."""
    text = "; ".join(f"{name}: {summary}" for name, summary in mode_summaries().items())
    return text.replace("%", "%%")


def _settings(args: argparse.Namespace):
    from layerlift.inference.settings import Settings

    settings = Settings.load()
    if args.model is not None:
        settings.model = args.model
    if args.memory_mode is not None:
        settings.memory_mode = args.memory_mode
    if args.device is not None:
        settings.device = args.device
    if args.online:
        settings.offline = False
    return settings


def _default_output(input_path: Path) -> Path:
    return Path.cwd() / f"{input_path.stem}.psd"


def _run_local(args, image, request, progress, settings):
    from layerlift.inference.backends import choose_backend, create_backend
    from layerlift.inference.jobs import BackendProvider

    name, why = choose_backend(args.backend, settings)
    if not args.json:
        print(f"backend: {name} ({why})", file=sys.stderr)
    # The one check the bridge and the job runner run too.
    options = BackendProvider().check_options(args.backend, name, request.options)
    request = replace(request, options=options)
    backend = create_backend(name, settings)
    cancel = CancelToken()
    try:
        return backend.decompose(image, request, progress, cancel)
    except KeyboardInterrupt:
        cancel.cancel()
        raise
    finally:
        backend.unload()


def _run_remote(args, image, request, progress):
    from layerlift.bridge.client import decompose_remote

    return decompose_remote(
        image, request, args.backend, url=args.remote or None, progress=progress
    )


def _finite_or_none(value: Any) -> float | None:
    """JSON has no infinity: an exact recomposition is reported as psnr null, exact true."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return round(float(value), 2)
    return None


# What the qwen backend reports about a job, copied into the summary when present.
_QWEN_KEYS = ("caption", "caption_source", "caption_way", "caption_seconds", "caption_tokens",
              "caption_truncated", "memory_mode", "memory_mode_reason", "planned_vram_gib",
              "peak_vram_gib", "timings")


def _summary(stack, files, output: str, seconds: float, warnings: list[str]) -> dict[str, Any]:
    extra = {key: stack.meta[key] for key in _QWEN_KEYS if key in stack.meta}
    return {
        "output": str(output),
        "files": [str(path) for path in files],
        "backend": stack.meta.get("backend"),
        "canvas": {"width": stack.width, "height": stack.height},
        "layers": [
            {"name": layer.name, "x": layer.x, "y": layer.y,
             "width": layer.width, "height": layer.height}
            for layer in stack.layers
        ],
        "psnr": _finite_or_none(stack.meta.get("psnr")),
        "exact": stack.meta.get("psnr") == math.inf,
        "note": stack.meta.get("note"),
        "seconds": round(seconds, 3),
        "warnings": warnings,
        **extra,
    }


def run(args: argparse.Namespace) -> int:
    from layerlift.inference.formats import read_image, write_stack

    started = time.monotonic()
    bar = ProgressBar(enabled=False if (args.quiet or args.json) else None)
    try:
        output = args.output or str(_default_output(args.input))
        loaded = read_image(args.input)
        for warning in loaded.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        request = DecomposeRequest(
            layers=args.layers, seed=args.seed, options=request_options(args)
        )
        if args.remote is not None:
            stack = _run_remote(args, loaded.pixels, request, bar)
        else:
            stack = _run_local(args, loaded.pixels, request, bar, _settings(args))
        bar.close()
        stack = stack.trimmed()
        files = write_stack(stack, output, group_name=args.input.stem)
    except KeyboardInterrupt:
        bar.close()
        print("cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Cancelled as exc:
        bar.close()
        print(f"cancelled: {exc.message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, BadRequest) as exc:
        bar.close()
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except LayerLiftError as exc:
        bar.close()
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        bar.close()
        print(f"error: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    seconds = time.monotonic() - started
    summary = _summary(stack, files, output, seconds, loaded.warnings)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        psnr = summary["psnr"]
        quality = f", recomposition {psnr:.1f} dB" if psnr is not None else ""
        if summary["exact"]:
            quality = ", recomposition exact"
        if summary.get("caption_source") == "model":
            print(f"caption ({summary['caption_way']}, {summary['caption_seconds']:.1f} s; "
                  f"reuse it with --caption): {summary['caption']}", file=sys.stderr)
        note = f" ({summary['note']})" if summary["note"] else ""
        print(
            f"Wrote {len(stack.layers)} layers to {output} "
            f"[{summary['backend']}, {seconds:.1f} s{quality}]{note}"
        )
    return EXIT_OK
