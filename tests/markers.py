"""What the test markers need, checked before a marked test runs (a pytest plugin).

The markers are registered in pyproject.toml, with `--strict-markers`, and README's Tests
section says which make target runs which. Tests that drive a tool the suite installs or
builds (`gimp`, `node`, `dist`) fail with a sentence when it is missing: they never skip. Only
what a machine like CI's cannot have is skipped, with the reason in the summary:

- `gpu`: a CUDA GPU (torch.cuda.is_available()); `make test` deselects these tests.
- `corpus`: pictures outside the repository, in the folder LAYERLIFT_CORPUS names.

A test that uses the `gimp3` fixture is marked `gimp` even where its module forgot to, so that
`make test-fast` never waits for GIMP, and every `gimp` test may run for GIMP_TIMEOUT_S: the first
one includes building the GIMP chroot (under a minute on a fast mirror, about 4 on a slow one).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from bench.corpus import CORPUS_ENV

GIMP_TIMEOUT_S = 1800


@functools.cache
def _no_cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "needs a CUDA GPU: torch is not installed"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU: torch.cuda.is_available() is False"
    return None


def corpus_dir() -> Path:
    """The external picture folder of `corpus` tests (skips the test when none is named)."""
    folder = os.environ.get(CORPUS_ENV)
    if not folder:
        pytest.skip(f"needs the external picture corpus: set {CORPUS_ENV} to its folder")
    path = Path(folder)
    if not path.is_dir():
        pytest.fail(f"{CORPUS_ENV}={folder} is not a folder")
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Before `-m` deselects (the mark plugin's own hook runs after this one).
    for item in items:
        if "gimp3" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("gimp"):
            item.add_marker(pytest.mark.gimp)
        if item.get_closest_marker("gimp") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(GIMP_TIMEOUT_S))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        reason = _no_cuda_reason()
        if reason:
            pytest.skip(reason)
    if item.get_closest_marker("corpus") is not None:
        corpus_dir()
