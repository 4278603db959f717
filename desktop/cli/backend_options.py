"""`layerlift decompose`'s backend flags, generated from the backends' option schemas.

Each declared option becomes one flag (`true_cfg_scale` -> `--true-cfg-scale`), grouped under
the backend that declares it, with its help, choices and range taken from the spec and its
value checked by the spec's own `check`, so the CLI accepts exactly what the bridge and the
backend accept. Reading the schemas imports the backend classes, never torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from layerlift.inference.backends import option_schemas
from layerlift.inference.backends.options import OptionSpec
from layerlift.inference.errors import BadRequest


def _parse(spec: OptionSpec) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value: Any = {"int": int, "float": float}.get(spec.kind, str)(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{spec.flag} takes a {spec.kind}, "
                                             f"not {text!r}") from None
        try:
            return spec.check(value)
        except BadRequest as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = spec.kind  # argparse names the type in its error messages
    return convert


def _help(spec: OptionSpec) -> str:
    parts = [spec.help]
    if spec.minimum is not None and spec.maximum is not None:
        parts.append(f"{spec.minimum:g} to {spec.maximum:g}")
    if spec.setting is not None:
        parts.append(f"default: the `{spec.setting}` setting")
    elif spec.default is not None and spec.default != " ":
        parts.append(f"default: {spec.default}")
    return "; ".join(parts).replace("%", "%%")


def add_backend_options(parser: argparse.ArgumentParser) -> list[str]:
    """Add one flag per declared option, grouped per backend; returns the option names.

    An option two backends declare gets one flag, in the first backend's group; the value
    must then suit both, which the schemas check when the job starts.
    """
    names: list[str] = []
    for backend, schema in option_schemas():
        group = None
        for spec in schema:
            if spec.name in names:
                continue
            names.append(spec.name)
            if group is None:
                group = parser.add_argument_group(f"{backend} backend options")
            kwargs: dict[str, Any] = {"dest": spec.name, "default": None, "help": _help(spec)}
            if spec.kind == "bool":
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = _parse(spec)
                if spec.choices:
                    kwargs["choices"] = list(spec.choices)
            group.add_argument(spec.flag, **kwargs)
    return names


def request_options(args: argparse.Namespace) -> dict[str, Any]:
    """The backend options the user gave on the command line (left-out flags are None)."""
    names = getattr(args, "backend_option_names", ())
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
