"""The JSON manifest that describes a layer stack beside its pixel files.

Both folder formats (the user's PNG folder and the job store's result folder) describe the
same things about a stack: its canvas, each layer's name, file, offset, size, visibility and
metadata, and the stack's own metadata. Writing that description here keeps the two readers
giving back the same stack, whichever format a result was kept in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
from layerlift.inference.layers import LayerStack

_DROP = object()


def _safe(value: Any) -> Any:
    """`value` made JSON-safe, or _DROP if it has no faithful JSON form."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    if isinstance(value, np.generic) and value.ndim == 0:
        return _safe(value.item())
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool):
                continue
            converted = _safe(item)
            if converted is not _DROP:
                out[str(key)] = converted
        return out
    if isinstance(value, list | tuple):
        return [item for item in map(_safe, value) if item is not _DROP]
    return _DROP


def json_safe(mapping: dict[str, Any]) -> dict[str, Any]:
    """The parts of `mapping` that survive a JSON round trip unchanged in meaning."""
    converted = _safe(dict(mapping))
    return converted if isinstance(converted, dict) else {}


def stack_manifest(stack: LayerStack, files: Sequence[str | None], format_id: str,
                   version: int) -> dict[str, Any]:
    """The manifest of `stack` whose layers are stored in `files` (None: no pixels)."""
    return {
        "format": format_id,
        "version": version,
        "width": stack.width,
        "height": stack.height,
        "layers": [
            {
                "name": layer.name,
                "file": file,
                "x": layer.x,
                "y": layer.y,
                "width": layer.width,
                "height": layer.height,
                "visible": layer.visible,
                "meta": json_safe(layer.meta),
            }
            for layer, file in zip(stack.layers, files, strict=True)
        ],
        "meta": json_safe(stack.meta),
    }
