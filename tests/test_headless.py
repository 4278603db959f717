"""The command line runs without a display and without Qt: only `layerlift tray` (and the
window it opens) may load PySide6, everything else under `layerlift.desktop` stays headless.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import layerlift.desktop as desktop

from tests.conftest import EXAMPLES, REPO


def _headless_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(desktop.__path__, "layerlift.desktop."):
        if info.name.startswith("layerlift.desktop.gui") or info.name.endswith("__main__"):
            continue  # the Qt subpackage; `python -m` entry points run when imported
        names.append(info.name)
    return sorted(names)


def test_the_gui_is_one_subpackage_and_nothing_else_imports_qt(tmp_path):
    modules = _headless_modules()
    assert "layerlift.desktop.cli.decompose" in modules and "layerlift.desktop.cli.serve" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from layerlift.desktop.cli import main\n"
        f"main(['decompose', {str(EXAMPLES / 'logo.png')!r}, '-o', "
        f"{str(tmp_path / 'logo.psd')!r}, '--backend', 'classic', '--quiet'])\n"
        "for command in ('serve', 'token', 'pair', 'doctor', 'install-gimp-plugin',"
        " 'build-ccx', 'tray'):\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "LAYERLIFT_HOME": str(tmp_path / "home")}  # no DISPLAY
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "logo.psd").is_file()
