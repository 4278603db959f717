"""A finished job's layer stack as the job store keeps it: `result.json` plus one file a layer.

Not a user-facing format (users get PSD, ORA or a PNG folder): this one exists to be written
and read back fast, because the store writes every result before the job is announced. The
manifest holds what `read_png_dir` gives back (canvas size, each layer's name, offset, size,
visibility and JSON-safe meta, the stack's JSON-safe meta); each layer's pixels, trimmed, are
in a `formats.layerfile` file. A fully transparent layer has no file (`"file": null`, 0x0).

Layers are written and read in parallel, one layer per thread (zlib, file writes and reads
release the GIL), biggest first so the threads finish together. Every file is flushed to
disk (fsync) before the folder is complete. The folder itself is not made atomic here: the
job store builds it inside a temporary job folder that is renamed into place when whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from layerlift.inference.atomic import fsync_dir
from layerlift.inference.errors import CorruptImage, InputError
from layerlift.inference.formats.layerfile import read_layer, write_layer
from layerlift.inference.formats.manifest import stack_manifest
from layerlift.inference.input_check import MAX_PIXELS
from layerlift.inference.layers import Layer, LayerStack

MANIFEST = "result.json"
FORMAT_ID = "layerlift.result"
VERSION = 1
T = TypeVar("T")


def _file_name(index: int, count: int) -> str:
    """The file of layer `index` of `count`: the only names a manifest may give."""
    return f"{index:0{max(3, len(str(count - 1)))}d}.layer"


def _file_names(stack: LayerStack) -> list[str | None]:
    count = len(stack.layers)
    return [
        _file_name(index, count) if layer.width and layer.height else None
        for index, layer in enumerate(stack.layers)
    ]


def _run_biggest_first(tasks: list[tuple[int, Callable[[], T]]]) -> list[T]:
    """Results of `tasks` ((size, work) pairs) in their order, run biggest first in threads."""
    from layerlift.inference.compose import WORKERS

    if len(tasks) <= 1 or WORKERS == 1:
        return [work() for _size, work in tasks]
    order = sorted(range(len(tasks)), key=lambda index: -tasks[index][0])
    with ThreadPoolExecutor(min(WORKERS, len(tasks)), thread_name_prefix="layerlift-store") as pool:
        futures = {index: pool.submit(tasks[index][1]) for index in order}
        return [futures[index].result() for index in range(len(tasks))]


def _write_one(pixels: np.ndarray, path: Path) -> int:
    with open(path, "xb") as handle:
        size = write_layer(pixels, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return size


def write_result_dir(stack: LayerStack, folder: str | Path) -> int:
    """Write `stack`, trimmed, into the new folder `folder`; returns the bytes written."""
    target = Path(folder)
    trimmed = stack.trimmed()
    files = _file_names(trimmed)
    target.mkdir()
    tasks = [
        (layer.pixels.nbytes, partial(_write_one, layer.pixels, target / file))
        for layer, file in zip(trimmed.layers, files, strict=True)
        if file is not None
    ]
    total = sum(_run_biggest_first(tasks))
    manifest = stack_manifest(trimmed, files, FORMAT_ID, VERSION)
    data = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
    with open(target / MANIFEST, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(target)
    return total + len(data)


def _whole(entry: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptImage(f"{where}: '{key}' must be a whole number, not {value!r}")
    return value


def _entry(entry: Any, where: str, index: int, count: int) -> tuple[dict[str, Any], str | None]:
    """A manifest layer entry checked: (Layer keyword arguments without pixels, file)."""
    if not isinstance(entry, dict):
        raise CorruptImage(f"{where} is not an object")
    name, file = entry.get("name"), entry.get("file")
    visible, meta = entry.get("visible", True), entry.get("meta", {})
    if not isinstance(name, str) or not isinstance(visible, bool) or not isinstance(meta, dict):
        raise CorruptImage(f"{where}: 'name' must be text, 'visible' true/false, 'meta' an object")
    width, height = _whole(entry, "width", where), _whole(entry, "height", where)
    if file is not None and (file != _file_name(index, count) or width < 1 or height < 1):
        # Only the names `write_result_dir` gives: nothing outside the folder is ever read.
        raise CorruptImage(f"{where}: {file!r} is not this layer's file")
    fields = {"name": name, "x": _whole(entry, "x", where, 0), "y": _whole(entry, "y", where, 0),
              "visible": visible, "meta": dict(meta), "width": width, "height": height}
    return fields, file


def _read_one(path: Path, width: int, height: int, max_pixels: int) -> np.ndarray:
    where = f"'{path}'"
    try:
        with open(path, "rb", buffering=0) as handle:
            pixels = read_layer(handle, where, max_pixels)
            if handle.read(1):
                raise CorruptImage(f"{where} has bytes after its last band")
    except FileNotFoundError as exc:
        raise CorruptImage(f"{where} is missing from the result") from exc
    except OSError as exc:
        raise CorruptImage(f"{where} cannot be read: {exc.strerror or exc}") from exc
    if pixels.shape[:2] != (height, width):
        raise CorruptImage(
            f"{where} is {pixels.shape[1]} x {pixels.shape[0]} pixels but the manifest says "
            f"{width} x {height}"
        )
    return pixels


def read_result_dir(folder: str | Path, *, max_pixels: int | None = None) -> LayerStack:
    """The stack stored in `folder` by `write_result_dir`; `CorruptImage` if it is damaged."""
    source = Path(folder)
    where = f"'{source / MANIFEST}'"
    try:
        manifest = json.loads((source / MANIFEST).read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{where} is missing: this result was not written") from exc
    except (OSError, ValueError) as exc:
        raise CorruptImage(f"{where} is damaged: {exc}") from exc
    if (not isinstance(manifest, dict) or manifest.get("format") != FORMAT_ID
            or not isinstance(manifest.get("layers"), list)):
        raise CorruptImage(f"{where} does not describe a stored result")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CorruptImage(f"{where} was written by a newer LayerLift (format {version})")
    width, height = _whole(manifest, "width", where), _whole(manifest, "height", where)
    if width < 1 or height < 1:
        raise CorruptImage(f"{where} declares an empty canvas ({width} x {height})")
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    count = len(manifest["layers"])
    checked = [_entry(entry, f"{where}, layer {index}", index, count)
               for index, entry in enumerate(manifest["layers"])]
    tasks = [
        (fields["width"] * fields["height"],
         partial(_read_one, source / file, fields["width"], fields["height"], limit))
        for fields, file in checked
        if file is not None
    ]
    read = iter(_run_biggest_first(tasks))
    layers = []
    for fields, file in checked:
        del fields["width"], fields["height"]
        pixels = next(read) if file is not None else np.zeros((0, 0, 4), np.uint8)
        layers.append(Layer(pixels=pixels, **fields))
    meta = manifest.get("meta", {})
    return LayerStack(width, height, layers, dict(meta) if isinstance(meta, dict) else {})
