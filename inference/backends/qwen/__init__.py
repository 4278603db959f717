"""The Qwen-Image-Layered backend (`qwen`). Importing this package does not import torch.

`QwenBackend` is imported on first use so that the CLI, the bridge and the settings window
can read the light `memory` module (the mode names) without loading the backend's module.
"""

from typing import Any

__all__ = ["QwenBackend"]


def __getattr__(name: str) -> Any:
    if name == "QwenBackend":
        from layerlift.inference.backends.qwen.backend import QwenBackend

        return QwenBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
