"""Where the LayerLift app keeps its config (and so the pairing token), standard library only.

The app uses `platformdirs.user_config_dir("LayerLift", appauthor=False)`; GIMP's Python has no
platformdirs, so these rules repeat it for the three platforms. tests/test_gimp_paths.py checks
that both agree, so a platformdirs change that moves the folder fails the tests, not the user.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "LayerLift"
TOKEN_FILE = "token"
SETTINGS_FILE = "settings.json"


def config_dir(platform: str | None = None, environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    home = env.get("LAYERLIFT_HOME")
    if home:
        return Path(home) / "config"
    platform = platform or sys.platform
    if platform.startswith("win"):
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_NAME
    if platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    base = env.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / APP_NAME


def token_path() -> Path:
    return config_dir() / TOKEN_FILE


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE
