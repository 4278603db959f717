"""`layerlift install-gimp-plugin` puts an executable plug-in where GIMP 3 looks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from layerlift.desktop.cli import main
from layerlift.desktop.gimp_install import gimp_config_dir
from layerlift.desktop.plugin_sources import gimp_plugin_dir


def test_install_copies_an_executable_plugin(tmp_path, capsys):
    gimp_dir = tmp_path / "GIMP" / "3.0"
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir)]) == 0
    target = gimp_dir / "plug-ins" / "layerlift"
    main_file = target / "layerlift.py"
    assert main_file.is_file() and os.access(main_file, os.X_OK)
    shipped = sorted(p.name for p in gimp_plugin_dir().glob("*.py"))
    assert sorted(p.name for p in target.glob("*.py")) == shipped
    assert {"ll_bridge.py", "ll_websocket.py", "ll_paths.py", "ll_plan.py"} <= set(shipped)
    assert str(target) in capsys.readouterr().out


def test_reinstall_replaces_an_old_copy(tmp_path):
    gimp_dir = tmp_path / "gimp"
    target = gimp_dir / "plug-ins" / "layerlift"
    target.mkdir(parents=True)
    (target / "stale_module.py").write_text("old")
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir)]) == 0
    assert not (target / "stale_module.py").exists()
    assert not target.with_name("layerlift.installing").exists()


def test_dry_run_writes_nothing(tmp_path, capsys):
    gimp_dir = tmp_path / "gimp"
    assert main(["install-gimp-plugin", "--dry-run", "--gimp-dir", str(gimp_dir)]) == 0
    assert not gimp_dir.exists()
    assert "would copy" in capsys.readouterr().out


def test_default_folder_follows_gimp_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert gimp_config_dir() == tmp_path / "GIMP" / "3.0"
    roaming = "C:/Users/a/AppData/Roaming"
    assert gimp_config_dir("win32", {"APPDATA": roaming}) == Path(roaming) / "GIMP" / "3.0"
    assert gimp_config_dir("darwin", {}).parts[-3:] == ("Application Support", "GIMP", "3.0")
