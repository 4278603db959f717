"""Fixtures for the Qwen backend tests: one tiny random-weight pipeline per test session.

Building and saving it takes ~10 s and each real run several seconds on 2 cores, so the
folder is built once and a loaded backend is shared by the tests that run the model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("torchvision")
    from tests.qwen.tiny_pipeline import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("qwen-tiny") / "model")


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model folder that a test may damage."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture(scope="session")
def tiny_settings(tiny_model_dir: Path):
    from layerlift.inference.settings import Settings

    return Settings(model=str(tiny_model_dir), device="cpu", steps=1, resolution=640)


@pytest.fixture(scope="session")
def tiny_backend(tiny_settings):
    """A QwenBackend loaded once for the session (loading is part of the first test's run)."""
    from layerlift.inference.backends.qwen import QwenBackend

    backend = QwenBackend(tiny_settings)
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def poster_small() -> np.ndarray:
    """examples/poster.png at a third of its size: real content, cheap to refine."""
    from PIL import Image

    image = Image.open(REPO / "examples" / "poster.png").convert("RGBA")
    image = image.resize((image.width // 3, image.height // 3), Image.Resampling.LANCZOS)
    return np.asarray(image)
