"""Find the GIMP 3 plug-in that ships with LayerLift and copy it where GIMP looks for it.

GIMP 3 loads a Python plug-in from `<GIMP config>/3.0/plug-ins/<name>/<name>.py`, and only if
that file is executable. The source is the plug-in this installation carries
(`plugin_sources.gimp_plugin_dir`: the checkout's gimp_plugin/layerlift/, or the same files
as package data of a wheel or the desktop bundle), plus the modules it shares with LayerLift
(`plugin_sources.gimp_shared_modules`: `ll_wire.py`, `ll_job_states.py`), byte for byte.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from layerlift.desktop.plugin_sources import GIMP_PLUGIN_NAME as PLUGIN_NAME
from layerlift.desktop.plugin_sources import gimp_plugin_dir, gimp_shared_modules

GIMP_SERIES = "3.0"


def gimp_config_dir(platform: str | None = None, environ: dict[str, str] | None = None) -> Path:
    """GIMP's own per-user folder (`gimp_directory()`), by GIMP's rules for each platform."""
    env = os.environ if environ is None else environ
    override = env.get("GIMP3_DIRECTORY")
    if override:
        return Path(override)
    platform = platform or sys.platform
    if platform.startswith("win"):
        base = env.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "GIMP" / GIMP_SERIES
    if platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP" / GIMP_SERIES
    base = env.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "GIMP" / GIMP_SERIES


def plugin_target(config_dir: Path | None = None) -> Path:
    return (config_dir or gimp_config_dir()) / "plug-ins" / PLUGIN_NAME


def plugin_files(source: Path) -> list[Path]:
    return sorted(path for path in source.glob("*.py") if path.is_file())


def install(target: Path, source: Path | None = None, dry_run: bool = False) -> list[Path]:
    """Copy the plug-in's modules and the shared ones to `target` (replacing an older copy);
    return the files."""
    source = source or gimp_plugin_dir()
    files = plugin_files(source)
    shared = gimp_shared_modules()
    clash = sorted(set(shared) & {path.name for path in files})
    if clash:
        raise FileExistsError(f"{source} has its own {', '.join(clash)}; those come from "
                              "LayerLift's shared modules")
    written = sorted([target / path.name for path in files] + [target / name for name in shared])
    if dry_run:
        return written
    staging = target.with_name(target.name + ".installing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, staging / path.name)
    for name, module in shared.items():
        (staging / name).write_bytes(module.read_bytes())
    main = staging / f"{PLUGIN_NAME}.py"
    main.chmod(main.stat().st_mode | 0o755)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return written
