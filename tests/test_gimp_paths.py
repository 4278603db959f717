"""The installed plug-in finds the token where the app writes it (platformdirs' folder rules)."""

from __future__ import annotations

import sys

import pytest
from layerlift.inference import paths


def test_layerlift_home_override_matches(plugin, layerlift_home):
    assert plugin.ll_paths.config_dir() == paths.config_dir()
    assert plugin.ll_paths.token_path().parent == paths.config_dir()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux folder rules")
@pytest.mark.parametrize("xdg", [None, "", "/tmp/xdg-config-test"])
def test_linux_rules_match_platformdirs(plugin, monkeypatch, tmp_path, xdg):
    monkeypatch.delenv("LAYERLIFT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    import platformdirs

    expected = platformdirs.user_config_dir(paths.APP_NAME, appauthor=False)
    assert str(plugin.ll_paths.config_dir()) == expected


def test_windows_and_macos_rules(plugin):
    env = {"LOCALAPPDATA": r"C:\Users\ana\AppData\Local"}
    assert str(plugin.ll_paths.config_dir("win32", env)).endswith("LayerLift")
    assert "AppData" in str(plugin.ll_paths.config_dir("win32", env))
    darwin = plugin.ll_paths.config_dir("darwin", {})
    assert str(darwin).endswith("Library/Application Support/LayerLift")


def test_names_match_the_app(plugin):
    assert plugin.ll_paths.APP_NAME == paths.APP_NAME
    assert plugin.ll_paths.TOKEN_FILE == paths.TOKEN_FILE
