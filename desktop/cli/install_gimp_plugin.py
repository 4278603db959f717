"""`layerlift install-gimp-plugin`: put the GIMP 3 plug-in where GIMP finds it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from layerlift.desktop.cli.argtypes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "install-gimp-plugin",
        help="install the GIMP 3 plug-in (Layer > Decompose into Layers…)",
        description="Copy the LayerLift plug-in into your GIMP 3 plug-ins folder.",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be copied")
    parser.add_argument("--gimp-dir", type=Path, default=None,
                        help="GIMP's config folder (default: GIMP 3.0's own per-user folder)")
    return parser


def run(args: argparse.Namespace) -> int:
    from layerlift.desktop.gimp_install import install, plugin_target
    from layerlift.desktop.plugin_sources import gimp_plugin_dir
    from layerlift.inference.errors import BadRequest

    try:
        source = gimp_plugin_dir()
        target = plugin_target(args.gimp_dir)
        files = install(target, source, dry_run=args.dry_run)
    except BadRequest as exc:
        print(f"error: cannot install the GIMP plug-in: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot install the GIMP plug-in: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    verb = "would copy" if args.dry_run else "copied"
    print(f"{verb} {len(files)} files from {source} to {target}")
    if not args.dry_run:
        print("Restart GIMP, then use Layer > Decompose into Layers… with the LayerLift app "
              "(or `layerlift serve`) running.")
    return EXIT_OK
