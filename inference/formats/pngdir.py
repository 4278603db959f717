"""A folder of PNGs plus a `stack.json` manifest: a layered export any tool can open.

Reading it back must give the same stack (names, offsets, visibility, order and the
JSON-safe part of `stack.meta`), and the job store still reads results it kept this way
before it had a format of its own (`formats.resultdir`).

Layout, bottom layer first: `00_background.png`, `01_<slug of name>.png`, ... each trimmed
to its alpha bounds. A fully transparent layer has no PNG (a PNG cannot be 0x0): its
manifest entry has `"file": null` and a 0x0 size at its offset.

The manifest is the commit record. New files are first written under temporary names; only
when all of them exist are they renamed into place, with the old manifest removed first and
the new one renamed in last. A folder with a `stack.json` is therefore always complete and
consistent, and a write that fails leaves the previous result untouched.

The folder is LayerLift's only when it was new or empty or carries LayerLift's marker
(`ownership.MARKER`, with a hash of each file written): a `stack.json` found in a user's
folder is never trusted to say which files may be replaced or removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
from layerlift.inference.atomic import (
    discard,
    fsync_dir,
    fsync_file,
    public_mode,
    set_mode,
    staged_file,
    temp_path_for,
)
from layerlift.inference.errors import CorruptImage, InputError
from layerlift.inference.formats.manifest import stack_manifest
from layerlift.inference.formats.ownership import (
    bytes_sha256,
    claim_folder,
    file_sha256,
    write_marker,
)
from layerlift.inference.formats.safety import open_regular
from layerlift.inference.input_check import MAX_PIXELS, check_size
from layerlift.inference.layers import Layer, LayerStack

MANIFEST = "stack.json"
FORMAT_ID = "layerlift.stack"
VERSION = 1


def slug(name: str, limit: int = 40) -> str:
    """A short ASCII file-name part for a layer name ('text: ÉTÉ 50%' -> 'text-ete-50')."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return cleaned[:limit].strip("-") or "layer"


def _plan_files(stack: LayerStack) -> list[str | None]:
    digits = max(2, len(str(max(len(stack.layers) - 1, 0))))
    return [
        f"{index:0{digits}d}_{slug(layer.name)}.png" if layer.width and layer.height else None
        for index, layer in enumerate(stack.layers)
    ]


def _manifest(stack: LayerStack, files: list[str | None], group_name: str | None) -> dict[str, Any]:
    manifest = stack_manifest(stack, files, FORMAT_ID, VERSION)
    if group_name is not None:
        manifest["group_name"] = group_name
    return manifest


def write_png_dir(
    stack: LayerStack, folder: str | Path, *, group_name: str | None = None
) -> list[Path]:
    """Write `stack` as trimmed PNGs plus `stack.json` in `folder`; returns the files written.

    The folder must be new, empty, or one LayerLift wrote (see `ownership`): files LayerLift
    did not write there are never overwritten or removed. The manifest is last in the
    returned list.
    """
    from layerlift.inference.formats.fastpng import write_png

    target = Path(folder)
    trimmed = stack.trimmed()
    files = _plan_files(trimmed)
    claim = claim_folder(target, [file for file in files if file] + [MANIFEST])
    target.mkdir(parents=True, exist_ok=True)
    if not claim.marked:
        # Marked before the first byte, so leftovers of a crash are still LayerLift's folder.
        write_marker(target, {})
    staged: list[tuple[Path, Path]] = []
    written: dict[str, str] = {}
    try:
        for layer, file in zip(trimmed.layers, files, strict=True):
            if file is None:
                continue
            final = target / file
            temp = temp_path_for(final)
            staged.append((temp, final))
            with open(temp, "wb") as handle:
                write_png(layer.pixels, handle)
            fsync_file(temp)
            written[file] = file_sha256(temp) or ""
        manifest = json.dumps(
            _manifest(trimmed, files, group_name), ensure_ascii=False, indent=1
        ).encode("utf-8")
    except BaseException:
        discard([temp for temp, _ in staged])
        raise
    written[MANIFEST] = bytes_sha256(manifest)

    owned = claim.owned
    stale = set(owned) - set(written)
    # Until the swap is done, both the old and the new bytes under a name are LayerLift's.
    during = {name: [digest, *([owned[name]] if name in owned else [])]
              for name, digest in written.items()}
    during.update({name: [owned[name]] for name in stale})
    write_marker(target, during)
    with contextlib.suppress(FileNotFoundError):
        (target / MANIFEST).unlink()  # LayerLift's own: claim_folder refuses any other
    new_file_mode = public_mode(target / MANIFEST)
    for temp, final in staged:
        set_mode(temp, public_mode(final))
        os.replace(temp, final)
    fsync_dir(target)
    with staged_file(target / MANIFEST) as temp:
        temp.write_bytes(manifest)
        set_mode(temp, new_file_mode)
    for name in stale:
        with contextlib.suppress(OSError):
            (target / name).unlink()
    write_marker(target, {name: [digest] for name, digest in written.items()})
    return [final for _, final in staged] + [target / MANIFEST]


def _is_plain_name(name: Any) -> bool:
    """A bare file name inside the folder: no separators, no '..', not hidden."""
    return (
        isinstance(name, str)
        and bool(name)
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and name == os.path.basename(name)
    )


def _int(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptImage(f"{where}: '{key}' must be a whole number, not {value!r}")
    return value


def _read_entry(folder: Path, entry: Any, index: int, max_pixels: int) -> Layer:
    from layerlift.inference.formats.reader import read_image

    where = f"'{folder / MANIFEST}', layer {index}"
    if not isinstance(entry, dict):
        raise CorruptImage(f"{where} is not an object")
    name, file = entry.get("name", ""), entry.get("file")
    if not isinstance(name, str):
        raise CorruptImage(f"{where}: the name must be text")
    x, y = _int(entry, "x", where), _int(entry, "y", where)
    width, height = _int(entry, "width", where), _int(entry, "height", where)
    visible = entry.get("visible", True)
    meta = entry.get("meta", {})
    if not isinstance(visible, bool) or not isinstance(meta, dict):
        raise CorruptImage(f"{where}: 'visible' must be true/false and 'meta' an object")
    if file is None or width == 0 or height == 0:
        pixels = np.zeros((0, 0, 4), np.uint8)
    elif not _is_plain_name(file):
        raise CorruptImage(f"{where}: '{file}' is not a plain file name inside the folder")
    else:
        pixels = read_image(folder / file, max_pixels=max_pixels).pixels
        if pixels.shape[:2] != (height, width):
            raise CorruptImage(
                f"{where}: '{file}' is {pixels.shape[1]} x {pixels.shape[0]} pixels but the "
                f"manifest says {width} x {height}"
            )
    return Layer(name, pixels, x, y, visible, dict(meta))


def read_png_dir(folder: str | Path, *, max_pixels: int | None = None) -> LayerStack:
    """The stack stored in `folder` by `write_png_dir`."""

    source = Path(folder)
    if not source.exists():
        raise InputError(f"no such folder: '{source}'")
    if not source.is_dir():
        raise InputError(f"'{source}' is not a folder")
    try:
        with open_regular(source / MANIFEST) as handle:
            manifest = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            f"'{source}' has no {MANIFEST}: it is not a LayerLift layer folder, or its "
            "writing did not finish"
        ) from exc
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise CorruptImage(f"'{source / MANIFEST}' is damaged: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise CorruptImage(f"'{source / MANIFEST}' does not describe a layer stack")
    version = manifest.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise CorruptImage(
            f"'{source / MANIFEST}' was written by a newer LayerLift (format {version})"
        )
    where = f"'{source / MANIFEST}'"
    width, height = _int(manifest, "width", where), _int(manifest, "height", where)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    check_size(width, height, label=f"the canvas of {where}", max_pixels=limit)
    layers = [
        _read_entry(source, entry, index, limit) for index, entry in enumerate(manifest["layers"])
    ]
    meta = manifest.get("meta", {})
    meta = dict(meta) if isinstance(meta, dict) else {}
    group_name = manifest.get("group_name")
    if isinstance(group_name, str):
        meta.setdefault("group_name", group_name)
    return LayerStack(width, height, layers, meta)
