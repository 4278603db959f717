"""Which files in a folder LayerLift wrote itself, so it never overwrites or deletes others.

A folder output (the PNG layers, an installed plug-in) is written into only when it is
new, empty, or carries LayerLift's marker: a hidden `.layerlift-folder.json` that lists each
file LayerLift wrote there with the SHA-256 of the bytes it wrote. A `stack.json` proves
nothing (any tool, or a person, can write one), and the marker's hashes mean that a file
the user edited or replaced since is no longer LayerLift's: it is never overwritten or
deleted, and a write that would need to is refused with a sentence naming the file.

Files the user added to a LayerLift folder are left alone; only marked files are ever
replaced or removed. A marker that is damaged counts as no marker.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layerlift.inference.atomic import staged_file
from layerlift.inference.errors import BadRequest
from layerlift.inference.formats.safety import describe_mode

MARKER = ".layerlift-folder.json"
MARKER_FORMAT = "layerlift.folder"
MARKER_VERSION = 1
# Files desktop shells drop into any folder they show; their presence does not make a
# folder "the user's", and LayerLift never touches them.
SHELL_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a regular file (symlinks are not LayerLift's), or None."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_marker(folder: Path) -> dict[str, list[str]] | None:
    """{file name: hashes LayerLift wrote under it} from the folder's marker, or None."""
    path = folder / MARKER
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            data = json.loads(handle.read(1 << 22).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        return None
    files = data.get("files")
    if not isinstance(files, dict):
        return None
    marked: dict[str, list[str]] = {}
    for name, hashes in files.items():
        if not _plain(name) or not isinstance(hashes, list):
            continue
        marked[name] = [h for h in hashes if isinstance(h, str)]
    return marked


def write_marker(folder: Path, files: Mapping[str, Iterable[str]]) -> None:
    """Record (atomically) that LayerLift wrote `files` ({name: hashes}) into `folder`."""
    body = {
        "format": MARKER_FORMAT,
        "version": MARKER_VERSION,
        "note": "LayerLift wrote the files listed here and may replace or remove them; "
                "it leaves every other file in this folder alone.",
        "files": {name: sorted(set(hashes)) for name, hashes in sorted(files.items())},
    }
    with staged_file(folder / MARKER) as temp:
        temp.write_bytes(json.dumps(body, indent=1).encode("utf-8"))


def _plain(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and name not in (".", "..", MARKER)
        and "/" not in name
        and "\\" not in name
        and name == os.path.basename(name)
    )


@dataclass
class FolderClaim:
    """A folder LayerLift may write into, and the files in it that are LayerLift's."""

    folder: Path
    exists: bool
    marked: bool
    # name -> hash of the file as it is now, for every marked file still as LayerLift wrote it
    owned: dict[str, str] = field(default_factory=dict)


def _others(entries: Iterable[str]) -> list[str]:
    return sorted(name for name in entries if name not in SHELL_FILES and name != MARKER)


def claim_folder(folder: str | os.PathLike[str], planned: Iterable[str]) -> FolderClaim:
    """Check that LayerLift may write `planned` file names into `folder`; reads, never writes.

    Allowed: a folder that does not exist yet, an empty one, or one with LayerLift's marker
    in which every planned name is either absent or a file LayerLift wrote and nobody has
    changed since. Anything else is a `BadRequest` that names the folder and a file in it.
    """
    path = Path(folder)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return FolderClaim(path, exists=False, marked=False)
    except OSError as exc:
        raise BadRequest(f"cannot use the folder '{path}': {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(mode):
        raise BadRequest(f"'{path}' is {describe_mode(mode)}, not a folder")
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise BadRequest(f"cannot list the folder '{path}': {exc.strerror or exc}") from exc
    marker = read_marker(path)
    others = _others(entries)
    if marker is None:
        if not others:
            return FolderClaim(path, exists=True, marked=False)
        shown = ", ".join(f"'{name}'" for name in others[:3]) + (", ..." if len(others) > 3
                                                                 else "")
        raise BadRequest(
            f"the folder '{path}' already holds files LayerLift did not write ({shown}); "
            "LayerLift writes layer files only into a new or empty folder, or one it wrote "
            "itself: choose another folder (a path ending in '/' that does not exist yet is "
            "made for you)"
        )
    owned: dict[str, str] = {}
    for name, hashes in marker.items():
        current = file_sha256(path / name)
        if current is not None and current in hashes:
            owned[name] = current
    for name in planned:
        if name in owned:
            continue
        try:
            os.lstat(path / name)
        except FileNotFoundError:
            continue
        except OSError:
            pass
        raise BadRequest(
            f"'{path / name}' was not written by LayerLift, or was changed since it was; "
            "LayerLift will not overwrite it: choose another folder"
        )
    return FolderClaim(path, exists=True, marked=True, owned=owned)
