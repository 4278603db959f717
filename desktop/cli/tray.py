"""`layerlift tray` (and `layerlift` with no arguments): the tray app with its window.

Qt is imported inside `run`, so `layerlift --help` and the other subcommands never pay for
it, and a machine without the `desktop` extra gets a sentence instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

from layerlift.desktop.cli.argtypes import EXIT_FAILURE, EXIT_USAGE, int_in_range
from layerlift.inference.backends.base import MAX_LAYERS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tray",
        help="start the tray app (the default when no command is given)",
        description="Start LayerLift in the system tray: it hosts the bridge for the GIMP and "
                    "Photoshop plug-ins and the LayerLift window. A second start brings the "
                    "running one's window forward.",
    )
    parser.add_argument("--open", metavar="PICTURE", default=None,
                        help="open this picture in the window")
    parser.add_argument("--show", action="store_true", help="show the window at start")
    parser.add_argument("--decompose", action="store_true",
                        help="with --open: decompose the picture right away")
    parser.add_argument("--backend", default="auto",
                        help="the backend --decompose uses (auto, classic, qwen)")
    parser.add_argument("--layers", type=int_in_range(1, MAX_LAYERS, "the layer count"),
                        default=None, help="the layer count --decompose asks for")
    return parser


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("PySide6") is None:
        print("error: the tray app needs PySide6: pip install 'layerlift[desktop]' "
              "(`layerlift --help` lists the commands that work without it)", file=sys.stderr)
        return EXIT_FAILURE
    from layerlift.desktop.display import display_problem

    problem = display_problem()
    if problem is not None:
        # Qt would abort the process (SIGABRT) here; say why and exit like bad usage.
        print(f"error: the tray app needs a desktop session: {problem}. Without one, use "
              "`layerlift decompose` or `layerlift serve` (`layerlift --help` lists them)",
              file=sys.stderr)
        return EXIT_USAGE
    from layerlift.desktop.gui.app import AppOptions
    from layerlift.desktop.gui.app import run as run_app

    options = AppOptions(
        open=getattr(args, "open", None),
        show_window=bool(getattr(args, "show", False)),
        decompose=bool(getattr(args, "decompose", False)),
        backend=getattr(args, "backend", "auto"),
        layers=getattr(args, "layers", None),
    )
    return run_app(options)
