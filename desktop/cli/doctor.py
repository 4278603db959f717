"""`layerlift doctor`: can this machine run the Qwen backend, in which memory mode, and why.

Never loads weights and never imports torch or diffusers: the device comes from `nvidia-smi`,
versions from package metadata, the VRAM figures from the plan in
inference/backends/qwen/memory.py (printed on any machine, with or without a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from layerlift.desktop.cli.argtypes import EXIT_OK, EXIT_USAGE, int_in_range
from layerlift.inference.backends.qwen.devices import DEVICE_HELP
from layerlift.inference.backends.qwen.memory import RESOLUTIONS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "doctor",
        help="check the GPU, memory and model for the qwen backend, and plan every memory mode",
        description="Show the device, free VRAM and RAM, installed libraries, whether the model "
                    "folder is complete, and the VRAM/RAM plan of every memory mode for a job "
                    "(no weights are loaded).",
    )
    parser.add_argument("--layers", "-n", type=int_in_range(1, 10, "the layer count"),
                        default=4, help="layers of the job to plan (default 4)")
    parser.add_argument("--resolution", type=int, choices=list(RESOLUTIONS), default=None,
                        help="bucket of the job to plan (default: the settings', 640)")
    parser.add_argument("--model", help="model folder or Hugging Face repo id (default: the "
                                        "settings')")
    parser.add_argument("--device", help=f"{DEVICE_HELP} (default: the settings')")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _text(result: dict[str, Any]) -> str:
    dev = result["device"]
    lines = []
    if dev["kind"] == "cuda":
        lines.append(f"GPU: {dev['name']} ({dev['device']}), driver {dev['driver']}, "
                     f"{dev['vram_free_gib']:.1f} of {dev['vram_total_gib']:.1f} GiB free")
    else:
        lines.append(f"device: {dev.get('name') or dev['kind']}")
    ram = (f"{dev['ram_free_gib']:.1f} of {dev['ram_total_gib']:.1f} GiB free"
           if dev.get("ram_free_gib") is not None and dev.get("ram_total_gib") is not None
           else f"{dev.get('ram_total_gib')} GiB")
    lines.append(f"RAM: {ram}")
    lines.append(f"torch {dev['torch'] or 'not installed'}"
                 + (f" (CUDA {dev['torch_cuda']})" if dev.get("torch_cuda") else
                    " (no CUDA build)" if dev["torch"] else ""))
    if dev.get("note"):
        lines.append(f"note: {dev['note']}")
    libs = ", ".join(f"{name} {version or 'missing'}"
                     for name, version in result["libraries"].items())
    lines.append(f"libraries: {libs}")
    quant = ", ".join(f"{name} {info['version'] or 'not installed'}"
                      for name, info in result["quantization"].items())
    lines.append(f"quantization: {quant}")
    model = result["model"]
    if model["complete"]:
        lines.append(f"model: {model['folder']} (complete)")
    else:
        lines.append(f"model: {model.get('why', 'not found')}")
    job = result["job"]
    lines.append("")
    lines.append(f"plan for {job['layers']} layers at {job['resolution']} px "
                 f"({job['tokens']:,} image tokens):")
    lines.append(f"  {'mode':<9}{'VRAM':>10}{'RAM':>9}  usable here")
    for mode, entry in result["modes"].items():
        usable = "yes" if entry["usable"] else "no"
        lines.append(f"  {mode:<9}{entry['vram_gib']:>6.1f} GiB{entry['ram_gib']:>5.0f} GiB  "
                     f"{usable}: {entry['why']}")
    auto = result["auto"]
    lines.append(f"auto: {auto['mode'] or 'refuses this job'} ({auto['why']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from layerlift.inference.backends.qwen.doctor import report
    from layerlift.inference.errors import BadRequest
    from layerlift.inference.settings import Settings

    settings = Settings.load()
    try:
        result = report(
            layers=args.layers,
            resolution=args.resolution or settings.resolution,
            model=args.model if args.model is not None else settings.model,
            device=args.device if args.device is not None else settings.device,
        )
    except BadRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_text(result))
    return EXIT_OK
