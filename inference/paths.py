"""Where LayerLift keeps its files, per platform (platformdirs).

The GIMP plug-in re-derives the same config path with the standard library only, so keep
these names in step with gimp_plugin/layerlift/ (APP_NAME, the token file name).
`LAYERLIFT_HOME` overrides everything: tests and portable installs put all state under it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

APP_NAME = "LayerLift"
TOKEN_FILE = "token"
SETTINGS_FILE = "settings.json"


def _home_override() -> Path | None:
    value = os.environ.get("LAYERLIFT_HOME")
    return Path(value) if value else None


def _app_dir(sub: str, platform_dir: Callable[..., str]) -> Path:
    """`$LAYERLIFT_HOME/<sub>` when set, else the platform's folder; created on first use."""
    home = _home_override()
    path = home / sub if home else Path(platform_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    return _app_dir("config", platformdirs.user_config_dir)


def data_dir() -> Path:
    return _app_dir("data", platformdirs.user_data_dir)


def jobs_dir() -> Path:
    path = data_dir() / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    return _app_dir("logs", platformdirs.user_log_dir)
