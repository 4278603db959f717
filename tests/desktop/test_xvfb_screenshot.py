"""The real app on a real X server (Xvfb): decompose an example and screenshot the window.

Offscreen rendering can hide problems a display server shows (platform plug-in libraries,
window mapping, painting), so this one runs the `xcb` platform under Xvfb and keeps the PNG
as a test artifact: out/desktop-window.png. The app is driven through its public API by
tests/desktop/xvfb_window.py, which also takes the screenshot: the app has no hook for it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from layerlift.inference.settings import Settings
from PIL import Image

from tests.conftest import REPO
from tests.desktop.conftest import LOGO

SCREENSHOT = REPO / "out" / "desktop-window.png"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_window_screenshot_under_xvfb(tmp_path):
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None or shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: `apt-get install -y xvfb` (Debian/Ubuntu); the "
                    "Qt xcb plug-in also needs libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1")
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    Settings(port=_free_port()).save(home / "config" / "settings.json")
    env = dict(os.environ, LAYERLIFT_HOME=str(home), QT_QPA_PLATFORM="xcb")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    command = [xvfb_run, "-a", "-s", "-screen 0 1280x900x24", sys.executable,
               str(REPO / "tests" / "desktop" / "xvfb_window.py"), str(LOGO), str(SCREENSHOT)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    log_file = home / "logs" / "layerlift.log"
    log_text = log_file.read_text() if log_file.exists() else "(no log)"
    assert proc.returncode == 0, f"{proc.stderr}\n--- log ---\n{log_text}"
    assert SCREENSHOT.exists(), log_text
    info = json.loads(SCREENSHOT.with_suffix(".json").read_text())
    assert info["platform"] == "xcb"  # grabbed from the X server, not rendered offscreen
    assert info["layers"] >= 2

    pixels = np.asarray(Image.open(SCREENSHOT).convert("RGB"))
    assert pixels.shape[1] >= 600 and pixels.shape[0] >= 400
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 200, f"only {len(colours)} colours: the window looks blank"
    x, y, w, h = info["layer_list"]
    thumbs = pixels[y:y + h, x:x + w]
    assert thumbs.size and thumbs.std() > 20, "the layer list region is (nearly) uniform"
    thumb_colours = {tuple(c) for c in np.unique(thumbs.reshape(-1, 3), axis=0)}
    assert (204, 204, 204) in thumb_colours, "no checkerboard behind the thumbnails"
    # The logo's orange square shows up in a thumbnail.
    orange = (thumbs[..., 0] > 230) & (thumbs[..., 1] > 130) & (thumbs[..., 1] < 170) & (
        thumbs[..., 2] < 40)
    assert orange.sum() > 50, "the orange layer is not visible among the thumbnails"
