"""Shared fixtures. Every test gets its own LAYERLIFT_HOME so no test touches the user's files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GIMP3 = REPO.parent / "shared" / "gimp3"


@pytest.fixture(autouse=True)
def layerlift_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("layerlift-home")
    monkeypatch.setenv("LAYERLIFT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def gimp3() -> Path:
    """The real headless GIMP 3 of ../shared/gimp3 (built on first use: minutes, root)."""
    if not GIMP3.is_dir():
        pytest.fail(f"{GIMP3} is missing: the GIMP 3 test harness lives in ../shared/gimp3")
    if os.geteuid() != 0:
        pytest.fail("the GIMP 3 end-to-end tests need root (chroot, unshare); run them as root")
    build = subprocess.run([str(GIMP3 / "build-gimp3-chroot.sh")], capture_output=True,
                           text=True, timeout=1200)
    assert build.returncode == 0, f"building the GIMP 3 chroot failed:\n{build.stderr[-3000:]}"
    return GIMP3
