"""`layerlift build-ccx`: package the Photoshop panel as a .ccx (layerlift.desktop.ccx).

The panel's sources travel with every installation (checkout, wheel, desktop bundle), so the
package is always built from them and is byte-for-byte the same wherever it is built. Without
`-o` it goes into the current folder under its versioned name, never over a file that is
already there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from layerlift.desktop.cli.argtypes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `stem-2.ccx`, `stem-3.ccx`, … when that file exists already."""
    candidate = folder / name
    stem, suffix = candidate.stem, candidate.suffix
    number = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{stem}-{number}{suffix}"
        number += 1
    return candidate


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-ccx", help="package the Photoshop panel as a .ccx",
        description="Build the LayerLift Photoshop plug-in package; double-click it to install.",
    )
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where to write it (default: layerlift-photoshop-VERSION.ccx in the "
                             "current folder, with -2, -3, … added if that name is taken)")
    return parser


def run(args: argparse.Namespace) -> int:
    from layerlift.desktop import ccx
    from layerlift.inference.errors import BadRequest
    from layerlift.inference.formats.safety import check_write_target

    try:
        output = args.output or free_name(Path.cwd(), ccx.package_name())
        if output.is_dir():
            print(f"error: {output} is a folder; give the .ccx file's path", file=sys.stderr)
            return EXIT_USAGE
        if output.suffix.lower() != ".ccx" or output.name.lower() == ".ccx":
            print(f"error: '{output}' is not a .ccx file name; give e.g. -o layerlift.ccx",
                  file=sys.stderr)
            return EXIT_USAGE
        # Before building: a parent that is a file, a device, an unwritable folder.
        check_write_target(output, folder=False)
        path = ccx.build(output)
    except BadRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except (ccx.BuildError, OSError, ValueError) as exc:
        print(f"error: cannot build the Photoshop package: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(path)
    return EXIT_OK
