"""A backend's options, declared once: the schema every entry point is generated from.

A backend lists its knobs as `OptionSpec`s (name, type, range or choices, default, help), the
way a diffusers pipeline's `__call__` signature is its interface. The bridge's `welcome`
sends them as JSON (`to_json`), `layerlift decompose` turns them into flags, the settings
model into controls, and `OptionSchema.validate` is the one check every entry point runs, so
the socket, the CLI and the backend can no longer disagree about what a value may be.

This module is light on purpose (no numpy, no torch): `--help` and the plug-ins' `welcome`
read it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from layerlift.inference.errors import BadRequest

Kind = Literal["int", "float", "str", "bool"]
KINDS: tuple[str, ...] = ("int", "float", "str", "bool")
# Text options travel over the socket: bounded so one message cannot carry a novel.
MAX_TEXT = 2000


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class OptionSpec:
    """One option of one backend: what it is called, what values it takes, what it means.

    `default` is the value used when the request leaves the option out (None: the backend
    decides, e.g. "the model captions the picture"); `setting` names the `Settings` field that
    holds the user's default instead, so the server's settings decide it. An option that
    describes one picture (a caption) is not `remembered`: the settings window offers no
    default for it, the main window asks for it with each picture.
    """

    name: str
    kind: Kind
    help: str
    label: str = ""
    default: Any = None
    setting: str | None = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    remembered: bool = True
    client: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {KINDS}")
        if self.kind == "str" and self.max_length is None:
            object.__setattr__(self, "max_length", MAX_TEXT)

    @property
    def title(self) -> str:
        """The label a dialog shows: the declared one, else the name in words."""
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def flag(self) -> str:
        """The command-line spelling: `--true-cfg-scale`."""
        return "--" + self.name.replace("_", "-")

    def default_for(self, settings: Any = None) -> Any:
        """The value used when a request leaves the option out, under these settings: its
        settings field, else the user's saved default (if it still fits), else `default`."""
        if settings is None:
            return self.default
        if self.setting is not None:
            return getattr(settings, self.setting, self.default)
        saved = getattr(settings, "option_defaults", {}).get(self.name) if self.remembered else None
        if saved is not None:
            try:
                return self.check(saved)
            except BadRequest:  # written by an older release, or by hand
                return self.default
        return self.default

    def check(self, value: Any) -> Any:
        """The value, in its kind (a whole float becomes an int); BadRequest says what is wrong."""
        name = self.name
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise BadRequest(f"option {name} must be true or false, got {_shown(value)}")
        elif self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest(f"option {name} must be a number, got {_shown(value)}")
            if not math.isfinite(value):
                raise BadRequest(f"option {name} must be a finite number, got {_shown(value)}")
            if self.kind == "int":
                if float(value) != int(value):
                    raise BadRequest(f"option {name} must be a whole number, got {_shown(value)}")
                value = int(value)
            else:
                value = float(value)
        elif not isinstance(value, str):
            raise BadRequest(f"option {name} must be text, got {_shown(value)}")
        elif self.max_length is not None and len(value) > self.max_length:
            raise BadRequest(f"option {name} may be at most {self.max_length} characters, "
                             f"got {len(value)}")
        if self.choices and value not in self.choices:
            allowed = ", ".join(str(choice) for choice in self.choices)
            raise BadRequest(f"option {name} must be one of {allowed}, got {_shown(value)}")
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise BadRequest(f"option {name} must be between {low:g} and {high:g}, got {value}")
        return value

    def to_json(self, settings: Any = None) -> dict[str, Any]:
        """The spec as `welcome` sends it (docs/protocol.md, "Backend options")."""
        body: dict[str, Any] = {"name": self.name, "type": self.kind, "label": self.title,
                                "help": self.help, "default": self.default_for(settings)}
        if self.choices:
            body["choices"] = list(self.choices)
        if self.minimum is not None:
            body["minimum"] = self.minimum
        if self.maximum is not None:
            body["maximum"] = self.maximum
        if self.max_length is not None:
            body["max_length"] = self.max_length
        return body


@dataclass(frozen=True)
class OptionPreset:
    """A named set of option values a client offers as one choice ("Fast", "Best").

    Declared with the options it sets, so a client's quality menu comes from `welcome` like
    its option controls do; a value the user sets on its own control wins over the preset's.
    """

    name: str
    label: str
    values: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "options": dict(self.values)}


class OptionSchema:
    """The ordered options of one backend (or, via `union`, of every backend `auto` may pick),
    and the presets it offers over them."""

    def __init__(self, specs: Iterable[OptionSpec] = (),
                 presets: Iterable[OptionPreset] = ()) -> None:
        self.specs: tuple[OptionSpec, ...] = tuple(specs)
        self._by_name: dict[str, list[OptionSpec]] = {}
        for spec in self.specs:
            self._by_name.setdefault(spec.name, []).append(spec)
        self.presets: tuple[OptionPreset, ...] = tuple(presets)
        for preset in self.presets:  # a preset a client sends must pass the specs
            self.validate(preset.values, client=True)

    @classmethod
    def union(cls, schemas: Iterable[OptionSchema]) -> OptionSchema:
        """Every backend's options: a value must then pass each spec that declares its name."""
        return cls(spec for schema in schemas for spec in schema.specs)

    def __iter__(self) -> Iterator[OptionSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> OptionSpec | None:
        found = self._by_name.get(name)
        return found[0] if found else None

    def validate(self, options: Mapping[str, Any] | None, others: Collection[str] = (),
                 client: bool = False) -> dict[str, Any]:
        """The checked options (None values dropped). Names in `others` (another backend's,
        when `auto` picked this one) are dropped; any other unknown name is refused, and with
        `client` (a bridge client asks) so is an option only the local user may set."""
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise BadRequest("options must be an object of name: value")
        checked: dict[str, Any] = {}
        for name, value in options.items():
            specs = self._by_name.get(name) if isinstance(name, str) else None
            if specs is not None and client and not all(spec.client for spec in specs):
                raise BadRequest(f"option {name} can only be set on the computer running "
                                 "LayerLift, not over the bridge")
            if specs is None:
                if name in others:
                    continue
                known = ", ".join(self._by_name) or "none"
                raise BadRequest(f"unknown option {str(name)[:40]!r}; the options are: {known}")
            if value is None:
                continue
            for spec in specs:
                value = spec.check(value)
            checked[name] = value
        return checked

    def resolve(self, options: Mapping[str, Any] | None, settings: Any = None) -> dict[str, Any]:
        """Every option's value: the request's (checked), else its default under `settings`."""
        values = self.validate(options)
        return {spec.name: values.get(spec.name, spec.default_for(settings))
                for spec in self.specs}

    def to_json(self, settings: Any = None) -> list[dict[str, Any]]:
        """The specs a bridge client may set, as `welcome` lists them."""
        return [spec.to_json(settings) for spec in self.specs if spec.client]

    def presets_json(self) -> list[dict[str, Any]]:
        """The presets, as `welcome` lists them."""
        return [preset.to_json() for preset in self.presets]


NO_OPTIONS = OptionSchema()
