"""Build the Photoshop plug-in package (`.ccx`): a zip of photoshop_plugin/ that Creative
Cloud installs on double-click.

The zip is deterministic (sorted entries, fixed timestamps and permissions), so the same
sources always give the same bytes and CI can compare builds. Only what the panel needs at
run time goes in: the manifest, the page, the scripts and the icons; tests, tools and
package.json stay out.

Run it from a source checkout: `python packaging/build_ccx.py [-o PATH]`, or
`layerlift build-ccx`. Note the folder name: this file is loaded by path, never imported as
`packaging.build_ccx`, because `packaging` is also the name of a PyPI library.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "photoshop_plugin"
TOP_FILES = ("manifest.json", "index.html", "index.js", "styles.css")
TREES = {"src": ".js", "icons": ".png"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


class BuildError(Exception):
    """The plug-in folder cannot be packaged (a file is missing or the manifest is wrong)."""


def package_files(plugin: Path = PLUGIN) -> list[tuple[str, Path]]:
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


def build(output: Path, plugin: Path = PLUGIN) -> Path:
    """Write the .ccx to `output` (parent folders made) and return its path."""
    files = package_files(plugin)
    manifest = json.loads((plugin / "manifest.json").read_text(encoding="utf-8"))
    problems = manifest_problems(manifest, {name for name, _ in files})
    if problems:
        raise BuildError("invalid manifest: " + "; ".join(problems))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, so the permissions above mean the same everywhere
            archive.writestr(info, path.read_bytes())
    tmp.replace(output)
    return output


def default_output(plugin: Path = PLUGIN) -> Path:
    manifest = json.loads((plugin / "manifest.json").read_text(encoding="utf-8"))
    return REPO / "dist" / f"layerlift-photoshop-{manifest['version']}.ccx"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the LayerLift Photoshop .ccx package.")
    parser.add_argument("-o", "--output", type=Path, default=None, help="where to write the .ccx")
    args = parser.parse_args(argv)
    try:
        path = build(args.output or default_output())
    except (BuildError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
