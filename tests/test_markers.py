"""The test markers behave as README's Tests section says (tests/markers.py, pyproject.toml).

Each case runs pytest on a small test file of its own, with the project's settings and marker
plugin, and reads the outcome from its report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CASES = '''
import pytest

@pytest.fixture
def gimp3():
    return "a stand-in for the harness"

@pytest.mark.gpu
def test_on_the_gpu():
    pass

@pytest.mark.corpus
def test_on_the_corpus():
    pass

def test_in_gimp(gimp3):
    pass

def test_plain():
    pass
'''


def run_pytest(tmp_path: Path, *args: str, source: str = CASES,
               **env: str) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_cases.py"
    test_file.write_text(source)
    # No GPU, whatever this machine has; no corpus unless the case names one.
    environ = {key: value for key, value in os.environ.items() if key != "LAYERLIFT_CORPUS"}
    environ.update(CUDA_VISIBLE_DEVICES="", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "-p", "tests.markers",
         "-p", "no:cacheprovider", "-rA", str(test_file), *args],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=120)


def test_gpu_and_corpus_tests_skip_with_their_reason(tmp_path):
    run = run_pytest(tmp_path)
    out = run.stdout
    assert run.returncode == 0, out[-3000:]
    assert "SKIPPED" in out and "needs a CUDA GPU" in out
    assert "set LAYERLIFT_CORPUS to its folder" in out
    assert "2 passed, 2 skipped" in out


def test_a_corpus_that_is_not_a_folder_fails(tmp_path):
    run = run_pytest(tmp_path, "-k", "corpus", LAYERLIFT_CORPUS=str(tmp_path / "missing"))
    assert run.returncode == 1, run.stdout[-3000:]
    assert "is not a folder" in run.stdout


def selected(tmp_path: Path, expression: str) -> set[str]:
    run = run_pytest(tmp_path, "--collect-only", "-q", "-m", expression)
    assert run.returncode == 0, run.stdout[-3000:]
    return {line.rsplit("::", 1)[1] for line in run.stdout.splitlines() if "::" in line}


def test_make_test_and_test_fast_selections(tmp_path):
    assert selected(tmp_path, "not gpu") == {"test_on_the_corpus", "test_in_gimp", "test_plain"}
    # A test that uses the gimp3 fixture counts as `gimp` without saying so.
    assert selected(tmp_path, "not gimp and not dist and not gpu") == {
        "test_on_the_corpus", "test_plain"}


def test_an_unregistered_marker_is_an_error(tmp_path):
    source = "import pytest\n\n@pytest.mark.gpuu\ndef test_x():\n    pass\n"
    run = run_pytest(tmp_path, source=source)
    assert run.returncode != 0
    assert "'gpuu' not found in `markers`" in run.stdout + run.stderr


def test_no_tests_is_not_a_pass(tmp_path):
    run = run_pytest(tmp_path, "-m", "gpu and not gpu")
    assert run.returncode == pytest.ExitCode.NO_TESTS_COLLECTED


def test_make_test_deselects_only_gpu():
    makefile = (REPO / "Makefile").read_text()
    assert '$(PY) -m pytest -m "not gpu"' in makefile
    assert '$(PY) -m pytest -m "not gimp and not dist and not gpu"' in makefile
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")
