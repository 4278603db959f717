"""What this machine can run with the Qwen backend, without loading (or importing) anything heavy.

`layerlift doctor` and the settings dialog show this report: the device (from `nvidia-smi`,
never from torch, whose import alone takes seconds), free and total VRAM and RAM, the
installed libraries (read from their metadata, not imported), whether the model folder is
complete, the plan of every memory mode for a job (memory.py) and the mode `auto` would pick.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from layerlift.inference.backends.qwen import devices, memory
from layerlift.inference.backends.qwen.loading import missing_files, resolve_model
from layerlift.inference.errors import BadRequest, LayerLiftError

GIB = memory.GIB
LIBRARIES = ("torch", "diffusers", "transformers", "accelerate")
QUANT_LIBRARIES = ("bitsandbytes", "torchao")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def torch_build() -> dict[str, Any]:
    """torch's version and the CUDA it was built for, read from its files (not imported)."""
    version = _version("torch")
    if version is None or not _importable("torch"):
        return {"installed": False, "version": None, "cuda": None}
    cuda = None
    try:
        spec = importlib.util.find_spec("torch")
        locations = list(spec.submodule_search_locations or []) if spec else []
        text = (Path(locations[0]) / "version.py").read_text(encoding="utf-8")
        found = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        cuda = found.group(1) if found else None
    except (OSError, IndexError, ValueError, ImportError):
        pass
    return {"installed": True, "version": version, "cuda": cuda}


def nvidia_gpus(timeout: float = 1.5) -> tuple[list[dict[str, Any]], str]:
    """Each NVIDIA GPU from `nvidia-smi`, and a note when it could not be asked."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return [], "nvidia-smi not found (no NVIDIA driver here)"
    try:
        out = subprocess.run(
            [tool, "--query-gpu=index,name,driver_version,memory.total,memory.free",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"nvidia-smi failed ({type(exc).__name__})"
    gpus = parse_nvidia_smi(out)
    return gpus, "" if gpus else "nvidia-smi lists no GPU"


def torch_gpus() -> list[dict[str, Any]] | None:
    """Each CUDA GPU as torch sees it (the fields of `nvidia_gpus`), or None when torch is not
    imported yet: importing it only to ask would cost seconds."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        gpus = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            gpus.append({"index": index, "name": torch.cuda.get_device_name(index),
                         "total_bytes": int(total), "free_bytes": int(free)})
        return gpus
    except Exception:  # a driver that fails here: nvidia-smi may still answer
        return None


def gpu_summary(timeout: float = 1.5) -> str:
    """A sentence naming each GPU and its memory, or why none was found (the settings
    window's line): torch's view where it is loaded, else nvidia-smi's."""
    gpus = torch_gpus()
    note = ""
    if gpus is None:
        gpus, note = nvidia_gpus(timeout)
    if not gpus and sys.platform == "darwin":
        return "Apple GPU: memory is shared with the system"
    if not gpus:
        return f"no NVIDIA GPU detected ({note or 'torch lists none'})"
    return "; ".join(f"cuda:{gpu['index']} {gpu['name']}: {gpu['total_bytes'] / GIB:.1f} GiB "
                     f"({gpu['free_bytes'] / GIB:.1f} GiB free)" for gpu in gpus)


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """`index, name, driver, total MiB, free MiB` CSV rows -> one dict per GPU. A name may
    itself hold commas (the numbers are the last fields); rows that do not parse are skipped."""
    gpus: list[dict[str, Any]] = []
    for row in text.strip().splitlines():
        parts = [part.strip() for part in row.split(",")]
        if len(parts) < 5 or not (parts[-1].isdigit() and parts[-2].isdigit()):
            continue
        gpus.append({
            "index": int(parts[0]) if parts[0].isdigit() else len(gpus),
            "name": ", ".join(parts[1:-3]),
            "driver": parts[-3],
            "total_bytes": int(parts[-2]) * 2**20,
            "free_bytes": int(parts[-1]) * 2**20,
        })
    return gpus


def _device(setting: str | None, torch: dict[str, Any]) -> dict[str, Any]:
    """The device a job would run on, as `devices.probe` would resolve the setting."""
    kind, index = devices._parse(setting)  # raises BadRequest for a setting it cannot read
    gpus, note = ([], "") if kind in ("cpu", "mps") else nvidia_gpus()
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    device: dict[str, Any] = {"setting": setting or "auto", "torch": torch["version"],
                              "torch_cuda": torch["cuda"]}
    if kind in ("auto", "cuda") and gpus:
        wanted = index if index is not None else 0
        gpu = next((g for g in gpus if g["index"] == wanted), None)
        if gpu is None:
            device.update(kind="none", name=None,
                          note=f"there is no cuda:{wanted} ({len(gpus)} NVIDIA GPUs)")
            return device
        device.update(kind="cuda", device=f"cuda:{gpu['index']}", name=gpu["name"],
                      driver=gpu["driver"], vram_total_gib=round(gpu["total_bytes"] / GIB, 1),
                      vram_free_gib=round(gpu["free_bytes"] / GIB, 1),
                      free_bytes=gpu["free_bytes"], total_bytes=gpu["total_bytes"])
        if torch["installed"] and not torch["cuda"]:
            device["note"] = ("the installed torch is a CPU build: install the CUDA build of "
                              "torch (pytorch.org) to use this GPU")
        elif not torch["installed"]:
            device["note"] = "torch is not installed (pip install 'layerlift[qwen]')"
        return device
    if kind == "cuda":
        device.update(kind="none", name=None, note=f"no CUDA GPU: {note}")
        return device
    if kind in ("auto", "mps") and apple:
        device.update(kind="mps", device="mps", name="Apple GPU (MPS), shared memory")
        return device
    if kind == "mps":
        device.update(kind="none", name=None, note="no Apple (MPS) GPU here")
        return device
    device.update(kind="cpu", device="cpu", name=platform.processor() or platform.machine()
                  or "CPU")
    if kind == "auto":
        device["note"] = (f"no GPU ({note}); --backend auto does not pick qwen here, and "
                          "--device cpu runs it in float32 on the CPU (hours per picture)")
    return device


def _model(model: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"setting": model, "found": False, "complete": False}
    try:
        source = resolve_model(model)
    except LayerLiftError as exc:
        info["why"] = exc.message
        return info
    info.update(found=True, folder=str(source.folder), repo_id=source.repo_id)
    missing = missing_files(source.folder)
    info["complete"] = not missing
    if missing:
        info["first_missing"] = missing[0]
        info["missing_count"] = len(missing)
        info["why"] = f"missing {missing[0]}" + (f" and {len(missing) - 1} more"
                                                 if len(missing) > 1 else "")
    return info


def report(layers: int = memory.DEFAULT_LAYERS, resolution: int = 640,
           model: str | None = None, device: str | None = "auto") -> dict[str, Any]:
    """The whole report as one JSON-ready object (see `layerlift doctor --json`)."""
    if not 1 <= layers <= memory.MAX_LAYERS:
        raise BadRequest(f"layers must be between 1 and {memory.MAX_LAYERS}, got {layers}")
    if resolution not in memory.RESOLUTIONS:
        raise BadRequest(f"resolution must be 640 or 1024, got {resolution}")
    torch = torch_build()
    dev = _device(device, torch)
    libraries = memory.installed_libraries()
    ram_total = devices.ram_bytes()
    ram_free = devices.available_ram_bytes()
    dev.update(ram_total_gib=None if ram_total is None else round(ram_total / GIB, 1),
               ram_free_gib=None if ram_free is None else round(ram_free / GIB, 1))
    kind = dev["kind"] if dev["kind"] in ("cuda", "mps", "cpu") else "cpu"
    if kind == "cuda" and not torch["cuda"]:
        kind = "cpu"  # a GPU torch cannot use
    machine = memory.Machine(kind=kind, name=dev.get("name") or "",
                             free_vram_bytes=dev.pop("free_bytes", None) if kind == "cuda"
                             else None,
                             total_vram_bytes=dev.pop("total_bytes", None) if kind == "cuda"
                             else None,
                             ram_bytes=ram_total, libraries=libraries)
    dev.pop("free_bytes", None)
    dev.pop("total_bytes", None)
    job = memory.Job.of(layers, resolution)
    modes: dict[str, Any] = {}
    for mode in memory.MODE_NAMES:
        entry = memory.plan(mode, job).as_dict()
        if kind == "cuda":
            usable, why = memory.judge(mode, job, machine)
        else:
            usable = False
            why = ("needs a CUDA GPU, and torch here cannot use one" if dev["kind"] == "cuda"
                   else "needs a CUDA GPU (none found here)")
        wanted = memory.spec(mode)
        entry.update(usable=usable, why=why, library=wanted.library, lossless=wanted.lossless,
                     summary=wanted.summary)
        way, way_why = memory.caption_way(mode, "cuda", machine.free_gib, libraries)
        entry["caption_way"] = {"way": way, "why": way_why}
        modes[mode] = entry
    if kind == "cuda":
        mode, why = memory.choose_auto(job, machine)
        auto: dict[str, Any] = {"mode": mode, "why": why}
        if mode is None:
            best = memory.largest_job(machine, resolution)
            auto["why"] = "this job would be refused: " + memory.refusal(job, machine)
            auto["largest_fit"] = (None if best is None else
                                   {"layers": best.layers, "resolution": best.resolution})
    else:
        mode, why = memory.choose_auto(job, machine)
        cpu_plan = memory.plan("full", job, "cpu")
        auto = {"mode": mode, "device": kind, "why": why + (
            f"; float32 needs about {cpu_plan.ram_gib:.0f} GiB of RAM and hours per picture"
            if kind == "cpu" else "")}
    quant = {name: _version(name) for name in QUANT_LIBRARIES}
    return {
        "device": dev,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "quantization": {name: {"installed": name in libraries, "version": quant[name]}
                         for name in QUANT_LIBRARIES},
        "model": _model(model),
        "job": {"layers": job.layers, "resolution": job.resolution,
                "bucket": [job.width, job.height], "tokens": job.tokens,
                "picture": "square (other shapes have the same area within a few %)"},
        "modes": modes,
        "auto": auto,
        "plan_source": "fitted to measurements of the real model on an NVIDIA H100 (docs/qwen.md)",
    }


def plan_lines(result: dict[str, Any]) -> list[str]:
    """The memory part of a report, one line per mode (the settings dialog shows these)."""
    lines = []
    for mode, entry in result["modes"].items():
        mark = "yes" if entry["usable"] else "no"
        lines.append(f"{mode}: {entry['vram_gib']:.1f} GiB VRAM, {entry['ram_gib']:.0f} GiB RAM "
                     f"({mark}: {entry['why']})")
    auto = result["auto"]
    lines.append(f"auto: {auto['mode'] or 'refused'} ({auto['why']})")
    return lines
