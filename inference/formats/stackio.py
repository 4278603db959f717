"""Choose the layered format from the target path, for writing and for reading back.

Users type output paths on the command line and in dialogs, so the rules are the ones a
person expects: the suffix picks PSD or OpenRaster, and a folder (an existing one, a path
ending in a slash, or a name with no suffix) gets the PNG-folder form.
"""

from __future__ import annotations

import os
from pathlib import Path

from layerlift.inference.errors import BadRequest, InputError, UnsupportedFormat
from layerlift.inference.formats import sniff
from layerlift.inference.formats.ora import read_ora, write_ora
from layerlift.inference.formats.pngdir import MANIFEST, read_png_dir, write_png_dir
from layerlift.inference.formats.psd import read_psd, write_psd
from layerlift.inference.formats.reader import MAX_PIXELS
from layerlift.inference.layers import LayerStack

SUPPORTED_OUTPUTS = (".psd", ".ora", "a folder (path ending in '/')")


def output_kind(path: str | os.PathLike[str]) -> str:
    """'psd', 'ora' or 'dir' for a write target; `BadRequest` for anything else."""
    text = os.fspath(path)
    separators = tuple(sep for sep in (os.sep, os.altsep, "/") if sep)
    if text.endswith(separators):
        return "dir"
    target = Path(text)
    if target.is_dir():
        return "dir"
    suffix = target.suffix.lower()
    if suffix == "":
        return "dir"
    if suffix in (".psd", ".ora"):
        return suffix[1:]
    raise BadRequest(
        f"cannot write layers to '{target.name}': '{target.suffix}' is not a layered format "
        f"LayerLift writes; use a .psd or .ora file, or a folder (a path ending in '/')"
    )


def write_stack(
    stack: LayerStack, path: str | os.PathLike[str], *, group_name: str | None = None
) -> list[Path]:
    """Write `stack` to `path` as PSD, ORA or a PNG folder, atomically; returns the files."""
    kind = output_kind(path)
    if kind == "psd":
        return write_psd(stack, path, group_name=group_name)
    if kind == "ora":
        return write_ora(stack, path, group_name=group_name)
    return write_png_dir(stack, path, group_name=group_name)


def read_stack(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> LayerStack:
    """Read a stack back from a PSD, an ORA, or a PNG folder (or its `stack.json`)."""
    source = Path(path)
    if not source.exists():
        raise InputError(f"no such file or folder: '{source}'")
    if source.is_dir():
        return read_png_dir(source, max_pixels=max_pixels)
    if source.name == MANIFEST:
        return read_png_dir(source.parent, max_pixels=max_pixels)
    try:
        with open(source, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise InputError(f"cannot read '{source}': {exc.strerror or exc}") from exc
    kind = sniff.supported_format(head)
    suffix = source.suffix.lower()
    # A file named .psd/.ora goes to its reader even when its bytes disagree, so the user
    # hears "damaged PSD" rather than "unsupported".
    if kind == "PSD" or (kind is None and suffix == ".psd"):
        return read_psd(source, max_pixels=max_pixels)
    if kind == "ORA" or (kind is None and suffix == ".ora"):
        return read_ora(source, max_pixels=max_pixels)
    raise UnsupportedFormat(
        f"'{source}' is not a layered file LayerLift reads back; use a .psd, an .ora, or a "
        "folder written by LayerLift"
    )
