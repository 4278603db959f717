"""`layerlift serve`: the bridge server without the tray, for scripts and headless machines.

The tray app hosts the same `BridgeServer` in-process; this command exists so the plug-ins
can be used (and tested) with no GUI at all. It listens on loopback unless told otherwise,
and says loudly when told otherwise: anyone who can reach the port and learns the token can
use the GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from layerlift.bridge.wire import DEFAULT_PORT
from layerlift.desktop.cli.argtypes import EXIT_FAILURE, EXIT_OK, int_in_range
from layerlift.desktop.cli.stop_deadline import StopDeadline

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long a stop may take (closing connections, cancelling the running job, the worker
# threads' last steps) before the process exits anyway: under the 20 s a supervisor or a
# test gives it, and longer than a WebSocket close handshake may take (10 s).
STOP_SECONDS = 15.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="run the local bridge server the GIMP and Photoshop plug-ins talk to",
        description="Serve the LayerLift WebSocket bridge (docs/protocol.md) until Ctrl-C.",
    )
    parser.add_argument("--port", type=int_in_range(0, 65535, "the port"), default=None,
                        help=f"TCP port (default: the settings' port, {DEFAULT_PORT})")
    parser.add_argument("--host", default=None,
                        help="address to listen on (default 127.0.0.1; anything else exposes "
                             "the server to the network)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return parser


def exposure_warning(host: str) -> str | None:
    """The banner printed when the server is reachable from other computers."""
    from layerlift.bridge.server import is_loopback

    if is_loopback(host):
        return None
    return ("=" * 72 + "\n"
            f"WARNING: listening on {host}, not on loopback. Other computers can reach\n"
            "this server; anyone who learns the token can run jobs on this machine.\n"
            + "=" * 72)


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
                    deadline: StopDeadline) -> None:
    """Ctrl-C (SIGINT) and SIGTERM set `stop`; a second one ends the process at once.

    Installed whatever the inherited disposition: a shell runs a script's background command
    with SIGINT ignored, and a server started that way (a test suite run in the background)
    would otherwise never stop on SIGINT. Where the loop cannot take signal handlers
    (Windows), `asyncio.run`'s own Ctrl-C handling cancels the serving task instead.
    """

    def on_signal() -> None:
        if stop.is_set():
            deadline.expire("asked to stop again")
        stop.set()

    for number in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, on_signal)


def run(args: argparse.Namespace) -> int:
    from layerlift.bridge.auth import load_or_create_token, token_path
    from layerlift.bridge.server import BridgeServer, ServerConfig
    from layerlift.inference.jobs import JobRunner
    from layerlift.inference.settings import Settings

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.load()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    warning = exposure_warning(host)
    if warning:
        print(warning, file=sys.stderr)
    token = load_or_create_token()
    runner = JobRunner(settings).start()
    server = BridgeServer(runner, ServerConfig(host=host, port=port), token=token)
    deadline = StopDeadline(STOP_SECONDS)

    async def main() -> None:
        try:
            await server.start()
        except OSError as exc:
            raise SystemExit(
                f"error: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        stop = asyncio.Event()
        stop_on_signals(asyncio.get_running_loop(), stop, deadline)
        print(f"LayerLift bridge on {server.url} (token in {token_path()}); Ctrl-C stops it",
              file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            # Everything from here on, asyncio.run's wait for its worker threads included,
            # is bounded by the deadline.
            deadline.start()
            # The running job is cancelled while the connections close, so its client hears
            # that it was cancelled rather than that the connection dropped.
            await asyncio.gather(asyncio.to_thread(runner.stop), server.stop())

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass  # Ctrl-C where the loop takes no signal handlers: the same stop, already done
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return EXIT_FAILURE
    finally:
        runner.stop()
    print("stopped", file=sys.stderr)
    return EXIT_OK
