"""Build the Photoshop plug-in package (`.ccx`): a zip of the panel that Creative Cloud
installs on double-click.

The zip is deterministic (sorted entries, fixed timestamps and permissions), so the same
sources always give the same bytes and a build can be compared with another. Only what the
panel needs at run time goes in: the manifest, the page, the scripts and the icons; tests,
tools and package.json stay out. The panel's files come from the installation itself
(`plugin_sources`), so a checkout, a wheel and the desktop bundle build the same package.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from layerlift.desktop.plugin_sources import photoshop_panel_dir
from layerlift.inference.atomic import public_mode, set_mode, staged_file

TOP_FILES = ("manifest.json", "index.html", "index.js", "styles.css")
TREES = {"src": ".js", "icons": ".png"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


class BuildError(Exception):
    """The plug-in folder cannot be packaged (a file is missing or the manifest is wrong)."""


def package_files(plugin: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file on disk) for everything the package holds, sorted by name."""
    files: list[tuple[str, Path]] = []
    for name in TOP_FILES:
        path = plugin / name
        if not path.is_file():
            raise BuildError(f"missing {path}")
        files.append((name, path))
    for folder, suffix in TREES.items():
        for path in sorted((plugin / folder).rglob(f"*{suffix}")):
            files.append((path.relative_to(plugin).as_posix(), path))
    return sorted(files)


def icon_files(path: str, scales: Iterable[int]) -> list[str]:
    """The files UXP looks for: `icons/x.png` with scale [1, 2] means x@1x.png and x@2x.png."""
    stem, dot, ext = path.rpartition(".")
    return [f"{stem}@{scale}x{dot}{ext}" for scale in scales]


def manifest_problems(manifest: dict, names: set[str]) -> list[str]:
    """What makes `manifest` unusable (empty when none); `names` are the package's files."""
    problems = []
    if manifest.get("manifestVersion") != 5:
        problems.append("manifestVersion must be 5")
    for key in ("id", "name", "main"):
        if not isinstance(manifest.get(key), str) or not manifest.get(key):
            problems.append(f"{key} is required")
    if not VERSION_RE.fullmatch(str(manifest.get("version", ""))):
        problems.append("version must look like 1.2.3")
    if manifest.get("main") not in names:
        problems.append(f"main {manifest.get('main')!r} is not in the package")
    for icon in [*manifest.get("icons", []),
                 *(i for e in manifest.get("entrypoints", []) for i in e.get("icons", []))]:
        for name in icon_files(icon["path"], icon.get("scale", [1])):
            if name not in names:
                problems.append(f"icon {name} is not in the package")
    return problems


def build(output: Path, plugin: Path | None = None) -> Path:
    """Write the .ccx to `output` (parent folders made, atomically) and return its path.
    `plugin` defaults to the panel this installation carries."""
    plugin = plugin or photoshop_panel_dir()
    files = package_files(plugin)
    manifest = json.loads((plugin / "manifest.json").read_text(encoding="utf-8"))
    problems = manifest_problems(manifest, {name for name, _ in files})
    if problems:
        raise BuildError("invalid manifest: " + "; ".join(problems))
    mode = public_mode(output)
    with staged_file(output) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for name, path in files:
                info = zipfile.ZipInfo(name, FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                info.create_system = 3  # unix, so the permissions above mean the same everywhere
                archive.writestr(info, path.read_bytes())
        set_mode(tmp, mode)  # a package to share, not mkstemp's private 0600
    return output


def package_name(plugin: Path | None = None) -> str:
    """`layerlift-photoshop-VERSION.ccx`, the version read from the panel's manifest."""
    plugin = plugin or photoshop_panel_dir()
    manifest = json.loads((plugin / "manifest.json").read_text(encoding="utf-8"))
    return f"layerlift-photoshop-{manifest['version']}.ccx"
