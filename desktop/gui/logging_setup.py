"""One log file per install, in the app's log folder, so a dialog can stay short.

Dialogs and tray notifications say what went wrong in a sentence; the traceback and the
events leading up to it go here, where a bug report can point.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from pathlib import Path
from types import TracebackType

from layerlift.inference import paths

LOG_FILE = "layerlift.log"
_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"
_MARK = "_layerlift_file_handler"


def log_path() -> Path:
    return paths.log_dir() / LOG_FILE


def setup_logging(level: int = logging.INFO) -> Path:
    """Send the root logger to the rotating log file (idempotent); returns the file's path.

    Re-running it (tests build several apps in one process, LAYERLIFT_HOME may change
    between them) replaces our handler instead of stacking another one.
    """
    path = log_path()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            if Path(getattr(handler, "baseFilename", "")) == path:
                root.setLevel(min(root.level or level, level))
                return path
            root.removeHandler(handler)
            handler.close()
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=2 * 1024 * 1024, backupCount=3, encoding="utf-8", delay=True
    )
    handler.setFormatter(logging.Formatter(_FORMAT))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    return path


def install_excepthooks() -> None:
    """Log exceptions nobody caught (a Qt slot, a helper thread) instead of only printing them.

    PySide6 prints an exception raised in a slot and carries on; without this the log file
    that the error dialogs point to would not have it.
    """
    logger = logging.getLogger("layerlift.uncaught")
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException,
             traceback: TracebackType | None) -> None:
        logger.error("uncaught exception", exc_info=(kind, value, traceback))
        previous(kind, value, traceback)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread else "?"
        logger.error("uncaught exception in thread %s", name,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = hook
    threading.excepthook = thread_hook
