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
import tempfile
import uuid
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


def _check_replaceable(target: Path) -> None:
    """`BadRequest` unless the existing `target` folder is a LayerLift plug-in to replace.

    LayerLift's own: it carries the marker of an earlier install and every marked file is
    as installed (a user's edit is never thrown away), with nothing else in it but Python's
    `__pycache__`; or, from before the marker, it holds only Python modules, one of them
    LayerLift's `layerlift.py`.
    """
    from layerlift.inference.errors import BadRequest
    from layerlift.inference.formats.ownership import MARKER, SHELL_FILES, file_sha256, read_marker

    if not target.is_dir():
        raise BadRequest(f"'{target}' exists and is not a folder; move it away first")
    entries = sorted(name for name in os.listdir(target)
                     if name not in SHELL_FILES and name not in (MARKER, "__pycache__"))
    marker = read_marker(target)
    if marker is not None:
        foreign = [name for name in entries if name not in marker]
        changed = [name for name in entries if name in marker
                   and file_sha256(target / name) not in marker[name]]
    else:
        main = target / f"{PLUGIN_NAME}.py"
        try:
            ours = main.is_file() and b"LayerLift" in main.read_bytes()
        except OSError:
            ours = False
        foreign = entries if not ours else [name for name in entries
                                            if not name.endswith(".py")]
        changed = []
    if foreign or changed:
        named = ", ".join(f"'{name}'" for name in (foreign + changed)[:3])
        why = "files LayerLift did not install" if foreign else "files changed since install"
        raise BadRequest(
            f"'{target}' holds {why} ({named}); LayerLift replaces only its own plug-in "
            "folder: move those files away, or pass --gimp-dir"
        )


def install(target: Path, source: Path | None = None, dry_run: bool = False) -> list[Path]:
    """Copy the plug-in's modules and the shared ones to `target` (replacing an older copy);
    return the files.

    An existing `target` is replaced only when it is LayerLift's own plug-in folder (see
    `_check_replaceable`); the new copy is built in a hidden folder beside it and swapped
    in, so GIMP never sees half a plug-in. Raises `BadRequest` when the folder is not ours
    or cannot be written.
    """
    from layerlift.inference.atomic import swap_in_folder
    from layerlift.inference.formats.ownership import file_sha256, write_marker
    from layerlift.inference.formats.safety import check_write_target

    source = source or gimp_plugin_dir()
    files = plugin_files(source)
    shared = gimp_shared_modules()
    clash = sorted(set(shared) & {path.name for path in files})
    if clash:
        raise FileExistsError(f"{source} has its own {', '.join(clash)}; those come from "
                              "LayerLift's shared modules")
    written = sorted([target / path.name for path in files] + [target / name for name in shared])
    check_write_target(target, folder=True)
    if os.path.lexists(target):
        _check_replaceable(target)
    if dry_run:
        return written
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}-installing-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's folder is private; a plug-in folder is not
        for path in files:
            shutil.copy2(path, staging / path.name)
        for name, module in shared.items():
            (staging / name).write_bytes(module.read_bytes())
        main = staging / f"{PLUGIN_NAME}.py"
        main.chmod(main.stat().st_mode | 0o755)
        write_marker(staging, {path.name: [file_sha256(path) or ""]
                               for path in staging.iterdir() if path.suffix == ".py"})
        aside = target.with_name(f".{PLUGIN_NAME}-replaced-{uuid.uuid4().hex[:8]}")
        swap_in_folder(staging, target, aside)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written
