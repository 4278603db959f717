"""Whether Qt can open a window here, asked without Qt: Qt aborts the process when it cannot.

On Linux, a `QApplication` with no reachable display server calls `qFatal` ("could not
connect to display") and the process dies with SIGABRT: no exception to catch, no exit code
to choose. So before the tray starts, this module asks the same questions Qt's platform
plug-ins will: is a headless platform chosen, is there a Wayland socket, can libxcb connect
to `$DISPLAY` (with the same `XAUTHORITY` rules), and is libxcb-cursor, which Qt's xcb
plug-in needs since Qt 6.5, installed. No Qt import: the answer costs milliseconds.
Windows and macOS always have a display for a logged-in user.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

# Qt platform plug-ins that need no display server.
HEADLESS_PLATFORMS = frozenset(
    {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"}
)


def _load(name: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to the null device for the block (C libraries write there)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _x11_problem(display: str) -> str | None:
    xcb = _load("libxcb.so.1")
    if xcb is None:
        return "the X11 client library libxcb is not installed"
    if _load("libxcb-cursor.so.0") is None:
        return ("Qt's X11 plug-in needs libxcb-cursor, which is not installed "
                "(apt-get install libxcb-cursor0)")
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    xcb.xcb_connection_has_error.restype = ctypes.c_int
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.restype = None
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    with _quiet_stderr():  # libxcb prints "Authorization required, ..." on fd 2 itself
        connection = xcb.xcb_connect(display.encode(), None)
    if not connection:
        return f"cannot connect to the X display '{display}'"
    try:
        if xcb.xcb_connection_has_error(connection):
            return f"cannot connect to the X display '{display}'"
    finally:
        xcb.xcb_disconnect(connection)
    return None


def _wayland_socket(env: Mapping[str, str]) -> Path | None:
    name = env.get("WAYLAND_DISPLAY", "").strip()
    if not name:
        return None
    path = Path(name)
    if not path.is_absolute():
        runtime = env.get("XDG_RUNTIME_DIR", "").strip()
        if not runtime:
            return None
        path = Path(runtime) / name
    return path if path.exists() else None


def display_problem(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """Why Qt could not open a window here, in a sentence; None when it can."""
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform.startswith(("win", "darwin", "cygwin")):
        return None
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip().lower()
    if chosen in HEADLESS_PLATFORMS:
        return None
    if chosen in ("", "wayland", "wayland-egl") and _wayland_socket(env) is not None:
        return None
    if chosen.startswith("wayland"):
        return "QT_QPA_PLATFORM asks for Wayland but no Wayland display is running"
    display = env.get("DISPLAY", "").strip()
    if not display:
        return "no display: neither DISPLAY nor WAYLAND_DISPLAY is set"
    return _x11_problem(display)
