"""User settings shared by the CLI, the server and the tray app, kept as JSON in the config folder.

Unknown keys in the file are kept but ignored, and a broken file falls back to defaults with
a warning instead of stopping the app: a settings typo must never cost the user a session.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from layerlift.bridge.wire import DEFAULT_PORT
from layerlift.inference import paths
from layerlift.inference.atomic import atomic_writer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen-Image-Layered"


@dataclass
class Settings:
    # Qwen backend: a local folder or a Hugging Face repo id looked up in the HF cache.
    # None means "not configured": `auto` then never picks the Qwen backend.
    model: str | None = None
    offline: bool = True
    device: str = "auto"
    memory_mode: str = "auto"
    resolution: int = 640
    steps: int = 50
    # The user's defaults of backend options (name -> value), edited in the settings window.
    # The option's spec checks a value when it is used; one that no longer fits is ignored.
    option_defaults: dict[str, Any] = field(default_factory=dict)
    # Bridge.
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # Job results kept on disk.
    results_keep_days: float = 14.0
    results_max_mb: float = 2048.0

    @classmethod
    def path(cls) -> Path:
        return paths.config_dir() / paths.SETTINGS_FILE

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or cls.path()
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable settings file %s: %s", path, exc)
            return cls()
        known = {f.name: f for f in fields(cls)}
        values = {}
        defaults = cls()
        for key, value in raw.items():
            if key not in known:
                continue
            default = getattr(defaults, key)
            expected = str if default is None else type(default)
            if (value is None and default is None) or isinstance(value, expected) or (
                expected is float and isinstance(value, int)
            ):
                values[key] = value
            else:
                log.warning("ignoring setting %s=%r: expected %s", key, value, expected.__name__)
        return cls(**values)

    def save(self, path: Path | None = None) -> Path:
        path = path or self.path()
        with atomic_writer(path) as handle:
            handle.write(json.dumps(asdict(self), indent=2).encode("utf-8"))
        return path
