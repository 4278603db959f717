"""How fast the tray is ready, and how much memory it holds idle with no model loaded.

Starts `layerlift tray` as a fresh process several times, each in its own LAYERLIFT_HOME
and on a free port, and measures:
- time to tray-ready: from just before the process is spawned (interpreter start-up and
  every import included) to the moment the app's event loop first runs with the tray
  icon set and the window not yet built; the app writes that moment to a ready file;
- idle RSS: the process's resident memory a couple of seconds later, with the bridge
  listening and no model loaded; torch must not be imported at all.

Targets: ready under 1.5 s, idle RSS under 200 MB.

    .venv/bin/python bench/startup.py [--runs 5] [--idle 2.0] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/startup.py`: make the repository root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tray_probe

REPO = Path(__file__).resolve().parent.parent
TARGET_READY_S = 1.5
TARGET_RSS_MB = 200.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_once(idle: float, platform: str, timeout: float = 60.0) -> dict[str, float | bool]:
    with tempfile.TemporaryDirectory(prefix="layerlift-startup-") as tmp:
        home = Path(tmp)
        (home / "config").mkdir()
        settings = {"port": _free_port()}
        (home / "config" / "settings.json").write_text(json.dumps(settings))
        env = dict(os.environ, LAYERLIFT_HOME=str(home), QT_QPA_PLATFORM=platform)
        command = [sys.executable, "-m", "layerlift.desktop.cli", "tray"]
        started = time.time()
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            ready_at = tray_probe.wait_until_ready(proc, home, timeout)
            app = tray_probe.app_process(proc)
            rss_ready = app.memory_info().rss
            time.sleep(idle)
            rss_idle = app.memory_info().rss
            torch = tray_probe.torch_loaded(app)
            code = tray_probe.stop(proc, app, timeout)
            if code != 0:
                raise RuntimeError(f"the tray exited with {code} on SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {
        "ready_s": ready_at - started,
        "rss_ready_mb": rss_ready / 2**20,
        "rss_idle_mb": rss_idle / 2**20,
        "torch_imported": torch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0,
                        help="seconds after ready before the idle RSS sample")
    parser.add_argument("--platform", default=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
                        help="Qt platform plug-in (offscreen by default; xcb under X/Xvfb)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    runs = [measure_once(args.idle, args.platform) for _ in range(max(1, args.runs))]
    ready = [r["ready_s"] for r in runs]
    rss = [r["rss_idle_mb"] for r in runs]
    summary = {
        "runs": len(runs),
        "platform": args.platform,
        "cpus": os.cpu_count(),
        "ready_s_median": statistics.median(ready),
        "ready_s_first": ready[0],
        "ready_s_max": max(ready),
        "rss_idle_mb_median": statistics.median(rss),
        "rss_idle_mb_max": max(rss),
        "torch_imported": any(r["torch_imported"] for r in runs),
        "ok": statistics.median(ready) < TARGET_READY_S and max(rss) < TARGET_RSS_MB
        and not any(r["torch_imported"] for r in runs),
    }
    if args.json:
        print(json.dumps({"summary": summary, "runs": runs}, indent=2))
    else:
        print(f"tray ready: median {summary['ready_s_median']:.2f} s, first "
              f"{summary['ready_s_first']:.2f} s, max {summary['ready_s_max']:.2f} s "
              f"(target < {TARGET_READY_S} s) over {len(runs)} runs [{args.platform}, "
              f"{summary['cpus']} CPUs]")
        print(f"idle RSS:   median {summary['rss_idle_mb_median']:.0f} MB, max "
              f"{summary['rss_idle_mb_max']:.0f} MB (target < {TARGET_RSS_MB:.0f} MB); "
              f"torch imported: {summary['torch_imported']}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
