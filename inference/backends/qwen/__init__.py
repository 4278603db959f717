"""The Qwen-Image-Layered backend (`qwen`). Importing this package does not import torch."""

from inference.backends.qwen.backend import QwenBackend

__all__ = ["QwenBackend"]
