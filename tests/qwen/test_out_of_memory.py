"""A real out-of-memory error inside the pipeline: caught, memory freed, a clear error, and
the backend still works afterwards.

A GPU cannot be filled here, so the test fills the CPU instead: run_out_of_memory.py caps
its own address space so that the 1024 bucket fails in torch's allocator halfway through
the pipeline (the 640 bucket needs ~400 MiB more than the loaded model, 1024 ~1.2 GiB; the
cap leaves 500 MiB). Same code path as a CUDA OOM: detection, frames dropped, pipeline
released, error naming what to try.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_AS and /proc")
def test_out_of_memory_frees_the_model_and_names_what_to_try(tiny_model_dir: Path):
    run = subprocess.run(
        [sys.executable, str(HERE / "run_out_of_memory.py"), str(tiny_model_dir),
         str(REPO / "examples" / "poster.png"), "500"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    error = result["error"]
    assert error is not None, "the capped run did not run out of memory"
    assert error["code"] == "out_of_memory"
    assert "ran out of memory in memory mode 'full'" in error["message"]
    assert "--resolution 640" in error["message"]
    assert result["weights_freed"], "the model stayed in memory after the out-of-memory error"
    assert result["after"]["layers"] == 2
