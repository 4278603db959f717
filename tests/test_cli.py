"""`layerlift decompose` end to end on the classic backend: files, summaries, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from layerlift.desktop.cli import main
from layerlift.inference.formats import read_image, read_stack
from layerlift.inference.layers import psnr
from PIL import Image
from psd_tools import PSDImage

from tests.conftest import EXAMPLES, REPO
from tests.helpers import png_header_only

LOGO = EXAMPLES / "logo.png"
POSTER = EXAMPLES / "poster.png"


def _small_poster(tmp_path: Path) -> Path:
    """The poster at half size keeps the CLI tests quick on two cores."""
    path = tmp_path / "poster_small.png"
    with Image.open(POSTER) as image:
        image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(path)
    return path


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from layerlift.desktop.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'PySide6' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_decompose_to_psd(tmp_path, capsys):
    source = _small_poster(tmp_path)
    target = tmp_path / "out" / "poster.psd"
    assert main(["decompose", str(source), "-o", str(target), "--backend", "classic"]) == 0
    out = capsys.readouterr()
    assert f"to {target}" in out.out
    assert "layers" in out.out and "classic" in out.out
    assert "backend: classic" in out.err

    psd = PSDImage.open(target)
    assert psd.size == Image.open(source).size
    groups = [layer for layer in psd if layer.is_group()]
    assert len(groups) == 1 and groups[0].name == source.stem
    pixel_layers = list(groups[0])
    assert len(pixel_layers) >= 3
    names = [layer.name for layer in pixel_layers]
    assert all(names) and len(set(names)) == len(names)
    for layer in pixel_layers:
        alpha = np.asarray(layer.topil().getchannel("A")) if layer.width else np.zeros((0, 0))
        if alpha.size:  # trimmed: the first and last rows and columns are not all transparent
            assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
    original = read_image(source).pixels
    assert psnr(original, read_stack(target).composite()) >= 50.0


def test_decompose_to_ora_and_png_folder(tmp_path, capsys):
    source = _small_poster(tmp_path)
    original = read_image(source).pixels
    ora = tmp_path / "poster.ora"
    assert main(["decompose", str(source), "-o", str(ora), "--backend", "classic", "-q"]) == 0
    assert psnr(original, read_stack(ora).composite()) >= 50.0
    folder = tmp_path / "layers"
    assert main(["decompose", str(source), "-o", f"{folder}/", "--backend", "classic", "-q"]) == 0
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs[0].startswith("00_") and len(pngs) >= 3
    assert psnr(original, read_stack(folder).composite()) >= 50.0


def test_json_summary_and_layer_count(tmp_path, capsys):
    out_path = tmp_path / "logo.psd"
    code = main(["decompose", str(LOGO), "-n", "3", "-o", str(out_path), "--backend", "classic",
                 "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "classic"
    assert summary["output"] == str(out_path)
    assert len(summary["layers"]) == 3
    assert summary["canvas"] == {"width": 320, "height": 320}
    assert summary["exact"] or summary["psnr"] >= 50.0
    for layer in summary["layers"]:
        assert layer["x"] >= 0 and layer["y"] >= 0
        assert layer["x"] + layer["width"] <= 320 and layer["y"] + layer["height"] <= 320


def test_auto_picks_classic_without_weights_and_says_why(tmp_path, capsys):
    assert main(["decompose", str(LOGO), "-o", str(tmp_path / "a.psd"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "backend: classic" in err and "qwen" in err


def test_default_output_is_input_stem_in_cwd(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["decompose", str(LOGO), "--backend", "classic", "-q"]) == 0
    assert (tmp_path / "logo.psd").is_file()


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.png", b"", "empty"),
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200), "png"),
        ("random.png", os.urandom(300), "random.png"),
        ("notes.txt", b"just some text\n", "notes.txt"),
    ],
)
def test_bad_input_exits_2_with_a_sentence(tmp_path, capsys, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["decompose", str(path), "-o", str(tmp_path / "x.psd")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle.lower() in err.lower()
    assert "Traceback" not in err
    assert not (tmp_path / "x.psd").exists()


def test_huge_png_header_is_refused_fast(tmp_path, capsys):
    bomb = png_header_only(tmp_path / "bomb.png", 30000, 30000)
    started = time.monotonic()
    assert main(["decompose", str(bomb), "-o", str(tmp_path / "x.psd")]) == 2
    assert time.monotonic() - started < 5.0
    err = capsys.readouterr().err
    assert "30000" in err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["decompose", str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "11", "three"])
def test_bad_layer_count_exits_2(count, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["decompose", str(LOGO), "-n", count])
    assert exc.value.code == 2


def test_unknown_output_format_exits_2(tmp_path, capsys):
    assert main(["decompose", str(LOGO), "-o", str(tmp_path / "out.xyz"), "--backend",
                 "classic", "-q"]) == 2
    assert ".psd" in capsys.readouterr().err


def test_qwen_without_model_fails_with_a_clear_error(tmp_path, capsys):
    assert main(["decompose", str(LOGO), "-o", str(tmp_path / "q.psd"), "--backend", "qwen"]) == 1
    err = capsys.readouterr().err
    assert "qwen" in err and "Traceback" not in err


def test_console_script_runs(tmp_path):
    script = Path(sys.executable).parent / "layerlift"
    if not script.exists():
        pytest.fail(f"the layerlift console script is not installed next to {sys.executable}")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                             check=True)
    assert version.stdout.startswith("layerlift ")
    bad = subprocess.run([str(script), "decompose", str(tmp_path / "none.png")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "error:" in bad.stderr
