"""Nothing the user had is ever lost: safe outputs, safe inputs, a bare `layerlift`.

Each test reproduces one way a command could destroy data, hang, abort or answer too late;
every input is hashed before and after the command and must come back byte-identical.
Commands that could hang (a FIFO) or abort (Qt without a display) run in a child process
with a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from layerlift.desktop.cli import main
from layerlift.inference import formats
from layerlift.inference.errors import BadRequest, InputError
from layerlift.inference.formats import read_image, read_stack, write_stack
from layerlift.inference.layers import Layer, LayerStack
from PIL import Image

from tests.conftest import EXAMPLES, REPO

LOGO = EXAMPLES / "logo.png"
LINUX = sys.platform.startswith("linux")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and its hash: the user's data."""
    return {
        str(path.relative_to(folder)): digest(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def two_layer_psd(path: Path) -> Path:
    """A PSD with layers of its own, saved by psd-tools with its composite (like 2layers.psd)."""
    from psd_tools import PSDImage

    document = PSDImage.new("RGB", (24, 16), color=(255, 255, 255))
    red = np.zeros((8, 10, 4), np.uint8)
    red[...] = (220, 30, 30, 255)
    blue = np.zeros((6, 6, 4), np.uint8)
    blue[...] = (20, 40, 210, 255)
    document.create_pixel_layer_from_array(red, name="Red box", top=2, left=3)
    document.create_pixel_layer_from_array(blue, name="Blue box", top=7, left=14)
    document.save(path)
    return path


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 120, env: dict | None = None):
    """`python -m layerlift.desktop.cli ARGS` in a child; a hang fails the test, not pytest."""
    command = [sys.executable, "-m", "layerlift.desktop.cli", *args]
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = str(REPO) + os.pathsep + environment.get("PYTHONPATH", "")
    try:
        return subprocess.run(command, cwd=cwd, env=environment, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`layerlift {' '.join(args)}` hung for {timeout} s: {exc.stderr!r}")


@pytest.fixture
def never_decode(monkeypatch):
    """Fail the test if the input is decoded: refusals must come before any work."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the input was decoded before the output was checked")

    monkeypatch.setattr(formats, "read_image", refuse)
    return calls


# --- the default output never overwrites anything -------------------------------------


def test_default_output_never_overwrites_the_input_psd(tmp_path, monkeypatch, capsys):
    source = two_layer_psd(tmp_path / "in.psd")
    before = digest(source)
    original_layers = [layer.name for layer in read_stack(source).layers]
    monkeypatch.chdir(tmp_path)
    assert main(["decompose", "in.psd", "-n", "2", "--backend", "classic", "-q"]) == 0
    assert digest(source) == before
    assert [layer.name for layer in read_stack(source).layers] == original_layers
    written = tmp_path / "in-2.psd"
    assert f"to {written}" in capsys.readouterr().out
    assert read_stack(written).width == 24


def test_default_output_never_overwrites_an_earlier_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "logo.psd"
    mine.write_bytes(b"the user's own logo.psd")
    (tmp_path / "logo-2.psd").mkdir()  # any kind of file takes a name
    assert main(["decompose", str(LOGO), "--backend", "classic", "-q", "-n", "2"]) == 0
    assert mine.read_bytes() == b"the user's own logo.psd"
    assert os.listdir(tmp_path / "logo-2.psd") == []
    assert read_stack(tmp_path / "logo-3.psd").width == 320


def test_a_name_taken_while_working_is_not_overwritten(tmp_path, monkeypatch, capsys):
    """The default name is free when chosen but taken before the write: the next one is used."""
    from layerlift.inference.formats import stackio

    monkeypatch.chdir(tmp_path)
    real = stackio.publish_new

    def late_user(temp, target, *args):
        if target.name == "logo.psd" and not target.exists():
            target.write_bytes(b"saved by the user meanwhile")
        return real(temp, target, *args)

    monkeypatch.setattr(stackio, "publish_new", late_user)
    assert main(["decompose", str(LOGO), "--backend", "classic", "-q", "-n", "2"]) == 0
    assert (tmp_path / "logo.psd").read_bytes() == b"saved by the user meanwhile"
    assert read_stack(tmp_path / "logo-2.psd").width == 320
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_publish_new_never_replaces(tmp_path):
    from layerlift.inference.atomic import publish_new

    temp, target = tmp_path / "temp", tmp_path / "target"
    temp.write_bytes(b"new")
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        publish_new(temp, target)
    assert target.read_bytes() == b"old"
    target.unlink()
    publish_new(temp, target)
    assert target.read_bytes() == b"new" and not temp.exists()


# --- -o equal to the input is refused before any work ----------------------------------


@pytest.mark.parametrize("spelling", ["same", "symlink", "dotted", "hardlink"])
def test_output_equal_to_the_input_is_refused(tmp_path, never_decode, capsys, spelling):
    source = two_layer_psd(tmp_path / "in.psd")
    before = digest(source)
    (tmp_path / "sub").mkdir()
    output = {
        "same": source,
        "symlink": tmp_path / "link.psd",
        "dotted": tmp_path / "sub" / ".." / "." / "in.psd",
        "hardlink": tmp_path / "hard.psd",
    }[spelling]
    if spelling == "symlink":
        output.symlink_to(source)
    if spelling == "hardlink":
        os.link(source, output)
    assert main(["decompose", str(source), "-o", str(output), "--backend", "classic"]) == 2
    err = capsys.readouterr().err
    assert "is the input" in err and "Traceback" not in err
    assert digest(source) == before
    assert not never_decode


def test_a_folder_output_holding_the_input_is_refused(tmp_path, never_decode, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    source = folder / "logo.png"
    shutil.copy(LOGO, source)
    assert main(["decompose", str(source), "-o", f"{folder}/", "--backend", "classic"]) == 2
    assert "holds the input" in capsys.readouterr().err
    assert os.listdir(folder) == ["logo.png"] and digest(source) == digest(LOGO)


# --- a folder output is written only when it is new, empty or LayerLift's --------------


def test_a_stack_json_in_a_users_folder_is_not_trusted(tmp_path, never_decode, capsys):
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "precious.jpg").write_bytes(b"\xff\xd8\xff the only copy of a photo")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(folder / "00_background.png")
    manifest = {"format": "layerlift.stack", "version": 1, "width": 4, "height": 4,
                "layers": [{"name": "photo", "file": "precious.jpg", "x": 0, "y": 0,
                            "width": 4, "height": 4}]}
    (folder / "stack.json").write_text(json.dumps(manifest))
    before = snapshot(folder)
    assert main(["decompose", str(LOGO), "-o", f"{folder}/", "--backend", "classic"]) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and "precious.jpg" in err
    assert snapshot(folder) == before


def test_library_refuses_a_users_folder_too(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    stack = LayerStack(4, 4, [Layer("a", np.full((4, 4, 4), 200, np.uint8))])
    with pytest.raises(BadRequest, match="did not write"):
        write_stack(stack, folder)
    assert os.listdir(folder) == ["notes.txt"]


def test_layerlifts_own_folder_is_rewritten_and_user_files_survive(tmp_path, capsys):
    folder = tmp_path / "layers"
    assert main(["decompose", str(LOGO), "-o", f"{folder}/", "--backend", "classic", "-q",
                 "-n", "4"]) == 0
    assert (folder / ".layerlift-folder.json").is_file()
    (folder / "my-notes.txt").write_text("added by the user")
    (folder / "00_old_edit.png").write_bytes(b"a user file named like a layer")
    # A second run with fewer layers replaces LayerLift's files and removes its stale ones.
    assert main(["decompose", str(LOGO), "-o", str(folder), "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    assert (folder / "my-notes.txt").read_text() == "added by the user"
    assert (folder / "00_old_edit.png").read_bytes() == b"a user file named like a layer"
    assert len(read_stack(folder).layers) == 2
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert len(pngs) == 3  # two layers and the user's file; the stale layers are gone


def test_a_layer_file_the_user_changed_is_never_overwritten(tmp_path, capsys):
    folder = tmp_path / "layers"
    assert main(["decompose", str(LOGO), "-o", f"{folder}/", "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    edited = sorted(folder.glob("00_*.png"))[0]
    Image.new("RGBA", (5, 5), (9, 9, 9, 255)).save(edited)  # the user edited a layer
    before = snapshot(folder)
    assert main(["decompose", str(LOGO), "-o", f"{folder}/", "--backend", "classic", "-q",
                 "-n", "2"]) == 2
    assert "changed since" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_an_empty_or_new_folder_is_fine_and_a_named_psd_is_replaced(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"Finder was here")  # shells' files do not count
    assert main(["decompose", str(LOGO), "-o", str(empty), "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    assert len(read_stack(empty).layers) == 2
    assert (empty / ".DS_Store").read_bytes() == b"Finder was here"
    named = tmp_path / "result.psd"
    named.write_bytes(b"an older result the user asks to replace")
    assert main(["decompose", str(LOGO), "-o", str(named), "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    assert len(read_stack(named).layers) == 2


# --- only regular files are read; a FIFO never hangs ---------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_input_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    started = time.monotonic()
    proc = run_cli("decompose", str(fifo), "-o", str(tmp_path / "o.psd"), timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "FIFO" in proc.stderr and "regular file" in proc.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "o.psd").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.timeout(30)
def test_the_reader_refuses_a_fifo_in_process(tmp_path):
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):
        read_image(fifo)
    with pytest.raises(InputError, match="FIFO"):
        read_stack(fifo)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_named_a_device_not_empty(tmp_path, capsys):
    assert main(["decompose", "/dev/zero", "-o", str(tmp_path / "o.psd")]) == 2
    err = capsys.readouterr().err
    assert "character device" in err and "empty" not in err


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_a_socket_and_a_folder_are_named(tmp_path, capsys):
    path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        assert main(["decompose", str(path), "-o", str(tmp_path / "o.psd")]) == 2
        assert "is a socket" in capsys.readouterr().err
    finally:
        server.close()
    assert main(["decompose", str(tmp_path), "-o", str(tmp_path / "o.psd")]) == 2
    assert "is a folder" in capsys.readouterr().err


# --- a bare `layerlift` without a display explains itself -----------------------------


def _no_display_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_RUNTIME_DIR"] = "/nonexistent-runtime-dir"
    return env


@pytest.mark.skipif(not LINUX, reason="Windows and macOS always have a display")
@pytest.mark.parametrize("display", [None, ":97"])
def test_bare_layerlift_without_a_display_prints_usage(tmp_path, display):
    env = _no_display_env()
    if display is not None:  # set, but nothing listens there
        assert not Path(f"/tmp/.X11-unix/X{display[1:]}").exists()
        env["DISPLAY"] = display
    env["LAYERLIFT_HOME"] = str(tmp_path / "home")
    proc = run_cli(env=env, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.returncode != -signal.SIGABRT and "Aborted" not in proc.stderr
    for command in ("decompose", "serve", "doctor"):
        assert f"layerlift {command}" in proc.stderr
    assert "could not connect to display" not in proc.stderr  # Qt was never started


@pytest.mark.skipif(not LINUX, reason="Windows and macOS always have a display")
def test_tray_without_a_display_says_so(tmp_path):
    env = _no_display_env()
    env["LAYERLIFT_HOME"] = str(tmp_path / "home")
    proc = run_cli("tray", env=env, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "needs a desktop session" in proc.stderr and "decompose" in proc.stderr


@pytest.mark.skipif(not LINUX, reason="the X11 probe is Linux-only")
def test_the_display_probe_accepts_a_real_x_server():
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None or shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: `apt-get install -y xvfb`")
    env = _no_display_env()
    env["PYTHONPATH"] = str(REPO)
    code = ("from layerlift.desktop.display import display_problem\n"
            "print('problem:', display_problem())")
    proc = subprocess.run([xvfb_run, "-a", sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "problem: None" in proc.stdout, proc.stdout + proc.stderr


def test_display_probe_rules():
    from layerlift.desktop.display import display_problem

    assert display_problem({}, "win32") is None
    assert display_problem({}, "darwin") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert "DISPLAY" in display_problem({}, "linux")
    assert "Wayland" in display_problem({"QT_QPA_PLATFORM": "wayland"}, "linux")


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes" in out
    for code in ("0", "1", "2", "130"):
        assert f"\n  {code} " in out


# --- the output is checked before the input is decoded ------------------------------


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        # Root writes through permission bits; sysfs refuses new files even to root.
        if not LINUX or not Path("/sys").is_dir():
            pytest.skip("no folder here that root cannot write into")
        return Path("/sys")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return folder


@pytest.mark.skipif(os.name == "nt", reason="POSIX paths")
@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("out.txt", "not a layered format"),
        ("unwritable", "cannot write into"),
        ("parent-is-file", "not a folder"),
        ("dev-null", "character device"),
        ("bare-suffix", "no file name"),
        ("empty", "empty"),
        ("existing-dir-named-psd", "existing folder"),
        ("no-suffix", "does not end in '/'"),
    ],
)
def test_bad_outputs_are_refused_before_any_work(tmp_path, never_decode, capsys, case,
                                                 needle):
    source = tmp_path / "photo.png"
    shutil.copy(LOGO, source)
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "out.psd").mkdir()
    output = {
        "out.txt": str(tmp_path / "out.txt"),
        "unwritable": str(_unwritable_folder(tmp_path) / "out.psd") if case == "unwritable"
        else "",
        "parent-is-file": str(tmp_path / "afile" / "out.psd"),
        "dev-null": "/dev/null",
        "bare-suffix": str(tmp_path / ".psd"),
        "empty": "",
        "existing-dir-named-psd": str(tmp_path / "out.psd"),
        "no-suffix": str(tmp_path / "out"),
    }[case]
    before = snapshot(tmp_path)
    code = main(["decompose", str(source), "-o", output, "--backend", "classic", "--json"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert needle in err, err
    assert "File exists" not in err and "give a folder to write the layer PNGs" not in err
    # With --json the error is also a JSON object on stdout, with the code kept.
    error = json.loads(out)
    assert error["exit_code"] == 2 and error["error"]["code"] == "bad_request"
    assert needle in error["error"]["message"]
    assert snapshot(tmp_path) == before  # nothing written, nothing removed
    assert os.listdir(tmp_path / "out.psd") == []
    assert not (tmp_path / ".psd").exists()
    assert not never_decode


def test_a_large_input_is_not_decoded_for_a_bad_output(tmp_path):
    """A bad output must not cost the decoding and the decomposition before it is refused."""
    rng = np.random.default_rng(0)
    big = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save(big,
                                                                                quality=90)
    before = digest(big)
    started = time.monotonic()
    proc = run_cli("decompose", str(big), "-o", str(tmp_path / "out.txt"), "--backend",
                   "classic", timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "not a layered format" in proc.stderr
    # No backend was even chosen: the refusal came before any work, not after it.
    assert "backend:" not in proc.stderr, proc.stderr
    assert elapsed < 15, f"refused only after {elapsed:.0f} s"
    assert digest(big) == before


# --- messages, and JSON errors -------------------------------------------------------


def test_json_errors_keep_the_exit_code(tmp_path, capsys):
    assert main(["decompose", str(tmp_path / "missing.png"), "--json"]) == 2
    out, err = capsys.readouterr()
    error = json.loads(out)
    assert error == {"error": {"code": "bad_input", "message": error["error"]["message"]},
                     "exit_code": 2}
    assert "missing.png" in error["error"]["message"] and err.startswith("error:")


def test_json_usage_errors_are_json_too(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["decompose", str(LOGO), "-n", "0", "--json"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    error = json.loads(out)
    assert error["exit_code"] == 2 and "layer count" in error["error"]["message"]
    assert "usage:" in err


# --- explicit output rules ------------------------------------------------------------


def test_a_path_ending_in_a_slash_is_a_new_folder(tmp_path, capsys):
    target = tmp_path / "new" / "layers"
    assert main(["decompose", str(LOGO), "-o", f"{target}/", "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    assert len(read_stack(target).layers) == 2


def test_psb_output(tmp_path, capsys):
    target = tmp_path / "big.psb"
    assert main(["decompose", str(LOGO), "-o", str(target), "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    assert target.read_bytes()[:6] == b"8BPS\x00\x02"  # version 2: PSB
    assert len(read_stack(target).layers) == 2
    assert read_image(target).format == "PSB"


# --- library log lines become LayerLift's warnings ----------------------------------


def _psd_with_unusable_profile(path: Path) -> Path:
    """An RGB PSD carrying a Lab ICC profile: psd-tools cannot build the transform."""
    from PIL import ImageCms
    from psd_tools import PSDImage
    from psd_tools.constants import Resource
    from psd_tools.psd.image_resources import ImageResource

    two_layer_psd(path)
    document = PSDImage.open(path)
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    document._record.image_resources[Resource.ICC_PROFILE] = ImageResource(
        key=Resource.ICC_PROFILE, data=lab
    )
    with open(path, "wb") as handle:
        document._record.write(handle)
    return path


def test_library_log_lines_are_prefixed_warnings(tmp_path):
    source = _psd_with_unusable_profile(tmp_path / "profiled.psd")
    before = digest(source)
    proc = run_cli("decompose", str(source), "-o", str(tmp_path / "out.psd"), "--backend",
                   "classic", "-n", "2")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    stray = [line for line in lines if not line.startswith(("warning:", "backend:"))]
    assert not stray, f"unprefixed lines on stderr: {stray}"
    assert any(line.startswith("warning: psd-tools:") and "ICC profile" in line
               for line in lines)
    assert digest(source) == before
    assert "ICC" in " ".join(read_image(source).warnings)


# --- vector shapes need aggdraw; damaged composites are rendered --------------------------


def test_aggdraw_is_a_dependency():
    import importlib.util
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(dep.split(">")[0].split("=")[0].strip() == "aggdraw"
               for dep in project["dependencies"])
    assert importlib.util.find_spec("aggdraw") is not None, "pip install aggdraw"


def test_a_missing_aggdraw_is_one_clear_sentence(tmp_path, monkeypatch):
    """psd-tools' own error is five lines naming an extra; ours is one sentence."""
    from psd_tools import PSDImage

    source = two_layer_psd(tmp_path / "shapes.psd")

    def no_aggdraw(self, *args, **kwargs):
        raise ImportError("Vector shape rendering requires: aggdraw\n\nInstall with:\n"
                          "    pip install 'psd-tools[composite]'\nOr:\n    pip install aggdraw")

    monkeypatch.setattr(PSDImage, "composite", no_aggdraw)
    with pytest.raises(InputError) as caught:
        read_image(source)
    message = caught.value.message
    assert caught.value.code == "unsupported_format"
    assert "\n" not in message and "pip install aggdraw" in message
    assert "shapes.psd" in message


def _damage_stored_composite(path: Path) -> Path:
    """Cut the end of the file: the merged image (last section) no longer decompresses."""
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    return path


def test_a_damaged_stored_composite_is_rendered_from_the_layers(tmp_path):
    source = _damage_stored_composite(two_layer_psd(tmp_path / "damaged.psd"))
    before = digest(source)
    proc = run_cli("decompose", str(source), "-o", str(tmp_path / "out.psd"), "--backend",
                   "classic", "-n", "2")
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "damaged" in proc.stderr
    assert "composited instead" in proc.stderr
    loaded = read_image(source)
    assert tuple(loaded.pixels[5, 8]) == (220, 30, 30, 255)  # the red layer, rendered
    assert digest(source) == before


# --- written files get ordinary permissions -----------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_outputs_get_the_umask_or_the_replaced_files_permissions(tmp_path, capsys):
    new = tmp_path / "new.psd"
    assert main(["decompose", str(LOGO), "-o", str(new), "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask
    new.chmod(0o640)
    assert main(["decompose", str(LOGO), "-o", str(new), "--backend", "classic", "-q",
                 "-n", "2"]) == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o640


# --- the input limit keeps a decomposition under 8 GB --------------------------------


def test_the_input_limit_says_why(tmp_path, capsys):
    """bench/large_input.py: 8.4 GB at 100 MP, so the limit is 64 MP, and the error says why."""
    from layerlift.inference.formats import MAX_PIXELS
    from layerlift.inference.input_check import MEMORY_BUDGET_GB, MEMORY_PER_MEGAPIXEL_GB

    from tests.helpers import png_header_only

    assert MAX_PIXELS / 1e6 * MEMORY_PER_MEGAPIXEL_GB < MEMORY_BUDGET_GB <= 8
    over = png_header_only(tmp_path / "huge.png", 8001, 8000)
    assert main(["decompose", str(over), "-o", str(tmp_path / "x.psd"), "--json"]) == 2
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]
    assert error["code"] == "image_too_large"
    assert "64.0 megapixels" in err and "memory" in err and "8 GB" in err
    # Between our limit and twice Pillow's, Pillow would warn on stderr by itself: it must not.
    pillow_warns = png_header_only(tmp_path / "hundred.png", 11547, 8660)
    proc = run_cli("decompose", str(pillow_warns), "-o", str(tmp_path / "z.psd"))
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        line for line in proc.stderr.splitlines() if line.startswith("error:")
    ], proc.stderr
    at_limit = png_header_only(tmp_path / "limit.png", 8000, 8000)
    assert main(["decompose", str(at_limit), "-o", str(tmp_path / "y.psd")]) == 2
    err = capsys.readouterr().err
    assert "megapixels" not in err  # not too large: refused only for its broken pixel data


def test_swap_in_folder_replaces_a_folder_whole_and_puts_the_old_one_back_on_failure(
        tmp_path, monkeypatch):
    from layerlift.inference import atomic

    target, staging, aside = tmp_path / "result", tmp_path / ".new", tmp_path / ".old"
    target.mkdir()
    (target / "a.txt").write_text("old")
    staging.mkdir()
    (staging / "a.txt").write_text("new")
    atomic.swap_in_folder(staging, target, aside)
    assert (target / "a.txt").read_text() == "new"
    assert not staging.exists() and not aside.exists()

    staging.mkdir()
    (staging / "a.txt").write_text("newer")
    real_rename = os.rename

    def refuse_the_new_folder(src, dst):
        if Path(src) == staging:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", refuse_the_new_folder)
    with pytest.raises(OSError):
        atomic.swap_in_folder(staging, target, aside)
    assert (target / "a.txt").read_text() == "new"
    assert not aside.exists()
