"""Drop unwanted files from a PyInstaller analysis, and the shared libraries only they needed.

PySide6's hooks collect every Qt plug-in, and PyInstaller then collects each plug-in's
link-time dependencies: the GTK platform theme alone brings GTK, Pango, Cairo and a dozen
more system libraries. Filtering the plug-ins out after the analysis leaves those libraries
behind, so this removes a library too when nothing that stays links to it.

Conservative by construction: a library goes only when it is reachable from a dropped file
and not from anything kept (every extension module and every other library counts as
kept, including those loaded with ctypes, which no link-time scan can see).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

# A PyInstaller TOC entry: (path inside the bundle, source path or link target, typecode).
Entry = tuple[str, str, str]
ImportsOf = Callable[[str], Iterable[tuple[str, str | None]]]


def _closure(start: Iterable[Entry], by_source: dict[str, Entry], by_name: dict[str, Entry],
             imports_of: ImportsOf) -> set[Entry]:
    """Every binary entry reachable from `start` through link-time imports."""
    seen: set[Entry] = set()
    todo = list(start)
    while todo:
        entry = todo.pop()
        if entry in seen:
            continue
        seen.add(entry)
        for name, fullpath in imports_of(entry[1]):
            found = None
            if fullpath:
                found = by_source.get(os.path.realpath(fullpath))
            found = found or by_name.get(os.path.basename(name))
            if found is not None and found not in seen:
                todo.append(found)
    return seen


def prune(binaries: list[Entry], datas: list[Entry], keep: Callable[[str], bool],
          imports_of: ImportsOf) -> tuple[list[Entry], list[Entry], list[str]]:
    """(binaries, datas, removed bundle paths) with `keep`-rejected files and their orphans
    gone; symlinks to a removed binary go too."""
    dropped = [e for e in binaries if not keep(e[0])]
    remaining = [e for e in binaries if keep(e[0])]
    by_source = {os.path.realpath(e[1]): e for e in binaries}
    by_name = {os.path.basename(e[0]): e for e in binaries}
    for link in datas:  # a library is often linked by its soname, a symlink in the bundle
        if link[2] == "SYMLINK":
            target = next((e for e in binaries if e[0] == link[1]), None)
            if target is not None:
                by_name.setdefault(os.path.basename(link[0]), target)
    from_dropped = _closure(dropped, by_source, by_name, imports_of)
    roots = [e for e in remaining if e not in from_dropped or e[2] == "EXTENSION"]
    from_kept = _closure(roots, by_source, by_name, imports_of)
    orphans = {e for e in remaining if e in from_dropped and e not in from_kept}
    kept_binaries = [e for e in remaining if e not in orphans]
    kept_names = {e[0] for e in kept_binaries}
    all_binary_names = {e[0] for e in binaries}
    kept_datas = [
        e for e in datas
        if keep(e[0]) and not (e[2] == "SYMLINK" and e[1] in all_binary_names
                               and e[1] not in kept_names)
    ]
    removed = sorted({e[0] for e in dropped} | {e[0] for e in orphans}
                     | ({e[0] for e in datas} - {e[0] for e in kept_datas}))
    return kept_binaries, kept_datas, removed
