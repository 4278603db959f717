"""The settings window's and main window's backend controls, as plain data (no Qt).

Built from the backends' declared option schemas: one `OptionField` per option says which
control to show (a menu for choices, a spin box with the spec's range for numbers, a check box,
a line edit), its label and tooltip, and the value it starts with. The Qt side only renders
these, so a new backend option appears in both windows without a line of GUI code, and tests
check the model instead of pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from layerlift.inference.backends import option_schemas
from layerlift.inference.backends.options import OptionSchema, OptionSpec
from layerlift.inference.backends.qwen.memory import mode_summaries
from layerlift.inference.settings import Settings

Control = Literal["choice", "int", "float", "check", "text"]


@dataclass(frozen=True)
class OptionField:
    """One control: which backend's option it edits, how, and its starting value."""

    backend: str
    spec: OptionSpec
    value: Any

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return self.spec.title

    @property
    def tooltip(self) -> str:
        return f"{self.backend} backend: {self.spec.help}"

    @property
    def control(self) -> Control:
        if self.spec.choices:
            return "choice"
        return {"int": "int", "float": "float", "bool": "check"}.get(self.spec.kind, "text")


def _fields(settings: Settings, schemas: Iterable[tuple[str, OptionSchema]],
            remembered: bool) -> list[OptionField]:
    seen: set[str] = set()
    fields = []
    for backend, schema in schemas:
        for spec in schema:
            if spec.remembered != remembered or spec.name in seen:
                continue  # an option two backends share is one control
            seen.add(spec.name)
            fields.append(OptionField(backend, spec, spec.default_for(settings)))
    return fields


def settings_fields(settings: Settings,
                    schemas: Iterable[tuple[str, OptionSchema]] | None = None) -> list[OptionField]:
    """The settings window's backend defaults: every remembered option, its current default."""
    return _fields(settings, option_schemas() if schemas is None else schemas, True)


def picture_fields(settings: Settings,
                   schemas: Iterable[tuple[str, OptionSchema]] | None = None) -> list[OptionField]:
    """The main window's per-picture options (a caption): asked for with each picture."""
    return _fields(settings, option_schemas() if schemas is None else schemas, False)


def apply_defaults(settings: Settings, fields: Iterable[OptionField],
                   values: Mapping[str, Any]) -> dict[str, Any]:
    """The new `Settings` values for the edited defaults: settings fields by name, every other
    option in `option_defaults` (only where it differs from the declared default)."""
    changes: dict[str, Any] = {}
    saved = dict(settings.option_defaults)
    for field in fields:
        if field.name not in values:
            continue
        value = field.spec.check(values[field.name])
        if field.spec.setting is not None:
            changes[field.spec.setting] = value
        elif value == field.spec.default:
            saved.pop(field.name, None)
        else:
            saved[field.name] = value
    changes["option_defaults"] = saved
    return changes


def memory_mode_items() -> list[tuple[str, str]]:
    """(mode, "mode: what it does") for the memory-mode menu, from memory.py's ModeSpec."""
    return [(mode, f"{mode}: {summary}") for mode, summary in mode_summaries().items()]
