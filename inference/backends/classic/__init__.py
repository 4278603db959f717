"""The embedded classic backend (CPU, no weights); see `backend.py` for the pipeline."""

from layerlift.inference.backends.classic.backend import ClassicBackend

__all__ = ["ClassicBackend"]
