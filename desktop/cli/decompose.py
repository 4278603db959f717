"""`layerlift decompose`: one picture in, one layered file out.

The command runs the backend in-process (or on a running server with `--remote`), writes the
stack with the format chosen by the output's suffix, and prints one summary line (or a JSON
object with `--json`). Everything a user can get wrong exits 2 with a sentence saying what.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerlift.desktop.cli.argtypes import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    int_in_range,
)
from layerlift.desktop.cli.backend_options import add_backend_options, request_options
from layerlift.desktop.cli.progress import ProgressBar
from layerlift.inference.backends import backend_class, backend_names
from layerlift.inference.backends.base import MAX_LAYERS, CancelToken, DecomposeRequest
from layerlift.inference.backends.qwen.devices import DEVICE_HELP
from layerlift.inference.backends.qwen.memory import ALL_MODE_CHOICES, mode_summaries
from layerlift.inference.errors import BadRequest, Cancelled, InputError, LayerLiftError

if TYPE_CHECKING:
    from layerlift.inference.formats import OutputTarget


INPUT_FORMATS = "PNG, JPEG, WebP, TIFF, GIF, BMP, PSD, PSB or ORA"

EPILOG = f"""\
inputs:
  {INPUT_FORMATS} (the format is recognised from the file's
  bytes, not its name; a PSD, PSB or ORA is read as its flattened picture). Only regular
  files are read: a folder, a device, a FIFO or a socket is refused. Pictures over 64
  megapixels are refused: decomposing needs about 0.09 GB of memory per megapixel.

outputs (-o):
  OUT.psd   a Photoshop document: one group holding one pixel layer per layer
  OUT.psb   the same as a large document (PSB), for canvases over 30000 px a side
  OUT.ora   an OpenRaster file (GIMP, Krita, MyPaint)
  DIR/      a folder of PNG layers plus stack.json; a path ending in '/' or an existing
            folder. The folder must be new, empty, or one LayerLift wrote (it keeps a
            hidden .layerlift-folder.json); LayerLift never overwrites or deletes a file
            it did not write there.
  Anything else (no suffix, another suffix, a bare '.psd') is refused. The output is
  checked before the input is decoded, and is never the input itself. A named OUT file
  that exists is replaced atomically.

default output:
  INPUT_STEM.psd in the current folder; if that name is taken (by the input itself or by
  any other file), INPUT_STEM-2.psd, INPUT_STEM-3.psd, ...: a default never overwrites.

exit codes:
  0 written; 1 the backend or the disk failed; 2 bad arguments, an unreadable input or a
  refused output (nothing was written); 130 cancelled."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "decompose",
        help="decompose a picture into layers and write PSD, PSB, ORA or a PNG folder",
        description="Decompose INPUT into RGBA layers and write them as a layered file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, help=f"the picture: {INPUT_FORMATS}")
    parser.add_argument(
        "-n", "--layers", type=int_in_range(1, MAX_LAYERS, "the layer count"), default=None,
        help=f"about how many layers to produce (1-{MAX_LAYERS}; default: the backend decides)",
    )
    parser.add_argument(
        "-o", "--output", default=None,
        help="OUT.psd, OUT.psb, OUT.ora or DIR/ (see 'outputs' below; default: "
             "INPUT_STEM.psd in the current folder, or the next free name)",
    )
    parser.add_argument(
        "--backend", default="auto", choices=["auto", *backend_names()],
        help="auto picks qwen when its weights are configured and a GPU is usable, else classic",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary on stdout (on failure: a JSON error object)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--remote", nargs="?", const="", default=None, metavar="URL",
        help="send the job to a running `layerlift serve` (default URL from the settings)",
    )
    qwen = parser.add_argument_group("qwen backend settings (this run only)")
    qwen.add_argument("--model", help="model folder or Hugging Face repo id (in the local cache)")
    qwen.add_argument("--memory-mode", choices=ALL_MODE_CHOICES, help=memory_mode_help())
    qwen.add_argument("--device", help=DEVICE_HELP)
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


def _next_free(folder: Path, stem: str, suffix: str, sources: tuple[Path, ...]) -> Path:
    """`stem.suffix` in `folder`, or the first `stem-N.suffix` that names nothing at all."""
    from layerlift.inference.formats.safety import same_file

    for number in range(1, 10000):
        name = f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}"
        candidate = folder / name
        if os.path.lexists(candidate) or any(same_file(candidate, s) for s in sources):
            continue
        return candidate
    raise BadRequest(f"no free output name for '{stem}{suffix}' in '{folder}'; use -o")


def _default_output(input_path: Path) -> Path:
    return _next_free(Path.cwd(), input_path.stem, ".psd", (input_path,))


def _plan_output(args: argparse.Namespace) -> tuple[OutputTarget, bool]:
    """The checked output and whether the user named it; `BadRequest` before any work."""
    from layerlift.inference.formats import check_output

    sources = (args.input,)
    if args.output is None:
        return check_output(_default_output(args.input), sources=sources), False
    bare = Path(args.output).name.lower()
    if bare in (".psd", ".psb", ".ora") and not args.output.endswith(("/", os.sep)):
        name = f"{args.input.stem}{bare}"
        if name == args.input.name.lower():
            name = f"{args.input.stem}-layers{bare}"
        raise BadRequest(
            f"'-o {args.output}' has no file name before its suffix; LayerLift does not write "
            f"hidden files: use e.g. -o {Path(args.output).parent / name}"
        )
    return check_output(args.output, sources=sources), True


def _write(stack, target: OutputTarget, named: bool, args: argparse.Namespace):
    """Write the stack; a default name that got taken meanwhile moves to the next free one."""
    from layerlift.inference.formats import check_output, write_stack

    sources = (args.input,)
    for _ in range(100):
        try:
            return target, write_stack(stack, target, group_name=args.input.stem,
                                       sources=sources, overwrite=named)
        except FileExistsError:
            if named:
                raise
            target = check_output(_default_output(args.input), sources=sources)
    raise BadRequest("no free output name; use -o")


def _fail(args: argparse.Namespace, code: str, message: str, exit_code: int,
          prefix: str = "error") -> int:
    """Say what went wrong on stderr and, with --json, as a JSON object on stdout too."""
    print(f"{prefix}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message},
                          "exit_code": exit_code}, indent=2))
    return exit_code


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


def _reported(meta: dict[str, Any]) -> dict[str, Any]:
    """What the backend that made the stack reports about a job (its `reported_meta`)."""
    try:
        keys = backend_class(str(meta.get("backend"))).reported_meta
    except LayerLiftError:  # a remote server's backend this installation does not have
        return {}
    return {key: meta[key] for key in keys if key in meta}


def _summary(stack, files, output: str, seconds: float, warnings: list[str]) -> dict[str, Any]:
    extra = _reported(stack.meta)
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
    from layerlift.inference.formats import read_image
    from layerlift.inference.formats.safety import check_input_file

    started = time.monotonic()
    bar = ProgressBar(enabled=False if (args.quiet or args.json) else None)
    output: str | Path = args.output if args.output is not None else "the output"
    try:
        # Everything that can be refused is refused before the input is decoded: a bad
        # output must not cost a minute of work and gigabytes of memory first.
        check_input_file(args.input)
        target, named = _plan_output(args)
        output = target.path
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
        target, files = _write(stack, target, named, args)
        output = target.path
    except KeyboardInterrupt:
        bar.close()
        return _fail(args, "cancelled", "cancelled", EXIT_INTERRUPTED, prefix="cancelled")
    except Cancelled as exc:
        bar.close()
        return _fail(args, exc.code, exc.message, EXIT_INTERRUPTED, prefix="cancelled")
    except (InputError, BadRequest) as exc:
        bar.close()
        return _fail(args, exc.code, exc.message, EXIT_USAGE)
    except LayerLiftError as exc:
        bar.close()
        return _fail(args, exc.code, exc.message, EXIT_FAILURE, prefix=f"error [{exc.code}]")
    except OSError as exc:
        bar.close()
        return _fail(args, "write_failed", f"cannot write {output}: {exc.strerror or exc}",
                     EXIT_FAILURE)
    seconds = time.monotonic() - started
    summary = _summary(stack, files, str(output), seconds, loaded.warnings)
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
