"""The wheel on its own: built from the checkout, installed into a fresh virtual environment,
it claims no top-level name but `layerlift` and its plug-in commands work with no checkout.

The fresh environment gets LayerLift's dependencies by pointing a .pth file at this test
environment's site-packages (a plain path entry: no editable finder of the checkout comes
with it), so no package is downloaded and only the wheel's own files provide `layerlift`.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from layerlift.inference.formats.ownership import MARKER

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "-w", str(out),
                    str(REPO)], check=True, cwd=out, timeout=240)
    (path,) = out.glob("layerlift-*.whl")
    return path


@pytest.fixture(scope="module")
def fresh_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh-venv")
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=120)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "layerlift_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def _top_level_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/", 1)[0] for name in archive.namelist()}


def test_wheel_claims_only_the_layerlift_name(wheel: Path) -> None:
    version = wheel.name.split("-")[1]
    assert _top_level_names(wheel) == {"layerlift", f"layerlift-{version}.dist-info"}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        top_level = archive.read(f"layerlift-{version}.dist-info/top_level.txt").decode()
    assert top_level.split() == ["layerlift"]
    # The subpackages and both plug-ins are inside, under the one name.
    assert {"layerlift/inference/backends/classic/__init__.py",
            "layerlift/bridge/server.py", "layerlift/desktop/cli/__init__.py",
            "layerlift/gimp_plugin/layerlift/layerlift.py",
            "layerlift/photoshop_plugin/manifest.json",
            "layerlift/photoshop_plugin/src/panel.js"} <= names
    assert not any("/test/" in n or n.endswith("package.json") for n in names)


def test_installed_wheel_runs_from_its_own_files(fresh_env: Path, tmp_path: Path) -> None:
    python = fresh_env / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import layerlift.inference, layerlift.desktop;"
                            "print(layerlift.inference.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(fresh_env)
    missing = subprocess.run([str(python), "-c", "import inference"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert missing.returncode != 0  # nothing outside the namespace is claimed


def test_plugin_commands_from_the_wheel_match_the_checkout(fresh_env: Path,
                                                           tmp_path: Path) -> None:
    layerlift = fresh_env / "bin" / "layerlift"
    env_home = {"LAYERLIFT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    gimp = subprocess.run([str(layerlift), "install-gimp-plugin", "--gimp-dir",
                           str(tmp_path / "gimp")], cwd=tmp_path, env=env_home,
                          capture_output=True, text=True, timeout=60)
    assert gimp.returncode == 0, gimp.stderr
    installed = tmp_path / "gimp" / "plug-ins" / "layerlift"
    source = REPO / "gimp_plugin" / "layerlift"
    names = sorted(p.name for p in source.glob("*.py"))
    shared = {"ll_wire.py": REPO / "bridge" / "wire.py",
              "ll_job_states.py": REPO / "inference" / "job_states.py"}
    # Beside the modules, the installer's ownership marker (a later install may replace only
    # a folder it wrote).
    assert sorted(p.name for p in installed.iterdir()) == sorted([MARKER, *names, *shared])
    assert all(filecmp.cmp(source / n, installed / n, shallow=False) for n in names)
    assert all(filecmp.cmp(path, installed / n, shallow=False) for n, path in shared.items())
    assert str(fresh_env) in gimp.stdout  # copied from the installed package data

    ccx = subprocess.run([str(layerlift), "build-ccx", "-o", str(tmp_path / "p.ccx")],
                         cwd=tmp_path, env=env_home, capture_output=True, text=True, timeout=60)
    assert ccx.returncode == 0, ccx.stderr
    from layerlift.desktop import ccx as builder

    checkout = builder.build(tmp_path / "checkout.ccx", REPO / "photoshop_plugin")
    assert (tmp_path / "p.ccx").read_bytes() == checkout.read_bytes()
