"""Backend registry.

Backends are named here by import path and only imported when used, so that `layerlift --help`
and the classic backend never import torch.
"""

from __future__ import annotations

import importlib

from layerlift.inference.backends.base import (
    Availability,
    Backend,
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
)
from layerlift.inference.backends.options import OptionSchema
from layerlift.inference.errors import BackendUnavailable, BadRequest
from layerlift.inference.settings import Settings

__all__ = [
    "Availability",
    "Backend",
    "CancelToken",
    "DecomposeRequest",
    "Progress",
    "ProgressCallback",
    "backend_class",
    "backend_names",
    "choose_backend",
    "create_backend",
    "option_schemas",
]

# name -> "module:Class". Order matters for `auto`: the first available one wins.
_REGISTRY: dict[str, str] = {
    "qwen": "layerlift.inference.backends.qwen:QwenBackend",
    "classic": "layerlift.inference.backends.classic:ClassicBackend",
}


def backend_names() -> list[str]:
    return list(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise BadRequest(
            f"unknown backend {name!r}; choose one of: auto, {', '.join(_REGISTRY)}"
        ) from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} is not installed: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BackendUnavailable(f"backend {name!r} is incomplete: {target} is missing")
    return cls


def option_schemas() -> list[tuple[str, OptionSchema]]:
    """(name, declared options) of every backend whose class can be read here, in order.

    What the CLI's flags and the settings model are generated from; reading a class never
    imports torch. A backend that is not installed offers nothing.
    """
    schemas = []
    for name in _REGISTRY:
        try:
            schemas.append((name, backend_class(name).options))
        except BackendUnavailable:
            continue
    return schemas


def availability(name: str, settings: Settings | None = None, *,
                 for_auto: bool = False) -> Availability:
    try:
        cls = backend_class(name)
    except BackendUnavailable as exc:
        return Availability(False, exc.message)
    return cls.auto_availability(settings) if for_auto else cls.availability(settings)


def choose_backend(name: str, settings: Settings | None = None) -> tuple[str, str]:
    """Resolve `auto` (or check a named backend) to (name, why), raising if it cannot run."""
    if name != "auto":
        avail = availability(name, settings)
        if not avail.ok:
            raise BackendUnavailable(f"backend {name!r} cannot run here: {avail.reason}")
        return name, "chosen by the user"
    reasons = []
    for candidate in _REGISTRY:
        avail = availability(candidate, settings, for_auto=True)
        if avail.ok:
            why = "; ".join(reasons) if reasons else "first available"
            return candidate, why
        reasons.append(f"{candidate}: {avail.reason}")
    raise BackendUnavailable("no backend can run here: " + "; ".join(reasons))


def create_backend(name: str, settings: Settings | None = None) -> Backend:
    return backend_class(name)(settings)
