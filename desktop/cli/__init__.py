"""The `layerlift` command line.

Each subcommand lives in its own module exposing `add_parser(subparsers)` and `run(args) -> int`.
Modules are imported only when their name is in COMMANDS, and heavy imports (torch, Qt) happen
inside `run`, so `layerlift --help` stays instant.

Exit codes: 0 ok, 1 failure, 2 bad arguments or unreadable input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from layerlift.desktop.cli.argtypes import EXIT_OK
from layerlift.inference import __version__

# Subcommand modules under desktop.cli, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = ("decompose", "serve", "token", "pair", "install_gimp_plugin", "tray",
                              "build_ccx", "doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerlift",
        description="Turn a flat picture into editable RGBA layers, locally.",
    )
    parser.add_argument("--version", action="version", version=f"layerlift {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"layerlift.desktop.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # `layerlift` alone starts the tray app
        argv = ["tray"]
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_OK
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
