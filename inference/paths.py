"""Where LayerLift keeps its files, per platform (platformdirs).

The GIMP plug-in re-derives the same config path with the standard library only, so keep
these names in step with gimp_plugin/layerlift/ (APP_NAME, the token file name).
`LAYERLIFT_HOME` overrides everything: tests and portable installs put all state under it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "LayerLift"
TOKEN_FILE = "token"
SETTINGS_FILE = "settings.json"


def _home_override() -> Path | None:
    value = os.environ.get("LAYERLIFT_HOME")
    return Path(value) if value else None


def config_dir() -> Path:
    home = _home_override()
    if home:
        path = home / "config"
    else:
        path = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    home = _home_override()
    path = home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def jobs_dir() -> Path:
    path = data_dir() / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    home = _home_override()
    path = home / "logs" if home else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
