"""The frozen `cpu` desktop bundle, built with PyInstaller and started for real.

The module builds dist/layerlift/ with packaging/build.py (reusing it when its inputs have
not changed) and drives the frozen executable the way a user would: `--version`, a classic
decomposition to a PSD read back with psd-tools, `serve` answering the real Python client,
the tray starting and quitting on its own (offscreen and on a real X server), the GIMP
plug-in and the Photoshop package installed from the bundle. PyInstaller is a dev
dependency: without it these tests fail, they do not skip. `make test-dist` runs only this.
"""

from __future__ import annotations

import ast
import filecmp
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from layerlift.bridge.client import decompose_remote
from layerlift.inference import __version__
from layerlift.inference.backends.base import DecomposeRequest
from layerlift.inference.formats.ownership import MARKER
from layerlift.inference.formats.reader import read_image
from layerlift.inference.layers import Layer, LayerStack, psnr
from psd_tools import PSDImage

from bench import tray_probe
from bench.dist import free_port, load_builder, private_home, tray_ready, version_seconds
from tests.conftest import EXAMPLES, REPO

# A cold PyInstaller build of PySide6 + numpy + scipy takes a minute or two on 2 cores.
pytestmark = [pytest.mark.dist, pytest.mark.timeout(900)]

POSTER = EXAMPLES / "poster.png"
LOGO = EXAMPLES / "logo.png"
# Each start of the frozen app must be quick; these bounds only catch a broken bundle (a
# hang, an import loop), the measured figures are printed and kept in out/dist.json.
VERSION_BOUND_S = 10.0
TRAY_BOUND_S = 60.0
METRICS: dict[str, float | str] = {}


@pytest.fixture(scope="module")
def builder():
    return load_builder()


@pytest.fixture(scope="module")
def bundle(builder) -> Path:
    record = builder.build("cpu", log=print)
    path = Path(record["bundle"])
    METRICS.update(bundle=str(path), build_s=record["build_s"], reused=record["reused"],
                   bundle_mib=round(builder.folder_size(path) / 2**20, 1))
    return path


@pytest.fixture(scope="module")
def exe(bundle: Path, builder) -> Path:
    path = bundle / builder.flavours.executable_name()
    assert path.is_file() and os.access(path, os.X_OK)
    return path


@pytest.fixture(scope="module", autouse=True)
def report_metrics():
    yield
    if METRICS:
        out = REPO / "out"
        out.mkdir(exist_ok=True)
        (out / "dist.json").write_text(json.dumps(METRICS, indent=2), encoding="utf-8")
        print(f"\nfrozen cpu bundle: {json.dumps(METRICS)}")


def _run(exe: Path, *args: str, home: Path, timeout: float = 120.0,
         **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, LAYERLIFT_HOME=str(home), **env))


def test_version_answers_quickly(exe: Path) -> None:
    times = []
    for _ in range(3):
        seconds, text = version_seconds(exe)
        assert text == f"layerlift {__version__}"
        times.append(seconds)
    METRICS.update(version_first_s=round(times[0], 3), version_best_s=round(min(times), 3))
    assert max(times) < VERSION_BOUND_S


def test_cpu_bundle_holds_no_torch(bundle: Path, builder) -> None:
    assert builder.forbidden_files(bundle, "cpu") == []
    # The test environment has the diffusion stack installed, so this also proves the
    # excludes work: none of it came along.
    names = {p.name.split("-")[0].split(".")[0] for p in bundle.rglob("*")}
    assert not names & {"torch", "diffusers", "transformers", "torchvision", "triton"}


def test_qwen_backend_says_not_installed(exe: Path, layerlift_home: Path,
                                         tmp_path: Path) -> None:
    proc = _run(exe, "decompose", str(LOGO), "-o", str(tmp_path / "x.psd"), "--backend", "qwen",
                home=layerlift_home)
    assert proc.returncode == 1, proc.stderr
    assert "backend_unavailable" in proc.stderr and "not installed" in proc.stderr
    assert "torch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.psd").exists()


def test_decompose_poster_to_psd_on_classic(exe: Path, layerlift_home: Path,
                                            tmp_path: Path) -> None:
    target = tmp_path / "out.psd"
    proc = _run(exe, "decompose", str(POSTER), "-o", str(target), "--backend", "classic",
                home=layerlift_home)
    assert proc.returncode == 0, proc.stderr
    assert f"to {target}" in proc.stdout and "classic" in proc.stdout

    document = PSDImage.open(target)
    original = read_image(POSTER).pixels
    assert (document.height, document.width) == original.shape[:2]
    pixel_layers = [layer for layer in document.descendants() if not layer.is_group()]
    assert len(pixel_layers) >= 3
    stack = LayerStack(document.width, document.height, [
        Layer(layer.name, np.asarray(layer.topil().convert("RGBA")), layer.left, layer.top)
        for layer in pixel_layers if layer.width and layer.height
    ])
    assert psnr(original, stack.composite()) >= 50.0


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the frozen server did not start listening")


def test_serve_answers_the_python_client(exe: Path, layerlift_home: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, LAYERLIFT_HOME=str(layerlift_home)))
    try:
        _wait_listening(port, proc)
        # The client reads the token the frozen server wrote into the shared home.
        image = read_image(LOGO).pixels
        stack = decompose_remote(image, DecomposeRequest(layers=3), "classic",
                                 url=f"ws://127.0.0.1:{port}")
        assert (stack.height, stack.width) == image.shape[:2]
        assert len(stack.layers) >= 2
        assert psnr(image, stack.composite()) >= 50.0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tray_starts_offscreen_and_quits_cleanly(exe: Path, tmp_path: Path) -> None:
    times = []
    for index in range(2):
        home = private_home(tmp_path / f"home{index}")
        seconds, ready, proc = tray_ready(exe, home, "offscreen", timeout=TRAY_BOUND_S)
        assert proc.returncode == 0, proc.stderr
        assert ready["platform"] == "offscreen"
        assert ready["torch_imported"] is False
        times.append(seconds)
    METRICS.update(tray_ready_first_s=round(times[0], 3), tray_ready_best_s=round(min(times), 3))
    assert max(times) < TRAY_BOUND_S


def test_tray_window_decomposes_offscreen(exe: Path, tmp_path: Path) -> None:
    home = private_home(tmp_path / "home")
    env = dict(os.environ, LAYERLIFT_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([str(exe), "tray", "--open", str(LOGO), "--decompose",
                             "--backend", "classic"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log_file = home / "logs" / "layerlift.log"
    try:
        tray_probe.wait_until_ready(proc, home, TRAY_BOUND_S)
        deadline = time.monotonic() + 60
        while "decomposition of the opened picture ended" not in (
                log_file.read_text(encoding="utf-8") if log_file.exists() else ""):
            assert time.monotonic() < deadline, "the decomposition did not end in 60 s"
            time.sleep(0.2)
        assert tray_probe.stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_file.read_text(encoding="utf-8")
    assert "decomposition of the opened picture ended: done" in log, log


def test_tray_starts_on_a_real_x_server(exe: Path, tmp_path: Path) -> None:
    """The xcb plug-in and the X libraries the bundle carries load on Xvfb."""
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None or shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: `bash tests/install_system_deps.sh`")
    home = private_home(tmp_path / "home")
    _, ready, proc = tray_ready(exe, home, "xcb", timeout=TRAY_BOUND_S,
                                wrapper=[xvfb_run, "-a", "-s", "-screen 0 1024x768x24"])
    assert proc.returncode == 0, proc.stderr
    assert ready["platform"] == "xcb"


def test_install_gimp_plugin_from_the_bundle(exe: Path, layerlift_home: Path,
                                             tmp_path: Path) -> None:
    proc = _run(exe, "install-gimp-plugin", "--gimp-dir", str(tmp_path), home=layerlift_home)
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / "plug-ins" / "layerlift"
    source = REPO / "gimp_plugin" / "layerlift"
    names = sorted(p.name for p in source.glob("*.py"))
    # The modules the plug-in shares with LayerLift come from the bundle's data files.
    shared = {"ll_wire.py": REPO / "bridge" / "wire.py",
              "ll_job_states.py": REPO / "inference" / "job_states.py"}
    # Beside the modules, the installer's ownership marker (a later install may replace only
    # a folder it wrote).
    assert sorted(p.name for p in installed.iterdir()) == sorted([MARKER, *names, *shared])
    assert all(filecmp.cmp(source / n, installed / n, shallow=False) for n in names)
    assert all(filecmp.cmp(path, installed / n, shallow=False) for n, path in shared.items())
    assert (installed / "layerlift.py").stat().st_mode & stat.S_IXUSR
    assert "_internal" in proc.stdout  # it copied the bundle's own copy, not the checkout's


def test_build_ccx_from_the_bundle_matches_the_checkout(exe: Path, layerlift_home: Path,
                                                        tmp_path: Path) -> None:
    from layerlift.desktop import ccx

    target = tmp_path / "panel.ccx"
    proc = _run(exe, "build-ccx", "-o", str(target), home=layerlift_home)
    assert proc.returncode == 0, proc.stderr
    fresh = ccx.build(tmp_path / "fresh.ccx", REPO / "photoshop_plugin")
    assert target.read_bytes() == fresh.read_bytes()  # the build is deterministic


def test_notice_names_every_bundled_component(bundle: Path, builder) -> None:
    notice = builder.load("notice")
    text = (REPO / "NOTICE").read_text(encoding="utf-8")
    assert notice.problems(bundle, text) == []
    comps, _ = notice.components(bundle)
    names = {c.name.lower() for c in comps}
    assert {"python", "numpy", "scipy", "pillow", "psd-tools", "websockets", "platformdirs",
            "attrs", "pyside6_essentials", "shiboken6"} <= names
    assert (bundle / "NOTICE").read_text(encoding="utf-8") == text
    assert any((bundle / "licenses").rglob("*")), "no licence texts in the bundle"
    # The check has teeth: a NOTICE without numpy is caught.
    without = "\n".join(line for line in text.splitlines() if not line.startswith("- numpy"))
    assert notice.problems(bundle, without) == ["not in NOTICE: numpy"]


# Imports LayerLift makes that the cpu bundle deliberately leaves out: the Qwen backend's
# (it reports them missing) and psutil, which the tray's ready file uses when present.
ALLOWED_MISSING = {"psutil"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_layerlift_imports_nothing_the_cpu_bundle_excludes(builder) -> None:
    excluded = builder.flavours.excludes("cpu")
    qwen = REPO / "inference" / "backends" / "qwen"
    offenders = []
    for package in ("inference", "bridge", "desktop"):  # layerlift.* in the bundle
        for path in sorted((REPO / package).rglob("*.py")):
            if qwen in path.parents:
                continue
            for name in _imports(path):
                hit = next((ex for ex in excluded
                            if name == ex or name.startswith(ex + ".")), None)
                if hit and hit not in ALLOWED_MISSING:
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_build_is_reused_when_nothing_changed(bundle: Path, builder) -> None:
    started = time.monotonic()
    record = builder.build("cpu", log=lambda _text: None)
    assert record["reused"] is True and Path(record["bundle"]) == bundle
    assert time.monotonic() - started < 30


def test_spec_prunes_unused_qt_plugins(bundle: Path) -> None:
    plugins = {p.relative_to(bundle / "_internal" / "PySide6" / "Qt" / "plugins").as_posix()
               for p in (bundle / "_internal" / "PySide6" / "Qt" / "plugins").rglob("*.so")}
    assert {"platforms/libqoffscreen.so", "platforms/libqxcb.so"} <= plugins
    assert not any(p.startswith(("platformthemes/libqgtk3", "platforms/libqeglfs",
                                 "xcbglintegrations/")) for p in plugins)
    libs = {p.name for p in (bundle / "_internal").iterdir()}
    assert not {"libgtk-3.so.0", "libcairo.so.2", "libreadline.so.8"} & libs


def test_prune_drops_only_what_dropped_plugins_alone_needed(builder) -> None:
    prune = builder.load("prune")
    plugin = ("Qt/plugins/platformthemes/libgtk.so", "/src/libgtkplugin.so", "BINARY")
    gtk = ("libgtk.so.3", "/src/libgtk.so.3", "BINARY")
    shared = ("libglib.so.0", "/src/libglib.so.0", "BINARY")
    ctypes_lib = ("libloaded_by_ctypes.so", "/src/libctypes.so", "BINARY")
    extension = ("mod.cpython-311.so", "/src/mod.so", "EXTENSION")
    links = {
        "/src/libgtkplugin.so": [("libgtk.so.3", "/src/libgtk.so.3")],
        "/src/libgtk.so.3": [("libglib.so.0", None)],  # resolved by name only
        "/src/mod.so": [("libglib.so.0", "/src/libglib.so.0")],
    }
    datas = [("libgtk.so", "libgtk.so.3", "SYMLINK"), ("readme.txt", "/src/readme", "DATA")]
    binaries, kept_datas, removed = prune.prune(
        [plugin, gtk, shared, ctypes_lib, extension], datas,
        lambda dest: "platformthemes" not in dest, lambda path: links.get(path, []))
    assert binaries == [shared, ctypes_lib, extension]
    assert kept_datas == [("readme.txt", "/src/readme", "DATA")]
    assert removed == sorted([plugin[0], gtk[0], "libgtk.so"])


def test_flavours_exclude_the_diffusion_stack_from_cpu_only(builder) -> None:
    flavours = builder.flavours
    assert {"torch", "diffusers", "transformers", "torchvision"} <= set(flavours.excludes("cpu"))
    assert not {"torch", "diffusers", "transformers", "scipy.optimize"} & set(
        flavours.excludes("gpu"))
    assert flavours.bundle_name("cpu") == "layerlift"
    assert flavours.keep_file("PySide6/Qt/plugins/platforms/libqxcb.so")
    assert not flavours.keep_file("PySide6/Qt/plugins/platforms/libqeglfs.so")
    assert not flavours.keep_file("PySide6/Qt/translations/qt_de.qm")
    with pytest.raises(ValueError, match="unknown flavour"):
        flavours.excludes("tpu")
