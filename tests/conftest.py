"""Shared fixtures. Every test gets its own LAYERLIFT_HOME so no test touches the user's files."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GIMP3_HARNESS = REPO / "tests" / "gimp" / "harness"

# The marker checks (gpu, corpus): tests/markers.py. `plugin`: the GIMP plug-in installed by
# LayerLift's installer, its modules imported (tests/installed_plugin.py).
pytest_plugins = ("tests.markers", "tests.installed_plugin")


@pytest.fixture(autouse=True)
def layerlift_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("layerlift-home")
    monkeypatch.setenv("LAYERLIFT_HOME", str(home))
    return home


@dataclass(frozen=True)
class Gimp3:
    """The project's headless GIMP 3 (tests/gimp/harness/): `run` is its run.sh."""

    run: Path
    root: Path


@pytest.fixture(scope="session")
def gimp3() -> Gimp3:
    """A real GIMP 3 in a Debian chroot, built on first use (about 4 minutes, root), then cached."""
    if os.geteuid() != 0:
        pytest.fail("the GIMP 3 tests need root: tests/gimp/harness/ builds and enters a chroot "
                    "(debootstrap, chroot, mount); run them as root, or leave them out with "
                    "-m 'not gimp' (make test-fast)", pytrace=False)
    build = subprocess.run([str(GIMP3_HARNESS / "build.sh")], capture_output=True, text=True,
                           timeout=1500)
    if build.returncode != 0:
        pytest.fail("building the GIMP 3 chroot (tests/gimp/harness/build.sh) failed:\n"
                    + build.stderr[-3000:], pytrace=False)
    return Gimp3(run=GIMP3_HARNESS / "run.sh", root=Path(build.stdout.strip().splitlines()[-1]))
