"""A bound on how long a long-running command may take to stop once asked to.

Stopping `layerlift serve` waits on things it does not control: a client that does not
answer the WebSocket close, a decode or a result read still running in a worker thread (the
asyncio loop's executor joins its threads at the end, with no time limit before Python
3.12), the job thread finishing a step before it sees its cancel. Each is usually quick; a
stop that hangs anyway must neither keep the port nor leave the user wondering, so past the
deadline the process prints where each thread stands (for the bug report) and exits.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
from typing import TextIO

from layerlift.desktop.cli.argtypes import EXIT_FAILURE


class StopDeadline:
    """Started when a stop begins; if the process still runs `seconds` later, it ends it."""

    def __init__(self, seconds: float, stream: TextIO | None = None) -> None:
        self.seconds = seconds
        self.stream = stream
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        if self._timer is None:
            # A daemon thread: a stop that finishes in time exits without waiting for it.
            self._timer = threading.Timer(self.seconds, self.expire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def expire(self, why: str = "") -> None:
        """Say what each thread was doing and exit now (`why`: the reason, if not the time)."""
        stream = self.stream or sys.stderr
        why = why or f"stopping took longer than {self.seconds:g} s"
        with contextlib.suppress(Exception):  # no usable stderr: still exit
            print(f"error: {why}; exiting anyway. What each thread was doing:", file=stream,
                  flush=True)
            faulthandler.dump_traceback(file=stream, all_threads=True)
            stream.flush()
        os._exit(EXIT_FAILURE)
