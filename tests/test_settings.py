"""Settings survive a round trip and a damaged file never stops the app."""

from __future__ import annotations

import json

from layerlift.inference import paths
from layerlift.inference.settings import Settings


def test_round_trip(layerlift_home):
    settings = Settings(model="/models/qwen", offline=False, port=50000, results_keep_days=3)
    path = settings.save()
    assert path.parent == paths.config_dir()
    assert str(path).startswith(str(layerlift_home))
    assert Settings.load() == settings


def test_missing_file_gives_defaults():
    assert Settings.load() == Settings()


def test_broken_file_falls_back_to_defaults():
    Settings.path().write_text("{not json", encoding="utf-8")
    assert Settings.load() == Settings()


def test_wrong_types_and_unknown_keys_are_ignored():
    Settings.path().write_text(
        json.dumps({"port": "eighty", "offline": False, "future_key": 1, "model": "x",
                    "results_max_mb": 10}),
        encoding="utf-8",
    )
    loaded = Settings.load()
    assert loaded.port == Settings().port
    assert loaded.offline is False
    assert loaded.model == "x"
    assert loaded.results_max_mb == 10
