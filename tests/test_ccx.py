"""The Photoshop .ccx: built by `layerlift build-ccx`, deterministic, and its manifest has the
manifest-v5 fields Photoshop needs to install and show the panel."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from layerlift.bridge.auth import UXP_PLUGIN_ID
from layerlift.desktop import ccx as builder
from layerlift.desktop.cli import main
from layerlift.inference.settings import DEFAULT_PORT
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.fixture(scope="module")
def ccx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ccx") / "layerlift.ccx"
    assert main(["build-ccx", "-o", str(path)]) == 0
    return path


def test_manifest_has_the_v5_fields_photoshop_requires(ccx: Path) -> None:
    with zipfile.ZipFile(ccx) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["manifestVersion"] == 5
        assert manifest["id"] == UXP_PLUGIN_ID  # the id the bridge and docs name
        assert manifest["name"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
        assert manifest["main"] in names
        host = manifest["host"]
        hosts = host if isinstance(host, list) else [host]
        assert [h["app"] for h in hosts] == ["PS"]
        assert version_tuple(hosts[0]["minVersion"]) >= (24, 4)

        panels = [e for e in manifest["entrypoints"] if e["type"] == "panel"]
        assert len(panels) == 1
        panel = panels[0]
        assert panel["id"] and panel["label"]["default"]
        for key in ("minimumSize", "maximumSize", "preferredDockedSize", "preferredFloatingSize"):
            size = panel[key]
            assert size["width"] > 0 and size["height"] > 0, key
        assert panel["minimumSize"]["width"] <= panel["preferredDockedSize"]["width"] \
            <= panel["maximumSize"]["width"]

        domains = manifest["requiredPermissions"]["network"]["domains"]
        # The WebSocket, and plain HTTP for the panel's refused-or-not-running probe.
        assert sorted(domains) == sorted(f"{scheme}://{host}:{DEFAULT_PORT}"
                                         for scheme in ("ws", "http")
                                         for host in ("127.0.0.1", "localhost"))

        icons = [*manifest["icons"], *panel["icons"]]
        assert icons and panel["icons"]
        for icon in icons:
            stem, _, ext = icon["path"].rpartition(".")
            for scale in icon["scale"]:
                name = f"{stem}@{scale}x.{ext}"
                assert name in names, f"{name} is declared but not packaged"
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    assert image.size == (icon["width"] * scale, icon["height"] * scale), name


def test_package_holds_what_the_panel_loads_and_nothing_else(ccx: Path) -> None:
    with zipfile.ZipFile(ccx) as archive:
        names = archive.namelist()
        html = archive.read("index.html").decode()
        index = archive.read("index.js").decode()
    assert names == sorted(names)
    assert not [n for n in names if n.startswith(("test/", "tools/", "node_modules/"))]
    assert 'src="index.js"' in html
    for module in re.findall(r'require\("\./(src/[a-z_]+)"\)', index):
        assert f"{module}.js" in names
    sources = [n for n in names if n.startswith("src/")]
    assert {"src/protocol.js", "src/connection.js", "src/pixels.js", "src/placement.js",
            "src/modal.js", "src/panel.js"} <= set(sources)


def test_build_is_deterministic(ccx: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.ccx"
    assert main(["build-ccx", "-o", str(again)]) == 0
    assert again.read_bytes() == ccx.read_bytes()


def test_a_declared_icon_that_is_missing_stops_the_build(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    plugin = tmp_path / "plugin"
    shutil.copytree(REPO / "photoshop_plugin", plugin,
                    ignore=shutil.ignore_patterns("test", "node_modules"))
    (plugin / "icons" / "plugin@2x.png").unlink()
    with pytest.raises(builder.BuildError, match=r"plugin@2x\.png"):
        builder.build(tmp_path / "out.ccx", plugin)
    assert not (tmp_path / "out.ccx").exists()


def test_default_output_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / builder.package_name()
    mine.write_bytes(b"the user's own file")
    assert main(["build-ccx"]) == 0
    assert mine.read_bytes() == b"the user's own file"
    second = tmp_path / mine.name.replace(".ccx", "-2.ccx")
    assert zipfile.is_zipfile(second)


def test_a_folder_as_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["build-ccx", "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["not-ccx", "parent-is-file"])
def test_a_bad_output_is_refused_before_building(tmp_path: Path, capsys, case) -> None:
    """build-ccx checks its output like every LayerLift write, before the work."""
    afile = tmp_path / "afile"
    afile.write_text("a file, not a folder")
    output = tmp_path / "panel.zip" if case == "not-ccx" else afile / "layerlift.ccx"
    assert main(["build-ccx", "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert afile.read_text() == "a file, not a folder"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_the_package_is_readable_by_others(tmp_path: Path) -> None:
    output = tmp_path / "layerlift.ccx"
    assert main(["build-ccx", "-o", str(output)]) == 0
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~umask
