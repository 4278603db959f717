"""Where the GIMP plug-in and the Photoshop panel that ship with LayerLift are on this machine.

They travel as package data of `layerlift.gimp_plugin` and `layerlift.photoshop_plugin`
(namespace packages holding no Python of LayerLift's own), so one lookup through the import
system finds them in a checkout, in an installed wheel and in the PyInstaller bundle alike,
never by a path relative to some source file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

GIMP_PLUGIN_NAME = "layerlift"


class PluginFilesMissing(FileNotFoundError):
    """This installation does not carry the plug-in files (a broken or partial install)."""


def _package_folder(package: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if Path(location).is_dir():
            return Path(location)
    raise PluginFilesMissing(f"{package} is not part of this LayerLift installation; "
                             "reinstall LayerLift")


def gimp_plugin_dir() -> Path:
    """The folder holding the GIMP 3 plug-in's modules (`layerlift.py` and its helpers)."""
    folder = _package_folder("layerlift.gimp_plugin") / GIMP_PLUGIN_NAME
    if not (folder / f"{GIMP_PLUGIN_NAME}.py").is_file():
        raise PluginFilesMissing(f"the GIMP plug-in is missing from {folder}; reinstall LayerLift")
    return folder


def photoshop_panel_dir() -> Path:
    """The folder holding the Photoshop panel's manifest, page, scripts and icons."""
    folder = _package_folder("layerlift.photoshop_plugin")
    if not (folder / "manifest.json").is_file():
        raise PluginFilesMissing(f"the Photoshop panel is missing from {folder}; "
                                 "reinstall LayerLift")
    return folder
