"""Choose the layered format from the target path, for writing and for reading back.

Users type output paths on the command line and in dialogs, so the rules are few and
explicit, and everything else is refused with the accepted forms:

- a path ending in '/' (or the platform's separator), or an existing folder: a folder of
  PNG layers (an existing folder named like a layered file, 'out.psd', is refused: it is
  almost surely a mistyped file name; 'out.psd/' writes into it);
- a name ending in .psd, .psb or .ora (any case): that layered file;
- a bare '.psd' (a hidden name with no stem) is refused rather than becoming a hidden
  folder, and so is anything else: no suffix, another suffix, an empty path, a device.

`check_output` applies the rules and the safety checks of `safety.check_write_target`
without writing anything, so a command can refuse a bad target before any work;
`write_stack` applies them again when it writes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from layerlift.inference.atomic import discard, public_mode, publish_new, set_mode, temp_path_for
from layerlift.inference.errors import BadRequest, InputError, UnsupportedFormat
from layerlift.inference.formats import sniff
from layerlift.inference.formats.ora import read_ora, write_ora
from layerlift.inference.formats.ownership import claim_folder
from layerlift.inference.formats.pngdir import MANIFEST, read_png_dir, write_png_dir
from layerlift.inference.formats.psd import read_psd, write_psd
from layerlift.inference.formats.safety import (
    OUTPUT_FORMS,
    NotRegularFile,
    check_write_target,
    describe_mode,
    open_regular,
)
from layerlift.inference.input_check import MAX_PIXELS
from layerlift.inference.layers import LayerStack

SUPPORTED_OUTPUTS = (".psd", ".psb", ".ora", "a folder (path ending in '/')")
LAYERED_SUFFIXES = (".psd", ".psb", ".ora")


@dataclass(frozen=True)
class OutputTarget:
    """A checked write target: `kind` is 'psd', 'psb', 'ora' or 'dir'."""

    path: Path
    kind: str


def _ends_with_separator(text: str) -> bool:
    return text.endswith(tuple(sep for sep in (os.sep, os.altsep, "/") if sep))


def output_kind(path: str | os.PathLike[str]) -> str:
    """'psd', 'psb', 'ora' or 'dir' for a write target; `BadRequest` for anything else."""
    text = os.fspath(path)
    if not text.strip():
        raise BadRequest(f"the output path is empty; give {OUTPUT_FORMS}")
    if _ends_with_separator(text):
        return "dir"
    target = Path(text)
    suffix = target.suffix.lower()
    try:
        mode: int | None = os.stat(target).st_mode
    except (OSError, ValueError):
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        if suffix in LAYERED_SUFFIXES:
            raise BadRequest(
                f"'{target}' is an existing folder, not a {suffix} file; to write the layer "
                f"PNGs into that folder, end the path with '/' ('{text}/')"
            )
        return "dir"
    if mode is not None and not stat.S_ISREG(mode):
        raise BadRequest(
            f"'{target}' is {describe_mode(mode)}, not a file LayerLift can write; "
            f"give {OUTPUT_FORMS}"
        )
    if target.name.lower() in LAYERED_SUFFIXES:
        raise BadRequest(
            f"'{target.name}' has no name before its suffix (it would be a hidden file); "
            f"give a name such as 'picture{target.name.lower()}'"
        )
    if suffix in LAYERED_SUFFIXES:
        return suffix[1:]
    shown = f"'{target.suffix}' is not a layered format LayerLift writes" if suffix else \
        "it has no .psd, .psb or .ora suffix and does not end in '/'"
    raise BadRequest(f"cannot write layers to '{target.name}': {shown}; give {OUTPUT_FORMS}")


def check_output(
    path: str | os.PathLike[str] | OutputTarget,
    *,
    sources: tuple[str | os.PathLike[str], ...] = (),
) -> OutputTarget:
    """The checked target for `path`, or `BadRequest` saying why it cannot be written.

    Writes nothing except a probe file, created and removed at once, that proves the
    folder is writable. `sources` are the inputs, never to be written over. An
    `OutputTarget` (from an earlier check) keeps its kind and is checked again.
    """
    if isinstance(path, OutputTarget):
        kind, target = path.kind, path.path
    else:
        kind, target = output_kind(path), Path(path)
    check_write_target(target, folder=kind == "dir", sources=sources)
    if kind == "dir":
        claim_folder(target, ())
    return OutputTarget(target, kind)


def write_stack(
    stack: LayerStack,
    path: str | os.PathLike[str] | OutputTarget,
    *,
    group_name: str | None = None,
    sources: tuple[str | os.PathLike[str], ...] = (),
    overwrite: bool = True,
) -> list[Path]:
    """Write `stack` to `path` as PSD, PSB, ORA or a PNG folder, atomically; returns the files.

    The target is checked as `check_output` does (never one of `sources`). A folder is
    written only if it is new, empty or LayerLift's own (see `ownership`). With
    `overwrite=False` an existing file is never replaced: `FileExistsError` instead, for a
    caller that chose the name itself.
    """
    target = check_output(path, sources=sources)
    if target.kind == "dir":
        return write_png_dir(stack, target.path, group_name=group_name)
    writer = write_ora if target.kind == "ora" else write_psd
    mode = public_mode(target.path)
    if overwrite:
        written = writer(stack, target.path, group_name=group_name)
        set_mode(target.path, mode)  # the staged file was private (0600)
        return written
    if os.path.lexists(target.path):
        raise FileExistsError(f"'{target.path}' exists")
    target.path.parent.mkdir(parents=True, exist_ok=True)
    # The writer fills a hidden file beside the target (same unique stem, the target's own
    # suffix, which picks PSD or PSB), which then takes the name only if nothing has
    # appeared under it meanwhile.
    reserved = temp_path_for(target.path)
    staging = reserved.with_name(reserved.name + target.path.suffix)
    try:
        writer(stack, staging, group_name=group_name)
        publish_new(staging, target.path, mode)
    finally:
        discard([reserved, staging])
    return [target.path]


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
        with open_regular(source) as handle:
            head = handle.read(64)
    except NotRegularFile:
        raise
    except OSError as exc:
        raise InputError(f"cannot read '{source}': {exc.strerror or exc}") from exc
    kind = sniff.supported_format(head)
    suffix = source.suffix.lower()
    # A file named .psd/.ora goes to its reader even when its bytes disagree, so the user
    # hears "damaged PSD" rather than "unsupported".
    if kind == "PSD" or (kind is None and suffix in (".psd", ".psb")):
        return read_psd(source, max_pixels=max_pixels)
    if kind == "ORA" or (kind is None and suffix == ".ora"):
        return read_ora(source, max_pixels=max_pixels)
    raise UnsupportedFormat(
        f"'{source}' is not a layered file LayerLift reads back; use a .psd, .psb, .ora, or a "
        "folder written by LayerLift"
    )
