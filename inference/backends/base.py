"""The contract between a decomposer and everything that calls it (CLI, job runner, bridge).

A backend turns one RGBA8 picture into a full-resolution LayerStack. It reports progress
through a callback and polls a cancel token, so the job runner can show "step 12/50" and stop a
job within one step, whatever the backend.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from layerlift.inference.backends.options import NO_OPTIONS, OptionSchema
from layerlift.inference.errors import BadRequest, Cancelled
from layerlift.inference.layers import LayerStack
from layerlift.inference.settings import Settings

MAX_LAYERS = 10


@dataclass(frozen=True)
class DecomposeRequest:
    """What the user asked for; backend-specific knobs live in `options`."""

    layers: int | None = None
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layers is not None and not 1 <= self.layers <= MAX_LAYERS:
            raise BadRequest(f"layer count must be between 1 and {MAX_LAYERS}, got {self.layers}")


@dataclass(frozen=True)
class Progress:
    """One progress report. `fraction` covers the whole job, 0 to 1, never going back."""

    stage: str
    fraction: float
    message: str = ""
    step: int | None = None
    total: int | None = None


ProgressCallback = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """Default callback for callers that do not show progress."""


class CancelToken:
    """A thread-safe flag a caller sets and a backend polls between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, a sentence that says what is missing."""

    ok: bool
    reason: str = ""


class Backend(abc.ABC):
    """A decomposer. Instances may hold a loaded model; the job runner keeps one per name."""

    name: ClassVar[str]
    label: ClassVar[str]
    # The keys of a result stack's `meta` that the user should see with the job (the caption
    # the model used, its memory mode, …): the job runner copies these, and only these, into
    # the job's result (the plain values), `layerlift decompose` into its summary, so no layer
    # above the backend needs to know its vocabulary.
    reported_meta: ClassVar[tuple[str, ...]] = ()
    # The knobs a request may turn, declared once: the bridge's `welcome`, the CLI's flags,
    # the settings model and every validation are generated from this schema.
    options: ClassVar[OptionSchema] = NO_OPTIONS

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings()

    @classmethod
    def availability(cls, settings: Settings | None = None) -> Availability:
        """Cheap check (no model load, no heavy import): can it run when asked for by name?"""
        return Availability(True)

    @classmethod
    def auto_availability(cls, settings: Settings | None = None) -> Availability:
        """May `auto` pick it? Stricter for backends that run but should not run unasked."""
        return cls.availability(settings)

    @abc.abstractmethod
    def decompose(
        self,
        image: np.ndarray,
        request: DecomposeRequest,
        progress: ProgressCallback = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> LayerStack:
        """Decompose an (h, w, 4) uint8 straight-alpha image into a full-resolution stack.

        The stack must recomposite to `image`; `stack.meta` records at least "backend" and
        "psnr" (recomposition PSNR against the input, dB).
        """

    def load(self, progress: ProgressCallback = ignore_progress) -> None:  # noqa: B027
        """Load the model now (the tray's "Load model"), so the first job does not wait for it.

        Backends without a model have nothing to do; the default does nothing.
        """

    def unload(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Free whatever the backend holds (GPU memory); the next decompose loads it again."""
