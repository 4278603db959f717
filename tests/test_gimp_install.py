"""`layerlift install-gimp-plugin` puts an executable plug-in where GIMP 3 looks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from layerlift.desktop.cli import main
from layerlift.desktop.gimp_install import gimp_config_dir, install
from layerlift.desktop.plugin_sources import gimp_plugin_dir

from tests.conftest import REPO

# What the plug-in runs of LayerLift's own code: one copy in the repository, installed as is.
SHARED = {"ll_wire.py": REPO / "bridge" / "wire.py",
          "ll_job_states.py": REPO / "inference" / "job_states.py"}


def test_install_copies_an_executable_plugin(tmp_path, capsys):
    gimp_dir = tmp_path / "GIMP" / "3.0"
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir)]) == 0
    target = gimp_dir / "plug-ins" / "layerlift"
    main_file = target / "layerlift.py"
    assert main_file.is_file() and os.access(main_file, os.X_OK)
    shipped = sorted(p.name for p in gimp_plugin_dir().glob("*.py"))
    assert sorted(p.name for p in target.glob("*.py")) == sorted([*shipped, *SHARED])
    assert {"ll_bridge.py", "ll_websocket.py", "ll_paths.py", "ll_plan.py"} <= set(shipped)
    for name, source in SHARED.items():
        assert name not in shipped  # the repository's plug-in folder has no copy of its own
        assert (target / name).read_bytes() == source.read_bytes()
    assert str(target) in capsys.readouterr().out


def test_a_plugin_folder_with_its_own_copy_is_refused(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for path in gimp_plugin_dir().glob("*.py"):
        (source / path.name).write_bytes(path.read_bytes())
    (source / "ll_wire.py").write_text("# a stale copy\n")
    with pytest.raises(FileExistsError, match=r"ll_wire\.py"):
        install(tmp_path / "target", source)
    assert not (tmp_path / "target").exists()


def test_reinstall_replaces_an_old_copy(tmp_path):
    gimp_dir = tmp_path / "gimp"
    target = gimp_dir / "plug-ins" / "layerlift"
    target.mkdir(parents=True)
    # An install from before the marker: LayerLift's layerlift.py and modules only.
    (target / "layerlift.py").write_text("# LayerLift GIMP plug-in, an old version\n")
    (target / "stale_module.py").write_text("old")
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir)]) == 0
    assert not (target / "stale_module.py").exists()
    assert not target.with_name("layerlift.installing").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["layerlift"]  # no leftovers
    # And the marked install replaces itself again.
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir)]) == 0
    assert (target / ".layerlift-folder.json").is_file()


@pytest.mark.parametrize("case", ["foreign-folder", "edited-install"])
def test_a_folder_that_is_not_ours_is_never_replaced(tmp_path, capsys, case):
    """`install-gimp-plugin` removes only what LayerLift installed itself."""
    gimp_dir = tmp_path / "gimp"
    target = gimp_dir / "plug-ins" / "layerlift"
    if case == "foreign-folder":
        target.mkdir(parents=True)
        (target / "layerlift.py").write_text("# someone else's plug-in called layerlift\n")
        (target / "notes.txt").write_text("my notes")
    else:
        assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir)]) == 0
        (target / "layerlift.py").write_text("# LayerLift, with the user's own changes\n")
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    assert main(["install-gimp-plugin", "--gimp-dir", str(gimp_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(target) in err
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["layerlift"]


def test_a_gimp_dir_that_is_a_file_is_a_sentence(tmp_path, capsys):
    afile = tmp_path / "gimp"
    afile.write_text("not a folder")
    assert main(["install-gimp-plugin", "--gimp-dir", str(afile)]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and "Traceback" not in err
    assert afile.read_text() == "not a folder"


def test_dry_run_writes_nothing(tmp_path, capsys):
    gimp_dir = tmp_path / "gimp"
    assert main(["install-gimp-plugin", "--dry-run", "--gimp-dir", str(gimp_dir)]) == 0
    assert not gimp_dir.exists()
    files = install(gimp_dir / "plug-ins" / "layerlift", dry_run=True)
    assert set(SHARED) <= {path.name for path in files}
    assert f"would copy {len(files)} files" in capsys.readouterr().out


def test_default_folder_follows_gimp_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert gimp_config_dir() == tmp_path / "GIMP" / "3.0"
    roaming = "C:/Users/a/AppData/Roaming"
    assert gimp_config_dir("win32", {"APPDATA": roaming}) == Path(roaming) / "GIMP" / "3.0"
    assert gimp_config_dir("darwin", {}).parts[-3:] == ("Application Support", "GIMP", "3.0")
