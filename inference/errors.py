"""Errors with stable codes.

Every failure that can reach a user (CLI, bridge, plug-ins) carries a short machine code that
clients may branch on and a human message that says what to do. The codes are part of the
protocol contract (docs/protocol.md), so never rename one.
"""

from __future__ import annotations


class LayerLiftError(Exception):
    """Base of all expected failures; anything else is a bug."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(LayerLiftError):
    """The input image cannot be used (the user's file, not our fault)."""

    code = "bad_input"


class UnsupportedFormat(InputError):
    code = "unsupported_format"


class CorruptImage(InputError):
    code = "corrupt_image"


class ImageTooLarge(InputError):
    code = "image_too_large"


class BadRequest(LayerLiftError):
    """Parameters out of range (layer count, resolution, unknown backend...)."""

    code = "bad_request"


class BackendUnavailable(LayerLiftError):
    """The chosen backend cannot run here (no weights, no torch, no GPU...)."""

    code = "backend_unavailable"


class ModelFilesMissing(BackendUnavailable):
    code = "model_missing"


class OutOfMemory(LayerLiftError):
    code = "out_of_memory"


class Cancelled(LayerLiftError):
    """Raised inside a backend when its cancel token fires; not a failure."""

    code = "cancelled"

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)
