"""The `layerlift` command line.

Each subcommand lives in its own module exposing `add_parser(subparsers)` and `run(args) -> int`.
Modules are imported only when their name is in COMMANDS, and heavy imports (torch, Qt) happen
inside `run`, so `layerlift --help` stays instant.

Exit codes: 0 ok, 1 failure, 2 bad arguments, unreadable input or a refused output,
130 interrupted. `layerlift` alone starts the tray app when a display is usable, and
otherwise prints a short usage text and exits 2: Qt would abort the process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
from collections.abc import Sequence

from layerlift.desktop.cli.argtypes import EXIT_OK, EXIT_USAGE
from layerlift.inference import __version__

# Subcommand modules under desktop.cli, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = ("decompose", "serve", "token", "pair", "install_gimp_plugin", "tray",
                              "build_ccx", "doctor")


EXIT_CODES = """\
exit codes:
  0    done
  1    failure: the backend, the model or the disk failed
  2    bad arguments, an unreadable input or a refused output (nothing was written);
       also `layerlift` alone where no display is usable
  130  interrupted (Ctrl-C) or cancelled"""

SHORT_USAGE = """\
usage: layerlift COMMAND [options]

LayerLift turns a flat picture into editable RGBA layers, locally.
`layerlift` alone starts the tray app, which needs a desktop session; {why}.

Commands that work without one:
  layerlift decompose PICTURE [-o OUT.psd]   decompose a picture into layers
  layerlift serve                            run the bridge for the GIMP and Photoshop plug-ins
  layerlift doctor                           check this machine: GPU, memory, model files
  layerlift --help                           every command, and the exit codes
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerlift",
        description="Turn a flat picture into editable RGBA layers, locally.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"layerlift {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"layerlift.desktop.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def _why_no_tray() -> str | None:
    """Why the tray app cannot start here, or None (checked without importing Qt)."""
    import importlib.util

    from layerlift.desktop.display import display_problem

    if importlib.util.find_spec("PySide6") is None:
        return "this installation has no PySide6 (pip install 'layerlift[desktop]')"
    problem = display_problem()
    return f"here, {problem}" if problem else None


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parse_args`, except that with --json a usage error is also a JSON object on stdout."""
    if "--json" not in argv:
        return parser.parse_args(argv)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(argv)
    except SystemExit as exc:
        text = captured.getvalue()
        sys.stderr.write(text)
        if exc.code not in (0, None):
            lines = [line for line in text.strip().splitlines() if line.strip()]
            message = lines[-1] if lines else "bad arguments"
            message = message.split(": error: ", 1)[-1]
            print(json.dumps({"error": {"code": "bad_request", "message": message},
                              "exit_code": exc.code}, indent=2))
        raise


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        # `layerlift` alone starts the tray app, where it can: Qt aborts without a display.
        why = _why_no_tray()
        if why is not None:
            sys.stderr.write(SHORT_USAGE.format(why=why))
            return EXIT_USAGE
        argv = ["tray"]
    parser = build_parser()
    args = _parse(parser, argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_OK
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
