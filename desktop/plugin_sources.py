"""Where the GIMP plug-in and the Photoshop panel that ship with LayerLift are on this machine.

They travel as package data of `layerlift.gimp_plugin` and `layerlift.photoshop_plugin`
(namespace packages holding no Python of LayerLift's own), so one lookup through the import
system finds them in a checkout, in an installed wheel and in the PyInstaller bundle alike,
never by a path relative to some source file.

The GIMP plug-in also runs two of LayerLift's own modules, which are standard library only
for that reason: the bridge's bytes (`bridge/wire.py`) and the job states
(`inference/job_states.py`). The repository keeps one copy of each, where LayerLift imports
it; the installer copies them into the plug-in under the names the plug-in imports, found as
resources of their packages (the bundle carries them as data files for this).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from importlib.resources.abc import Traversable
from pathlib import Path

GIMP_PLUGIN_NAME = "layerlift"
# Installed name in the plug-in -> (package, file) of the one copy LayerLift itself imports.
GIMP_SHARED_MODULES = {
    "ll_wire.py": ("layerlift.bridge", "wire.py"),
    "ll_job_states.py": ("layerlift.inference", "job_states.py"),
}


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


def gimp_shared_modules() -> dict[str, Traversable]:
    """The modules the GIMP plug-in shares with LayerLift, by the name it imports them as."""
    found = {}
    for name, (package, file) in GIMP_SHARED_MODULES.items():
        source = importlib.resources.files(package) / file
        if not source.is_file():
            raise PluginFilesMissing(f"{package}/{file}, which the GIMP plug-in needs, is "
                                     "missing; reinstall LayerLift")
        found[name] = source
    return found


def photoshop_panel_dir() -> Path:
    """The folder holding the Photoshop panel's manifest, page, scripts and icons."""
    folder = _package_folder("layerlift.photoshop_plugin")
    if not (folder / "manifest.json").is_file():
        raise PluginFilesMissing(f"the Photoshop panel is missing from {folder}; "
                                 "reinstall LayerLift")
    return folder
