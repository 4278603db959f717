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
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def temp_path_for(target: Path) -> Path:
    """A fresh, hidden, empty file next to `target` that the caller must rename or remove."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(name)


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


def discard(paths: list[Path]) -> None:
    """Best-effort removal of temporary files after a failed multi-file write."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
