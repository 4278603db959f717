"""Which third-party components a built bundle holds, under which licences; writes NOTICE.

The list is read from the bundle itself, not from a hand-kept list: the pure-Python modules
in the executable's PYZ archive, and every file under `_internal/`, each attributed to the
Python distribution whose RECORD lists it (the build environment's metadata), to the Python
runtime, or to a native library known to the table below. A file nobody claims is an
error, so a new dependency cannot slip into the bundle without a line in NOTICE.

    python packaging/notice.py dist/layerlift --write NOTICE     # regenerate NOTICE
    python packaging/notice.py dist/layerlift --check NOTICE     # exit 1 if anything is missing

Run it with the interpreter that built the bundle (it reads that environment's metadata and
PyInstaller's archive reader).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import sys
import sysconfig
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

OWN_MODULES = frozenset({"layerlift"})
# PyInstaller's own run-time pieces (bootloader, boot modules, run-time hooks).
PYINSTALLER_MODULES = frozenset({"_pyi_rth_utils", "pyimod01_archive", "pyimod02_importers",
                                 "pyimod03_ctypes", "pyiboot01_bootstrap"})
OWN_DATA = ("layerlift/gimp_plugin/", "layerlift/photoshop_plugin/", "licenses/",
            "layerlift/bridge/wire.py", "layerlift/inference/job_states.py")

PYTHON = ("Python", "PSF-2.0")
PYINSTALLER = ("PyInstaller bootloader", "GPL-2.0-or-later WITH Bootloader-exception")

# Native libraries copied from the build machine (PyInstaller collects each binary's
# link-time dependencies, except the C library itself). Pattern on the file name ->
# (component, SPDX licence). Debian/Ubuntu names; extend the table when a build elsewhere
# brings in a library it does not know (the check says which).
NATIVE_LICENCES: tuple[tuple[str, str, str], ...] = (
    (r"libpython3\.\d+", *PYTHON),
    (r"libssl|libcrypto", "OpenSSL", "Apache-2.0"),
    (r"libffi", "libffi", "MIT"),
    (r"libz\.", "zlib", "Zlib"),
    (r"libbz2", "bzip2", "bzip2-1.0.6"),
    (r"liblzma", "xz (liblzma)", "0BSD"),
    (r"libexpat", "Expat", "MIT"),
    (r"libuuid|libblkid|libmount", "util-linux libraries", "BSD-3-Clause"),
    (r"libmpdec", "mpdecimal", "BSD-2-Clause"),
    (r"libsqlite3", "SQLite", "blessing"),
    (r"libstdc\+\+|libgcc_s|libgomp", "GCC runtime libraries",
     "GPL-3.0-or-later WITH GCC-exception-3.1"),
    (r"libglib|libgthread|libgobject|libgio|libgmodule", "GLib", "LGPL-2.1-or-later"),
    (r"libpcre2", "PCRE2", "BSD-3-Clause WITH PCRE2-exception"),
    (r"libdbus-1", "D-Bus", "AFL-2.1 OR GPL-2.0-or-later"),
    (r"libsystemd", "libsystemd", "LGPL-2.1-or-later"),
    (r"libgcrypt", "Libgcrypt", "LGPL-2.1-or-later"),
    (r"libgpg-error", "libgpg-error", "LGPL-2.1-or-later"),
    (r"libcap\.", "libcap", "BSD-3-Clause OR GPL-2.0-only"),
    (r"liblz4", "LZ4", "BSD-2-Clause"),
    (r"libzstd", "Zstandard", "BSD-3-Clause OR GPL-2.0-only"),
    (r"libbsd", "libbsd", "BSD-3-Clause"),
    (r"libmd\.", "libmd", "BSD-3-Clause"),
    (r"libkrb5|libk5crypto|libgssapi_krb5|libkrb5support|libcom_err", "MIT Kerberos",
     "MIT"),
    (r"libkeyutils", "keyutils", "LGPL-2.1-or-later"),
    (r"libX11|libXau|libXdmcp|libXext|libXrender", "X.Org X11 libraries", "MIT"),
    (r"libxcb", "libxcb and xcb-util", "MIT"),
    (r"libxkbcommon", "libxkbcommon", "MIT"),
    (r"libfontconfig", "Fontconfig", "HPND-sell-variant"),
    (r"libfreetype", "FreeType", "FTL OR GPL-2.0-or-later"),
    (r"libpng16", "libpng", "libpng-2.0"),
    (r"libbrotli", "Brotli", "MIT"),
    (r"libharfbuzz", "HarfBuzz", "MIT"),
    (r"libjpeg", "libjpeg-turbo", "IJG AND BSD-3-Clause"),
    (r"libwayland", "Wayland", "MIT"),
    (r"libselinux", "libselinux", "LicenseRef-public-domain"),
    (r"libtinfo|libncurses", "ncurses", "X11"),
)


@dataclass
class Component:
    """One named thing in the bundle and the licence it comes under."""

    name: str
    licence: str
    version: str = ""
    kind: str = "python"  # python | native | runtime
    files: list[str] = field(default_factory=list)

    def vendored(self) -> list[str]:
        """Native libraries a wheel carries in its `<name>.libs/` folder (auditwheel)."""
        names = set()
        for item in self.files:
            match = re.match(r"(?:[^/]+\.libs|PySide6/Qt/lib)/(lib(?!Qt6)[A-Za-z0-9_+]+)", item)
            if match:
                names.add(match.group(1).rstrip("_"))
        return sorted(names, key=str.lower)

    def line(self) -> str:
        version = f" {self.version}" if self.version else ""
        text = f"- {self.name}{version}: {self.licence}"
        if self.vendored():
            text += "\n" + textwrap.fill(
                f"(with its own copies of {', '.join(self.vendored())}; see its licence "
                "file)", width=92, initial_indent="  ", subsequent_indent="  ")
        return text


def internal_dir(bundle: Path) -> Path:
    """Where a one-folder bundle keeps its libraries (PyInstaller >= 6: `_internal/`)."""
    inner = bundle / "_internal"
    return inner if inner.is_dir() else bundle


def executable(bundle: Path) -> Path:
    for name in ("layerlift", "layerlift.exe"):
        if (bundle / name).is_file():
            return bundle / name
    raise FileNotFoundError(f"no layerlift executable in {bundle}")


def pyz_modules(exe: Path) -> set[str]:
    """Top-level names of the modules frozen into the executable's archives."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(exe))
    names: set[str] = set()
    for name, entry in archive.toc.items():
        if entry[-1] == "z":
            names |= {module.split(".")[0] for module in archive.open_embedded_archive(name).toc}
        else:
            names.add(name.split(".")[0])
    return names


def bundle_files(bundle: Path) -> list[str]:
    """Every real file (no symlinks) under `_internal/`, as posix paths relative to it."""
    root = internal_dir(bundle)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.is_symlink())


def licence_of(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return expression
    short = (meta.get("License") or "").strip()
    if short and "\n" not in short and len(short) < 80:
        return short
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    return " OR ".join(classifiers) or "see the licence file"


def _record_index() -> dict[str, metadata.Distribution]:
    index: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        for path in dist.files or []:
            index.setdefault(str(path).replace("\\", "/"), dist)
    return index


def _native(name: str) -> tuple[str, str] | None:
    base = name.rsplit("/", 1)[-1]
    for pattern, component, licence in NATIVE_LICENCES:
        if re.match(pattern, base):
            return component, licence
    return None


def _is_python_runtime(rel: str) -> bool:
    return (rel == "base_library.zip" or re.match(r"python3\.\d+/", rel) is not None
            or re.match(r"libpython3\.\d+", rel) is not None)


def components(bundle: Path) -> tuple[list[Component], list[str]]:
    """(components in the bundle, files no rule accounts for)."""
    by_name: dict[str, Component] = {}

    def add(name: str, licence: str, version: str, kind: str, item: str) -> None:
        comp = by_name.setdefault(name, Component(name, licence, version, kind))
        comp.files.append(item)

    records = _record_index()
    owners = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    unknown: list[str] = []
    for module in sorted(pyz_modules(executable(bundle))):
        if module in OWN_MODULES or module in PYINSTALLER_MODULES or module in stdlib \
                or module.startswith("pyi_rth_") \
                or module.startswith("_sysconfigdata") or module in ("entry", "PYZ"):
            continue
        dists = owners.get(module)
        if not dists:
            unknown.append(f"module {module}")
            continue
        dist = metadata.distribution(dists[0])
        add(dist.metadata["Name"], licence_of(dist), dist.version, "python", module)
    for rel in bundle_files(bundle):
        if rel.startswith(OWN_DATA):
            continue
        dist = records.get(rel)
        if dist is not None:
            add(dist.metadata["Name"], licence_of(dist), dist.version, "python", rel)
        elif _is_python_runtime(rel):
            add(PYTHON[0], PYTHON[1], sys.version.split()[0], "runtime", rel)
        elif (native := _native(rel)) is not None:
            add(native[0], native[1], "", "native", rel)
        else:
            unknown.append(rel)
    add(PYTHON[0], PYTHON[1], sys.version.split()[0], "runtime", "interpreter")
    add(PYINSTALLER[0], PYINSTALLER[1], _pyinstaller_version(), "runtime", "bootloader")
    return sorted(by_name.values(), key=lambda c: (c.kind, c.name.lower())), unknown


def _pyinstaller_version() -> str:
    try:
        return metadata.version("pyinstaller")
    except metadata.PackageNotFoundError:
        return ""


HEADER = """\
LayerLift
Copyright the LayerLift authors. Licensed under the Apache License, Version 2.0.

The LayerLift desktop bundle (built with packaging/layerlift.spec) contains the third-party
components listed below, each under its own licence. Their licence texts are in the
bundle's `licenses/` folder. This list is generated from a built `cpu` bundle by
packaging/notice.py; tests/test_dist.py checks it names everything in the bundle.
"""

QT_NOTE = """\
Qt and Qt for Python (PySide6, shiboken6) are used under the GNU Lesser General Public
License v3 (LGPL-3.0-only). The bundle keeps them as separate, unmodified shared libraries
in `_internal/PySide6/`, which you may replace with your own builds of the same version.
Their sources: https://download.qt.io/official_releases/qt/ and
https://download.qt.io/official_releases/QtForPython/ (or write to the LayerLift authors).
The PySide6 wheel carries ICU (libicu*), under the Unicode License v3 (Unicode-3.0).
"""

GPU_NOTE = """\
The `gpu` flavour additionally bundles (see docs/packaging.md):
- PyTorch (torch) and torchvision: BSD-3-Clause
- NVIDIA CUDA runtime libraries shipped in the CUDA torch wheel (nvidia-*): NVIDIA
  Software License Agreement / CUDA Toolkit EULA (redistributable as part of an application)
- Triton: MIT
- diffusers, transformers, accelerate, safetensors, tokenizers, huggingface_hub: Apache-2.0
- their helpers (sympy BSD-3-Clause, mpmath BSD-3-Clause, networkx BSD-3-Clause, Jinja2
  BSD-3-Clause, regex Apache-2.0 AND CNRI-Python, tqdm MPL-2.0 AND MIT, PyYAML MIT,
  filelock Unlicense, fsspec BSD-3-Clause, requests Apache-2.0)
The Qwen-Image-Layered model weights are NOT bundled in either flavour. Users download them
from https://huggingface.co/Qwen/Qwen-Image-Layered under the licence stated on the model
card (Apache-2.0 at the time of writing).
"""


def render(comps: list[Component]) -> str:
    sections = {
        "runtime": "Runtime",
        "python": "Python packages",
        "native": "Native libraries (from the wheels above or the build machine)",
    }
    out = [HEADER]
    for kind, title in sections.items():
        out.append(f"\n{title}\n{'-' * len(title)}")
        out += [c.line() for c in comps if c.kind == kind]
    out += ["", QT_NOTE, GPU_NOTE]
    return "\n".join(out).rstrip() + "\n"


def missing(comps: list[Component], notice_text: str) -> list[str]:
    """Components the NOTICE does not name on a `- name[ version]: licence` line."""
    lines = [line.lower() for line in notice_text.splitlines() if line.startswith("- ")]
    return [c.name for c in comps
            if not any(line.startswith((f"- {c.name.lower()}:", f"- {c.name.lower()} "))
                       for line in lines)]


def problems(bundle: Path, notice_text: str) -> list[str]:
    comps, unknown = components(bundle)
    found = [f"not in NOTICE: {name}" for name in missing(comps, notice_text)]
    found += [f"no licence known for {item} (add it to packaging/notice.py)" for item in unknown]
    return found


def copy_licences(bundle: Path, comps: list[Component]) -> list[Path]:
    """Put each component's licence text into `<bundle>/licenses/<name>/`."""
    target = bundle / "licenses"
    shutil.rmtree(target, ignore_errors=True)
    written: list[Path] = []

    def put(name: str, source: Path, as_name: str | None = None) -> None:
        folder = target / re.sub(r"[^\w.+-]", "_", name)
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / (as_name or source.name)
        if source.is_file() and not dest.exists():
            shutil.copyfile(source, dest)
            written.append(dest)

    pattern = re.compile(r"licen[cs]e|copying|notice|authors", re.IGNORECASE)
    for comp in comps:
        if comp.kind != "python":
            continue
        dist = metadata.distribution(comp.name)
        for path in dist.files or []:
            if ".dist-info/" in str(path) and pattern.search(path.name):
                put(comp.name, Path(str(dist.locate_file(path))),
                    "__".join(Path(str(path)).parts[1:]))
    python_licence = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    put(PYTHON[0], python_licence)
    common = Path("/usr/share/common-licenses")
    for comp in comps:
        if "LGPL-3.0" in comp.licence:
            put(comp.name, common / "LGPL-3", "LGPL-3.0.txt")
            put(comp.name, common / "GPL-3", "GPL-3.0.txt")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="the one-folder bundle (dist/layerlift)")
    parser.add_argument("--write", type=Path, help="write the NOTICE file here")
    parser.add_argument("--check", type=Path, help="fail if this NOTICE misses a component")
    args = parser.parse_args(argv)
    comps, unknown = components(args.bundle)
    if unknown:
        for item in unknown:
            print(f"error: no licence known for {item}", file=sys.stderr)
        return 1
    if args.write:
        args.write.write_text(render(comps), encoding="utf-8")
        print(f"wrote {args.write} ({len(comps)} components)")
    if args.check:
        found = problems(args.bundle, args.check.read_text(encoding="utf-8"))
        for problem in found:
            print(f"error: {problem}", file=sys.stderr)
        if found:
            return 1
        print(f"{args.check} names all {len(comps)} components of {args.bundle}")
    if not (args.write or args.check):
        print(render(comps), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
