"""Start with the system: the platform's own per-user autostart mechanism, nothing global.

Linux uses an XDG autostart `.desktop` file, macOS a LaunchAgent, Windows the per-user `Run`
registry key. The entry itself is the truth (the user may remove it by hand), so there is no
setting to go stale. `LAYERLIFT_HOME` redirects the Linux and macOS files, so tests never
touch the real session.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import shutil
import sys
from pathlib import Path

ENTRY_NAME = "layerlift"
MAC_LABEL = "com.layerlift.tray"
_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def command() -> list[str]:
    """How to start the tray: the installed `layerlift` script, else this interpreter."""
    script = shutil.which("layerlift")
    if script:
        return [script, "tray"]
    return [sys.executable, "-m", "layerlift.desktop.cli", "tray"]


def supported() -> bool:
    return sys.platform.startswith(("linux", "freebsd", "darwin", "win"))


def _entry_path() -> Path:
    home = os.environ.get("LAYERLIFT_HOME")
    if sys.platform == "darwin":
        base = Path(home) / "LaunchAgents" if home else Path.home() / "Library" / "LaunchAgents"
        return base / f"{MAC_LABEL}.plist"
    if home:
        base = Path(home) / "autostart"
    else:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        base = Path(config) / "autostart"
    return base / f"{ENTRY_NAME}.desktop"


def is_enabled() -> bool:
    if sys.platform.startswith("win"):
        return _windows_value() is not None
    return _entry_path().exists()


def set_enabled(enabled: bool) -> None:
    """Create or remove the autostart entry; raises OSError when the platform refuses."""
    if sys.platform.startswith("win"):
        _windows_set(enabled)
        return
    path = _entry_path()
    if not enabled:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "darwin":
        data = plistlib.dumps({"Label": MAC_LABEL, "ProgramArguments": command(),
                               "RunAtLoad": True})
        path.write_bytes(data)
        return
    path.write_text(
        "[Desktop Entry]\nType=Application\nName=LayerLift\n"
        "Comment=Decompose pictures into layers for GIMP and Photoshop\n"
        f"Exec={shlex.join(command())}\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
        encoding="utf-8",
    )


def _windows_value() -> str | None:  # pragma: no cover - Windows only
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, _RUN_KEY) as key:
            return str(winreg.QueryValueEx(key, "LayerLift")[0])
    except OSError:
        return None


def _windows_set(enabled: bool) -> None:  # pragma: no cover - Windows only
    import subprocess
    import winreg

    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, _RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
        if enabled:
            winreg.SetValueEx(key, "LayerLift", 0, winreg.REG_SZ,
                              subprocess.list2cmdline(command()))
        else:
            with contextlib.suppress(FileNotFoundError):
                winreg.DeleteValue(key, "LayerLift")
