"""Keep the C heap from handing numpy's temporaries back to the kernel during strip work.

The strip loops (`inference.compose`, `exact_recomposition`, `full_resolution`) create and free
tens of float arrays of a few hundred kilobytes per strip, thousands of strips per 4096 px
picture. glibc serves blocks that size with `mmap` or trims them off the heap top when they are
freed, so every strip gets fresh pages from the kernel and page-faults on each of them: measured
at 4096 x 4096 with four layers, a million faults and 1.4-2.3 s of system time in exact
recomposition alone, about as much as its arithmetic. Raising glibc's mmap and trim thresholds
while such a loop runs lets the freed blocks be reused (a few thousand faults).

`steady_heap()` raises them when a `with` block is first entered and, when the outermost
block ends, trims the heap once (`malloc_trim`), so a finished job still gives its memory
back. The thresholds stay raised afterwards: setting them at all turns off glibc's own
adaptive threshold, and putting the documented defaults back measured worse (2.5 million
faults) than leaving them. Anywhere other than glibc it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 32 MiB (glibc's own adaptive ceiling) come from the heap, and freed heap is
# kept until `malloc_trim` at the end of the outermost block.
_STEADY = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 1 << 30}

_lock = threading.Lock()
_depth = 0
_tuned = False


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (glibc and musl have it; anything else: skip)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_libc()


def _tune() -> None:
    global _tuned
    if _libc is not None and not _tuned:
        for parameter, value in _STEADY.items():
            _libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value))
    _tuned = True


@contextlib.contextmanager
def steady_heap() -> Iterator[None]:
    """Within the block, freed numpy temporaries stay in the process for reuse."""
    global _depth
    with _lock:
        _depth += 1
        _tune()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _libc is not None:
                _libc.malloc_trim(ctypes.c_size_t(0))
