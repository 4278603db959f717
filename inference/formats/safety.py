"""Nothing the user had is ever lost: read only regular files, write only where we may.

Reading: `open()` on a FIFO blocks until someone writes to it, and a device such as
`/dev/zero` never ends, so every path a user hands us is opened without blocking and
checked with `fstat` before a byte is read; anything but a regular file is refused with a
sentence that says what the path is.

Writing: before any work starts, a write target is checked the way the write will use it:
never the input (by identity, so a symlink or another spelling of the same path counts),
every existing parent a folder, the nearest existing folder really writable (probed with a
temporary file, since permission bits lie for root, ACLs and read-only mounts), and the
target itself a regular file or absent. A refusal is a `BadRequest`, which the command line
turns into exit 2 and a sentence.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from layerlift.inference.errors import BadRequest, InputError

# Fixed wording, shared with the messages of the command line and the window.
OUTPUT_FORMS = (
    "OUT.psd, OUT.psb or OUT.ora (a layered file), or a folder for PNG layers (a path "
    "ending in '/', or an existing folder)"
)


def describe_mode(mode: int) -> str:
    """What a file of this `st_mode` is, in words: 'a FIFO (named pipe)', 'a folder', ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


class NotRegularFile(InputError):
    """An input path that exists but is a folder, a device, a FIFO or a socket."""

    def __init__(self, label: str, what: str) -> None:
        if what == "a folder":
            message = f"'{label}' is a folder, not a picture"
        else:
            message = (
                f"'{label}' is {what}, not a regular file; LayerLift reads pictures only from "
                "regular files"
            )
        super().__init__(message)
        self.what = what


_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer
    | getattr(os, "O_NOCTTY", 0)  # a terminal device never becomes our controlling tty
)


def open_regular(path: str | os.PathLike[str], label: str | None = None) -> BinaryIO:
    """Open `path` for binary reading if, and only if, it is a regular file.

    Raises `NotRegularFile` for anything else (without blocking on a FIFO), and lets
    `OSError` (missing, permission denied) through for the caller to word.
    """
    label = str(path) if label is None else label
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        # A socket cannot be opened at all (ENXIO): say what it is, not "no such device".
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise exc from None
        if not stat.S_ISREG(mode):
            raise NotRegularFile(label, describe_mode(mode)) from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(label, describe_mode(mode))
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_input_file(path: str | os.PathLike[str]) -> None:
    """`InputError` unless `path` is a readable regular file (reads nothing)."""
    label = str(path)
    try:
        open_regular(path, label).close()
    except InputError:
        raise
    except OSError as exc:
        raise read_error(exc, label) from exc


def read_error(exc: OSError, label: str) -> InputError:
    """The sentence for an OS error met while opening or reading the input `label`."""
    if isinstance(exc, FileNotFoundError):
        return InputError(f"no such file: '{label}'")
    if isinstance(exc, PermissionError):
        return InputError(f"cannot read '{label}': permission denied")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"'{label}' is a folder, not a picture")
    if isinstance(exc, NotADirectoryError):
        return InputError(f"no such file: '{label}' (a part of the path is not a folder)")
    return InputError(f"cannot read '{label}': {exc.strerror or exc}")


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether `a` and `b` name the same file: by identity when both exist, else by path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    try:
        real_a, real_b = os.path.realpath(a), os.path.realpath(b)
    except (OSError, ValueError):
        return False
    return os.path.normcase(real_a) == os.path.normcase(real_b)


def _mode(path: Path) -> int | None:
    """`st_mode` of `path` (symlinks followed), or None when it does not exist."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def nearest_existing(path: Path) -> tuple[Path, int]:
    """The nearest ancestor of `path` (itself included) that exists, and its mode."""
    current = Path(os.path.abspath(path))
    while True:
        mode = _mode(current)
        if mode is not None:
            return current, mode
        if current.parent == current:
            return current, stat.S_IFDIR
        current = current.parent


def _blocking_parent(target: Path) -> tuple[Path, str] | None:
    """An ancestor of `target` that exists but is not a folder (so nothing can go under it)."""
    absolute = Path(os.path.abspath(target))
    for ancestor in reversed(absolute.parents):
        mode = _mode(ancestor)
        if mode is None:
            return None
        if not stat.S_ISDIR(mode):
            return ancestor, describe_mode(mode)
    return None


def probe_writable(folder: Path) -> None:
    """`BadRequest` unless a file can really be created in `folder` (made and removed)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".layerlift-probe-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, PermissionError):
            reason = "permission denied"
        elif exc.errno == errno.EROFS:
            reason = "it is on a read-only file system"
        elif isinstance(exc, FileNotFoundError):
            reason = "it does not accept new files"
        raise BadRequest(f"cannot write into '{folder}': {reason}") from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_write_target(
    target: str | os.PathLike[str],
    *,
    folder: bool,
    sources: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse, before any work, a write to `target` that would fail or destroy something.

    `folder` says whether `target` is a folder to write files into (else a file to write);
    `sources` are the inputs, which are never written over and never sit inside an output
    folder (its files could be overwritten or removed).
    """
    path = Path(target)
    for source in sources:
        if same_file(path, source):
            raise BadRequest(
                f"the output '{path}' is the input '{source}'; LayerLift never writes over "
                "its input: choose another output name"
            )
        if folder and same_file(Path(os.path.abspath(source)).parent, path):
            raise BadRequest(
                f"the output folder '{path}' holds the input '{source}'; choose another folder"
            )
    blocked = _blocking_parent(path)
    if blocked is not None:
        ancestor, what = blocked
        raise BadRequest(
            f"cannot write '{path}': '{ancestor}' is {what}, not a folder"
        )
    mode = _mode(path)
    if mode is not None:
        if folder and not stat.S_ISDIR(mode):
            raise BadRequest(
                f"'{path}' is {describe_mode(mode)}, not a folder to write the layer PNGs into"
            )
        if not folder and not stat.S_ISREG(mode):
            raise BadRequest(
                f"'{path}' is {describe_mode(mode)}, not a file LayerLift can write; "
                f"give {OUTPUT_FORMS}"
            )
    where, _ = nearest_existing(path if folder else path.parent)
    probe_writable(where)
