"""Shared fixtures. Every test gets its own LAYERLIFT_HOME so no test touches the user's files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def layerlift_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("layerlift-home")
    monkeypatch.setenv("LAYERLIFT_HOME", str(home))
    return home
