"""`layerlift build-ccx`: package the Photoshop panel as a .ccx (see packaging/build_ccx.py).

Works from a source checkout, where photoshop_plugin/ and packaging/ exist; an installed
wheel carries neither, and says so instead of failing obscurely.
"""

from __future__ import annotations

import argparse
import importlib.util
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


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-ccx", help="package the Photoshop panel as a .ccx (source checkout only)",
        description="Build the LayerLift Photoshop plug-in package; double-click it to install.",
    )
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where to write it (default dist/layerlift-photoshop-VERSION.ccx)")
    return parser


def run(args: argparse.Namespace) -> int:
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
