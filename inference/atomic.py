"""Crash-safe file writes.

A result file that a user (or the job runner) finds under its final name must be complete:
a half-written PSD opens as garbage in Photoshop and a half-written manifest makes a job
look finished when it is not. So every writer here fills a hidden temporary file in the
target's own folder (same file system, so the final rename is atomic), flushes it to disk,
and only then renames it over the target. If anything raises on the way, the temporary
file is removed and the target keeps whatever it held before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def temp_path_for(target: Path) -> Path:
    """A fresh, hidden, empty file next to `target` that the caller must rename or remove."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(name)


def public_mode(target: Path) -> int:
    """The permissions a user's output at `target` should get: those of the file it
    replaces, else what a new file gets under the umask.

    The staged files here are made by mkstemp, private (0600), and keep that mode when
    renamed: right for tokens and settings, wrong for a PSD the user shares. Writers of
    user files apply this mode to the finished file.
    """
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def set_mode(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError, NotImplementedError):
        os.chmod(path, mode)


def fsync_file(path: Path) -> None:
    """Flush `path` to disk, so a rename after a crash never exposes an empty file."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open folders, and the
    # rename is already atomic there, so a failure here is not worth reporting.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(target)
    try:
        yield temp
        fsync_file(temp)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """Yield a binary file object; on success its bytes replace `target` atomically."""
    with staged_file(target) as temp, open(temp, "wb") as handle:
        yield handle


def publish_new(temp: Path, target: Path, mode: int | None = None) -> None:
    """Give the finished file `temp` the name `target` only if that name is free.

    A hard link fails atomically when `target` exists (`FileExistsError`), so a name the
    caller chose as free is never taken from a file that appeared meanwhile. File systems
    without hard links get a check and a rename, which is as close as they allow. `mode`,
    if given, is applied to the file first.
    """
    if mode is not None:
        set_mode(temp, mode)
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(f"'{target}' exists") from None
        os.replace(temp, target)
    else:
        with contextlib.suppress(OSError):
            temp.unlink()
    fsync_dir(target.parent)


def swap_in_folder(staging: Path, target: Path, aside: Path) -> None:
    """Put the finished folder `staging` at `target`, replacing what was there.

    The old folder is first renamed to `aside` (a hidden name the caller's clean-up
    recognises), so at every moment `target` is either the whole old folder or the whole
    new one; if the new one cannot be moved in, the old one is put back. Only then is the
    old copy removed.
    """
    had_old = os.path.lexists(target)
    if had_old:
        os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        if had_old:
            os.rename(aside, target)
        raise
    fsync_dir(target.parent)
    if had_old:
        shutil.rmtree(aside, ignore_errors=True)


def discard(paths: list[Path]) -> None:
    """Best-effort removal of temporary files after a failed multi-file write."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
