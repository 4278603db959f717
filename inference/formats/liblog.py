"""Library log lines become LayerLift's own warnings instead of stray lines on stderr.

psd-tools reports trouble it works around (an ICC profile it cannot apply, a channel it
could not decompress) through `logging`; with no handler configured, Python prints such a
record bare on stderr ("Failed to apply ICC profile: cannot build transform"), with no
sign of which program said it or about which file. While a file is being read, the records
of the reading thread are collected here and handed back as warnings, which the command
line prints as "warning: ..." and the window shows in its status line. Other threads'
records pass through untouched (they reach the app's log file as before).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings as pywarnings
from collections.abc import Iterator

LIBRARIES = {"psd_tools": "psd-tools"}


class _Collector(logging.Handler):
    def __init__(self, thread: int) -> None:
        super().__init__(logging.WARNING)
        self.thread = thread
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            text = record.getMessage().strip()
        except Exception:  # a library's bad format string must not break a read
            text = str(record.msg)
        library = LIBRARIES.get(record.name.split(".")[0], record.name)
        line = f"{library}: {text.splitlines()[0] if text else record.levelname.lower()}"
        if line not in self.messages:
            self.messages.append(line)


_quiet_warnings_done = False


def _quiet_duplicate_warnings() -> None:
    """psd-tools also `warnings.warn`s what it logs on a failed channel; keep only the log."""
    global _quiet_warnings_done
    if _quiet_warnings_done:
        return
    with contextlib.suppress(Exception):
        from psd_tools.compression import PSDDecompressionWarning

        pywarnings.filterwarnings("ignore", category=PSDDecompressionWarning)
    _quiet_warnings_done = True


@contextlib.contextmanager
def library_warnings(collected: list[str]) -> Iterator[None]:
    """Append the libraries' warnings logged by this thread inside the block to `collected`."""
    _quiet_duplicate_warnings()
    handler = _Collector(threading.get_ident())
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        for message in handler.messages:
            if message not in collected:
                collected.append(message)
