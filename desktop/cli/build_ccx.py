"""`layerlift build-ccx`: package the Photoshop panel as a .ccx (see packaging/build_ccx.py).

Works from a source checkout, where photoshop_plugin/ and packaging/ exist, and from the
desktop bundle, which carries the .ccx built with it and copies that one out (the panel's
sources are not in the bundle). An installed wheel carries neither, and says so instead of
failing obscurely.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BUILDER = Path(__file__).resolve().parents[2] / "packaging" / "build_ccx.py"


def load_builder(path: Path = BUILDER) -> ModuleType:
    """packaging/build_ccx.py by path: `packaging` is also a PyPI library's name."""
    spec = importlib.util.spec_from_file_location("layerlift_build_ccx", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"{path} not found: build-ccx needs a LayerLift source checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bundled_ccx() -> Path | None:
    """The .ccx a PyInstaller bundle was built with, if this is one."""
    bundle = getattr(sys, "_MEIPASS", None)
    if not bundle:
        return None
    found = sorted((Path(bundle) / "photoshop_plugin").glob("*.ccx"))
    return found[-1] if found else None


def copy_bundled(source: Path, output: Path | None) -> Path:
    """Copy the prebuilt package to `output` (default: its own name in the current folder)."""
    target = output or Path.cwd() / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-ccx", help="package the Photoshop panel as a .ccx",
        description="Build the LayerLift Photoshop plug-in package; double-click it to install.",
    )
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where to write it (default dist/layerlift-photoshop-VERSION.ccx in a "
                             "checkout, the current folder in the desktop bundle)")
    return parser


def run(args: argparse.Namespace) -> int:
    prebuilt = bundled_ccx()
    if prebuilt is not None:
        try:
            print(copy_bundled(prebuilt, args.output))
        except OSError as exc:
            print(f"error: cannot write the .ccx: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        builder = load_builder()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        path = builder.build(args.output or builder.default_output())
    except (builder.BuildError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
