"""The GIMP plug-in end to end, in a real headless GIMP 3 talking to the real bridge.

tests/gimp/harness/ builds a Debian trixie chroot with Debian's GIMP 3.0 (a few minutes, once,
then cached) and runs a snippet in it. The bridge runs on the host's loopback with the classic
backend; the chroot shares the network namespace, and the work folder is bind-mounted at the
same path so the plug-in finds the token where the server wrote it. Everything is checked from
outside: the XCF's layer tree, the flattened PNG GIMP exports, and the server's own job record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from layerlift.inference.formats.resultdir import MANIFEST
from layerlift.inference.job_store import RECORD_FILE, RESULT_DIR
from PIL import Image

from tests.conftest import EXAMPLES, REPO, Gimp3
from tests.gimp.xcf import read_xcf

pytestmark = pytest.mark.gimp

SNIPPET = Path(__file__).with_name("snippet.py")
GIMP_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short, bind-mountable path outside pytest's tmp tree (shared with the chroot).
    path = Path(tempfile.mkdtemp(prefix="llgimp-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Server:
    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        (self.home / "config").mkdir(parents=True, exist_ok=True)
        (self.home / "config" / "settings.json").write_text(json.dumps({"port": self.port}))
        env = dict(os.environ, LAYERLIFT_HOME=str(self.home))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "layerlift.desktop.cli", "serve", "--port", str(self.port)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited: {self.process.stdout.read()}"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise AssertionError("the bridge server did not start listening in 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def job_stacks(self) -> list[dict]:
        """The result manifest of every finished job, oldest first (the server's own record)."""
        found = []
        for folder in (self.home / "data" / "jobs").iterdir():
            manifest = folder / RESULT_DIR / MANIFEST
            if manifest.exists():
                record = json.loads((folder / RECORD_FILE).read_text())
                found.append((record.get("created", 0), json.loads(manifest.read_text())))
        return [stack for _, stack in sorted(found, key=lambda item: item[0])]


@pytest.fixture
def server(workdir: Path) -> Iterator[Server]:
    srv = Server(workdir / "home", _free_port()).start()
    yield srv
    srv.stop()


def install_plugin(workdir: Path) -> Path:
    """Install with the app's own installer; the harness's run.sh copies that folder into GIMP."""
    gimp_dir = workdir / "gimp-config"
    run = subprocess.run([sys.executable, "-m", "layerlift.desktop.cli", "install-gimp-plugin",
                          "--gimp-dir", str(gimp_dir)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return gimp_dir / "plug-ins" / "layerlift"


def run_gimp(gimp3: Gimp3, workdir: Path, case: str, image: Path, home: Path) -> dict:
    shutil.copy(image, workdir / "input.png")
    plugin = install_plugin(workdir)
    cmd = [str(gimp3.run), "-p", str(plugin), "-B", str(workdir),
           "-e", f"WORKDIR={workdir}", "-e", f"IMAGE={workdir / 'input.png'}",
           "-e", f"CASE={case}", "-e", f"LAYERLIFT_HOME={home}", "-t", str(GIMP_TIMEOUT),
           str(SNIPPET)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=GIMP_TIMEOUT + 60)
    log = run.stdout + run.stderr
    (workdir / f"gimp-{case}.log").write_text(log)
    assert run.returncode == 0, f"GIMP exited {run.returncode}:\n{log[-4000:]}"
    report = workdir / f"report-{case}.json"
    assert report.exists(), f"the snippet wrote no report:\n{log[-4000:]}"
    return json.loads(report.read_text())


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA")).astype(np.int16)


def test_decompose_inserts_one_group_that_recomposites(gimp3, workdir, server):
    report = run_gimp(gimp3, workdir, "decompose", EXAMPLES / "logo.png", server.home)
    assert report["ok"], report["message"]

    stacks = server.job_stacks()
    assert len(stacks) == 2, "one job for the decomposition and one for the recursive run"
    expected = stacks[0]["layers"]
    assert len(expected) == 4

    xcf = read_xcf(workdir / "out.xcf")
    top = xcf.top_level()
    assert len(top) == 2, [layer.name for layer in top]
    group = top[0]
    assert group.is_group and group.name.endswith("– 4 layers")
    assert "layerlift-group" in group.parasites
    assert report["selected"] == [group.name], "the new group becomes the active layer"
    source = top[1]
    assert not source.visible, "the source layer is hidden, not deleted"
    children = xcf.children(group)
    # XCF lists children top first; the server's stack is bottom first.
    assert [c.name for c in children] == [layer["name"] for layer in reversed(expected)]
    for child, layer in zip(children, reversed(expected), strict=True):
        if layer["width"] == 0:
            continue
        assert (child.x, child.y, child.width, child.height) == (
            layer["x"], layer["y"], layer["width"], layer["height"])

    original = _pixels(EXAMPLES / "logo.png")
    flat = _pixels(workdir / "flat.png")
    assert flat.shape == original.shape
    diff = np.abs(flat[..., :3] - original[..., :3])
    assert diff.max() <= 1, f"flattened result differs by up to {diff.max()} levels"

    # Recursive: the chosen layer was replaced in place by its sub-layers, inside the group.
    assert report["recursive_ok"], report["recursive_message"]
    sub_layers = [layer["name"] for layer in stacks[1]["layers"]]
    assert len(sub_layers) >= 2, f"the layer was not split again: {sub_layers}"
    after = read_xcf(workdir / "recursive.xcf")
    group_after = after.top_level()[0]
    # GIMP keeps layer names unique in an image by adding " #1"; compare without it.
    names_after = [re.sub(r" #\d+$", "", c.name) for c in after.children(group_after)]
    target_index = [c.name for c in children].index(report["recursive_target"])
    assert names_after == ([c.name for c in children[:target_index]] + sub_layers[::-1]
                           + [c.name for c in children[target_index + 1:]])
    assert len([layer for layer in after.top_level() if layer.is_group]) == 1
    flat_after = _pixels(workdir / "recursive.png")
    assert np.abs(flat_after[..., :3] - original[..., :3]).max() <= 1


def test_selection_bounds_offset_the_layers(gimp3, workdir, server):
    report = run_gimp(gimp3, workdir, "selection", EXAMPLES / "logo.png", server.home)
    assert report["ok"], report["message"]
    xcf = read_xcf(workdir / "selection.xcf")
    group = xcf.top_level()[0]
    children = xcf.children(group)
    stack = server.job_stacks()[0]
    assert (stack["width"], stack["height"]) == (200, 150)
    for child, layer in zip(children, reversed(stack["layers"]), strict=True):
        if layer["width"]:
            assert (child.x, child.y) == (40 + layer["x"], 30 + layer["y"])


def test_server_not_running_is_a_clear_gimp_error(gimp3, workdir):
    home = workdir / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "token").write_text("some-token")
    (home / "config" / "settings.json").write_text(json.dumps({"port": _free_port()}))
    report = run_gimp(gimp3, workdir, "no-server", EXAMPLES / "logo.png", home)
    assert not report["ok"]
    assert "not running" in report["message"] and "layerlift serve" in report["message"]
    assert "Traceback" not in report["message"]


def test_wrong_token_is_a_clear_gimp_error(gimp3, workdir, server):
    (server.home / "config" / "token").write_text("not-the-token")
    report = run_gimp(gimp3, workdir, "wrong-token", EXAMPLES / "logo.png", server.home)
    assert not report["ok"]
    assert "token" in report["message"].lower()
    assert "Traceback" not in report["message"]


@contextlib.contextmanager
def xvfb_display() -> Iterator[str]:
    """A private X display for the GUI GIMP (Debian's xvfb; `make test` installs it)."""
    if not shutil.which("Xvfb") or not shutil.which("xdotool"):
        pytest.fail("the undo test needs Xvfb and xdotool (apt-get install xvfb xdotool)")
    for number in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(
                f"/tmp/.X{number}-lock").exists():
            break
    display = f":{number}"
    process = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x1024x24",
                                "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert process.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        yield display
    finally:
        process.terminate()
        process.wait(10)


def _xdotool(display: str, *args: str) -> str:
    run = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=20,
                         env=dict(os.environ, DISPLAY=display))
    return run.stdout


def test_one_ctrl_z_removes_everything(gimp3, workdir, server):
    """In the GUI GIMP: decompose, press Ctrl+Z once in the image window, get the original."""
    shutil.copy(EXAMPLES / "logo.png", workdir / "input.png")
    plugin = install_plugin(workdir)
    with xvfb_display() as display:
        gimp = subprocess.Popen(
            [str(gimp3.run), "-d", display, "-p", str(plugin), "-B", str(workdir),
             "-e", f"WORKDIR={workdir}", "-e", f"LAYERLIFT_HOME={server.home}",
             "-t", str(GIMP_TIMEOUT), str(Path(__file__).with_name("undo_snippet.py"))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + GIMP_TIMEOUT
            while not (workdir / "ready").exists():
                assert gimp.poll() is None, f"GIMP exited early:\n{gimp.stdout.read()[-4000:]}"
                assert time.monotonic() < deadline, "GIMP never finished the decomposition"
                time.sleep(0.2)
            window = _xdotool(display, "search", "--name", r"\[.*\].*GIMP$").split()
            assert window, "no GIMP image window on the display"
            _xdotool(display, "windowfocus", "--sync", window[0])
            _xdotool(display, "key", "--clearmodifiers", "ctrl+z")
            (workdir / "undone").touch()
            log, _ = gimp.communicate(timeout=GIMP_TIMEOUT)
        finally:
            if gimp.poll() is None:
                gimp.kill()
    (workdir / "gimp-undo.log").write_text(log)
    assert gimp.returncode == 0, log[-4000:]
    report = json.loads((workdir / "report-undo.json").read_text())
    assert report["ok"], report["message"]
    assert report["before"] == [["Background", True, False]]
    assert len(report["decomposed"]) == 2 and report["decomposed"][0][2], report["decomposed"]
    assert report["after"] == report["before"], "one Ctrl+Z must restore the image exactly"
    assert np.array_equal(_pixels(workdir / "undone.png"), _pixels(EXAMPLES / "logo.png"))
