"""The frozen bundle's size and start-up times, for the release notes.

Builds the `cpu` bundle with packaging/build.py (or reuses an up-to-date one) and measures:
- bundle size on disk (the one folder, symlinks not counted twice);
- `layerlift --version`: from spawn to exit, the price of the bootloader and the imports the
  CLI needs;
- tray-ready: from spawn to the tray's first answer on its single-instance socket, once its
  event loop runs with the tray set up (bench/tray_probe.py; bench/startup.py measures the
  same from source), offscreen, each run in its own LAYERLIFT_HOME and on a free port.
The first run of each comes right after the build, with the bundle's files in the page cache;
a truly cold disk (after a reboot) is slower, by the time to read ~250 MB.

    .venv/bin/python bench/dist.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):
    # Run as `python bench/dist.py`: make the repository root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tray_probe

REPO = Path(__file__).resolve().parent.parent


def load_builder() -> ModuleType:
    """packaging/build.py by path (`packaging` is also a PyPI library's name)."""
    if "layerlift_dist_build" in sys.modules:
        return sys.modules["layerlift_dist_build"]
    spec = importlib.util.spec_from_file_location("layerlift_dist_build",
                                                  REPO / "packaging" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_home(root: Path) -> Path:
    """A LAYERLIFT_HOME whose settings put the bridge on a free port."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "settings.json").write_text(json.dumps({"port": free_port()}))
    return root


def version_seconds(exe: Path, timeout: float = 60.0) -> tuple[float, str]:
    """(seconds from spawn to exit, what it printed) for `layerlift --version`."""
    started = time.perf_counter()
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                          timeout=timeout, check=True)
    return time.perf_counter() - started, proc.stdout.strip()


def tray_ready(exe: Path, home: Path, platform: str = "offscreen", linger: float = 0.3,
               timeout: float = 60.0, wrapper: list[str] | None = None
               ) -> tuple[float, dict, subprocess.CompletedProcess]:
    """Start the frozen tray, wait until it answers, let it idle `linger` seconds, stop it
    with SIGTERM; (ready seconds, what was observed, the finished process)."""
    env = dict(os.environ, LAYERLIFT_HOME=str(home), QT_QPA_PLATFORM=platform)
    command = [*(wrapper or []), str(exe), "tray"]
    started = time.time()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen: dict = {}
    try:
        seconds = tray_probe.wait_until_ready(proc, home, timeout) - started
        app = tray_probe.app_process(proc)
        time.sleep(linger)
        seen = {"rss": app.memory_info().rss, "torch_imported": tray_probe.torch_loaded(app)}
        tray_probe.stop(proc, app, timeout)
    except RuntimeError:
        seconds = float("nan")
        if proc.poll() is None:
            proc.kill()
    stdout, stderr = proc.communicate(timeout=timeout)
    seen["platform"] = tray_probe.logged_platform(home)
    return seconds, seen, subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def measure(runs: int = 5) -> dict:
    builder = load_builder()
    record = builder.build("cpu", log=lambda text: print(text, file=sys.stderr))
    bundle = Path(record["bundle"])
    exe = bundle / builder.flavours.executable_name()
    version = [version_seconds(exe)[0] for _ in range(runs)]
    ready = []
    with tempfile.TemporaryDirectory(prefix="layerlift-dist-bench-") as tmp:
        for index in range(runs):
            home = private_home(Path(tmp) / f"run{index}")
            seconds, _, proc = tray_ready(exe, home)
            if proc.returncode != 0:
                raise RuntimeError(f"the frozen tray exited {proc.returncode}: {proc.stderr}")
            ready.append(seconds)
    return {
        "bundle": str(bundle),
        "bundle_mib": round(builder.folder_size(bundle) / 2**20, 1),
        "build_s": record["build_s"],
        "build_reused": record["reused"],
        "version_first_s": round(version[0], 3),
        "version_median_s": round(statistics.median(version), 3),
        "tray_ready_first_s": round(ready[0], 3),
        "tray_ready_median_s": round(statistics.median(ready), 3),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = measure(max(1, args.runs))
    if args.json:
        print(json.dumps(result))
    else:
        reused = " (reused; --force a rebuild with packaging/build.py)" \
            if result["build_reused"] else ""
        print(f"bundle {result['bundle']}: {result['bundle_mib']} MiB, "
              f"built in {result['build_s']} s{reused}")
        print(f"layerlift --version: first {result['version_first_s']} s, "
              f"median {result['version_median_s']} s over {result['runs']} runs")
        print(f"tray ready (offscreen): first {result['tray_ready_first_s']} s, "
              f"median {result['tray_ready_median_s']} s over {result['runs']} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
