"""The backends and their options for the GIMP dialog, read from the server's `welcome`
(stdlib only).

GIMP fixes a procedure's arguments, and a choice argument's choices, when the plug-in
registers, so neither the backends nor their options can be declared there without a plug-in
release for each new one. Instead the dialog asks the app which backends it has
(`capabilities.backends`) and which options they declare (`capabilities.backends[].options`,
docs/protocol.md, "Backend options") and shows a menu and one field per option; scripts pass
the backend's name as text and the options as one JSON `options` argument. Nothing here names
a backend or an option: the server declares them and checks every value again.
"""

from __future__ import annotations

import json
import math
from typing import Any

AUTO = ("auto", "Automatic")


def backend_choices(capabilities: dict) -> list[tuple[str, str]]:
    """(name, label) of each backend the dialog's menu offers: `auto` first, then the app's,
    an unavailable one marked so (the app says why when it is chosen)."""
    choices = [AUTO]
    for entry in capabilities.get("backends") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name == AUTO[0]:
            continue
        label = str(entry.get("label") or name)
        choices.append((name, label if entry.get("available", True) else f"{label} (unavailable)"))
    return choices


def option_specs(capabilities: dict, backend: str) -> list[dict]:
    """The option specs a decompose with `backend` may set (`auto`: every backend's, once)."""
    backends = [b for b in capabilities.get("backends") or [] if isinstance(b, dict)]
    chosen = backends if backend == "auto" else [b for b in backends if b.get("name") == backend]
    specs, seen = [], set()
    for entry in chosen:
        for spec in entry.get("options") or []:
            name = spec.get("name") if isinstance(spec, dict) else None
            if isinstance(name, str) and name not in seen:
                seen.add(name)
                specs.append(spec)
    return specs


def choices_of(spec: dict) -> list[Any] | None:
    """The values a menu offers for `spec` (on/off for a bool), or None for a text field."""
    if spec.get("type") == "bool":
        return [True, False]
    choices = spec.get("choices")
    return list(choices) if isinstance(choices, list) else None


def shown(value: Any) -> str:
    if value is True:
        return "on"
    if value is False:
        return "off"
    return "" if value is None else str(value)


def parse_value(spec: dict, text: str) -> Any:
    """The value `text` means for `spec`; None when left empty. ValueError says what is wrong."""
    text = text.strip()
    label = spec.get("label") or spec.get("name")
    if not text:
        return None
    kind = spec.get("type")
    value: Any = text
    if kind == "bool":
        if text not in ("on", "off", "true", "false"):
            raise ValueError(f"{label} must be on or off")
        return text in ("on", "true")
    if kind in ("int", "float"):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{label} must be a number, not {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number")
        if kind == "int":
            if value != int(value):
                raise ValueError(f"{label} must be a whole number")
            value = int(value)
        low, high = spec.get("minimum"), spec.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{label} must be from {low} to {high}")
    choices = choices_of(spec)
    if choices is not None:
        for choice in choices:
            if shown(choice) == shown(value):
                return choice
        raise ValueError(f"{label} must be one of {', '.join(shown(c) for c in choices)}")
    return value


def collect(specs: list[dict], texts: dict[str, str]) -> dict[str, Any]:
    """{name: value} of the fields the user filled in; empty fields are left to the app."""
    options = {}
    for spec in specs:
        value = parse_value(spec, texts.get(spec["name"], ""))
        if value is not None:
            options[spec["name"]] = value
    return options


def parse_argument(text: str) -> dict[str, Any]:
    """The `options` procedure argument: a JSON object such as {"steps": 20}, or empty."""
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"options must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError('options must be a JSON object such as {"steps": 20}')
    return value
