"""Watch a started tray from outside, the way a script or another program can.

The app writes nothing for benches or tests: readiness is the tray answering `ping` on its
single-instance socket (it answers only once its event loop runs with the tray in place),
memory and loaded libraries come from the operating system, the platform from the app's own
log, and a stop is the SIGTERM a session manager sends.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil


def app_process(proc: subprocess.Popen, timeout: float = 10.0) -> psutil.Process:
    """The tray itself, also when started through a wrapper such as xvfb-run."""
    root = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while True:
        for candidate in [root, *root.children(recursive=True)]:
            try:
                command = candidate.cmdline()
            except psutil.Error:
                continue
            if "tray" in command and not any("xvfb-run" in part for part in command):
                return candidate
        if time.monotonic() > deadline:
            return root
        time.sleep(0.01)


def wait_until_ready(proc: subprocess.Popen, home: Path, timeout: float = 60.0) -> float:
    """`time.time()` of the tray's first answer to `ping`; raises if it exits or hangs."""
    from layerlift.desktop.gui.app import ping_running

    deadline = time.monotonic() + timeout
    config = home / "config"
    while True:
        if ping_running(config, wait_ms=500):
            return time.time()
        if proc.poll() is not None:
            raise RuntimeError(f"the tray exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the tray did not answer within {timeout:.0f} s")
        time.sleep(0.005)


def torch_loaded(process: psutil.Process) -> bool:
    """Did the process load any file of torch (its Python modules or its libraries)?"""
    try:
        maps = process.memory_maps(grouped=True)
    except psutil.Error:
        return False
    return any(re.search(r"[/\\]torch[/\\]", m.path) for m in maps)


def logged_platform(home: Path) -> str | None:
    """The Qt platform the tray reported in its log when it became ready."""
    log = home / "logs" / "layerlift.log"
    found = re.findall(r"tray ready on the (\S+) platform", log.read_text(encoding="utf-8")) \
        if log.exists() else []
    return found[-1] if found else None


def stop(proc: subprocess.Popen, app: psutil.Process | None = None,
         timeout: float = 30.0) -> int:
    """SIGTERM the tray (not its wrapper) and wait; the exit status of what was started."""
    target = app or psutil.Process(proc.pid)
    with contextlib.suppress(psutil.Error):
        target.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
