"""Run the qwen backend into a real allocation failure; print what it did, as JSON.

Run as a script by test_out_of_memory.py, never imported by pytest: it caps this process's
address space (RLIMIT_AS) after a first run, so that a run at the 1024 bucket fails inside
the pipeline exactly as a GPU runs out of memory, in torch's allocator. Capping the test
process itself would break every test after it.

Usage: run_out_of_memory.py MODEL_FOLDER IMAGE MARGIN_MIB
"""

from __future__ import annotations

import json
import resource
import sys
import weakref
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from layerlift.inference.backends.base import DecomposeRequest
from layerlift.inference.backends.qwen import QwenBackend
from layerlift.inference.errors import LayerLiftError
from layerlift.inference.settings import Settings


def _request(resolution: int) -> DecomposeRequest:
    return DecomposeRequest(layers=2, options={"caption": "a poster", "resolution": resolution})


def main(model: str, image_path: str, margin_mib: int) -> dict:
    image = Image.open(image_path).convert("RGBA")
    pixels = np.asarray(image.resize((image.width // 3, image.height // 3)))
    backend = QwenBackend(Settings(model=model, device="cpu", steps=1))
    backend.decompose(pixels, _request(640))  # loads, and warms the allocator up
    transformer = weakref.ref(backend._pipe.transformer)

    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + margin_mib * 2**20, resource.RLIM_INFINITY))
    result: dict = {}
    try:
        backend.decompose(pixels, _request(1024))
        result["error"] = None
    except LayerLiftError as exc:
        result["error"] = {"code": exc.code, "message": exc.message}
    result["weights_freed"] = transformer() is None
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    # Nothing is lost: the same backend runs again once memory is there.
    stack = backend.decompose(pixels, _request(640))
    result["after"] = {"layers": len(stack.layers), "psnr": stack.meta["psnr"]}
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
