"""The plug-in finds the token where the app writes it (same folder rules as platformdirs)."""

from __future__ import annotations

import sys

import pytest
from layerlift.inference import paths

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "gimp_plugin" / "layerlift"))
import ll_paths


def test_layerlift_home_override_matches(layerlift_home):
    assert ll_paths.config_dir() == paths.config_dir()
    assert ll_paths.token_path().parent == paths.config_dir()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux folder rules")
@pytest.mark.parametrize("xdg", [None, "", "/tmp/xdg-config-test"])
def test_linux_rules_match_platformdirs(monkeypatch, tmp_path, xdg):
    monkeypatch.delenv("LAYERLIFT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    import platformdirs

    expected = platformdirs.user_config_dir(paths.APP_NAME, appauthor=False)
    assert str(ll_paths.config_dir()) == expected


def test_windows_and_macos_rules():
    env = {"LOCALAPPDATA": r"C:\Users\ana\AppData\Local"}
    assert str(ll_paths.config_dir("win32", env)).endswith("LayerLift")
    assert "AppData" in str(ll_paths.config_dir("win32", env))
    assert str(ll_paths.config_dir("darwin", {})).endswith("Library/Application Support/LayerLift")


def test_names_match_the_app():
    assert ll_paths.APP_NAME == paths.APP_NAME
    assert ll_paths.TOKEN_FILE == paths.TOKEN_FILE
