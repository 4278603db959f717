"""psd-tools' own test files (tests/psd_files: PSD, PSB and PNG) through `layerlift decompose`.

Nothing of psd-tools is shipped here: the files are read from the external picture corpus
that `LAYERLIFT_CORPUS` names (tests/markers.py), in its `psd-tools/tests/psd_files` folder
(or `psd_files`, or the corpus folder itself). To make it from a clone of
https://github.com/psd-tools/psd-tools:

    mkdir -p /var/cache/layerlift-tests/psd-tools
    git -C psd-tools archive HEAD tests/psd_files | tar -x -C /var/cache/layerlift-tests/psd-tools
    LAYERLIFT_CORPUS=/var/cache/layerlift-tests pytest -m corpus tests/test_corpus.py

Without it every test here skips, saying so. With it, each file is decomposed on the classic
backend by the real command line: it must be written (exit 0) and read back, or, only for a
file psd-tools itself cannot read, refused with a sentence (exit 2). Never a crash, never a
refusal of a file psd-tools reads, and the input is byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from layerlift.desktop.cli import main
from layerlift.inference.formats import read_stack

from bench.corpus import CORPUS_ENV, PLACES, psd_files_in
from tests.markers import corpus_dir

SUFFIXES = (".psd", ".psb", ".png")


def _collect() -> tuple[Path | None, list[str]]:
    # At collection time, without skipping: the parameters need the file names.
    folder = os.environ.get(CORPUS_ENV)
    root = psd_files_in(Path(folder)) if folder else None
    if root is None:
        return None, []
    return root, sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in SUFFIXES
    )


ROOT, FILES = _collect()


def psd_tools_reads(path: Path) -> tuple[bool, str]:
    """Whether psd-tools itself can open `path` and flatten it in any of its ways."""
    if path.suffix.lower() == ".png":
        return True, ""
    from psd_tools import PSDImage

    try:
        document = PSDImage.open(path)
    except Exception as exc:
        return False, f"PSDImage.open: {exc}"
    errors = []
    for options in ({}, {"ignore_preview": True}, {"force": True}):
        try:
            if document.composite(**options) is not None:
                return True, ""
        except Exception as exc:
            errors.append(f"composite({options}): {exc}")
    return False, "; ".join(errors)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.corpus
@pytest.mark.parametrize("name", FILES or [None])
def test_corpus_file_decomposes(name, tmp_path, capsys):
    if name is None:
        corpus = corpus_dir()  # skips when LAYERLIFT_CORPUS is not set
        pytest.skip(f"the corpus {corpus} holds no psd-tools test files (looked in "
                    f"{', '.join(PLACES)}); see this module's docstring")
    source = ROOT / name
    before = digest(source)
    output = tmp_path / "out.psd"
    try:
        code = main(["decompose", str(source), "-o", str(output), "--backend", "classic",
                     "-q"])
    except SystemExit as exc:  # argparse only; a file must never get here
        code = exc.code
    err = capsys.readouterr().err
    assert digest(source) == before, "the input changed"
    assert "Traceback" not in err
    readable, why = psd_tools_reads(source)
    if readable:
        assert code == 0, f"refused or failed a file psd-tools reads:\n{err}"
        stack = read_stack(output)
        assert stack.width >= 1 and stack.height >= 1 and stack.layers
    else:
        # psd-tools cannot read it either: a refusal with a sentence is the right answer.
        assert code == 2, f"psd-tools cannot read it ({why}), but LayerLift said:\n{err}"
        assert err.startswith("error:") or "\nerror:" in err
        assert not output.exists()
