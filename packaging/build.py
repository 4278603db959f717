"""Build LayerLift's one-folder desktop bundle: `python packaging/build.py [--flavour cpu|gpu]`.

What `make dist` runs. In order: LayerLift installed into a staging folder exactly as its
wheel installs it (the `layerlift` package with the plug-ins as package data), PyInstaller on
packaging/layerlift.spec, debug symbols stripped from the interpreter's own libraries, the
licence texts and NOTICE copied in, and checks that fail the build when the `cpu` flavour
holds any torch file or the NOTICE misses a bundled component.

A build records a fingerprint of its inputs (LayerLift's sources, the installed
distributions, the Python version, the flavour) next to the bundle; when nothing changed the
next call reuses the bundle instead of spending a minute or more rebuilding (`--force`
rebuilds anyway). Run it with the interpreter whose packages should be bundled (.venv).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPEC = HERE / "layerlift.spec"
SOURCE_TREES = ("layerlift", "inference", "bridge", "desktop", "gimp_plugin/layerlift",
                "packaging", "setup.py", "pyproject.toml")
PANEL_FILES = ("photoshop_plugin/manifest.json", "photoshop_plugin/index.html",
               "photoshop_plugin/index.js", "photoshop_plugin/styles.css",
               "photoshop_plugin/src", "photoshop_plugin/icons", "NOTICE")


class DistError(Exception):
    """The bundle could not be built, or was built wrong."""


def load(name: str) -> ModuleType:
    """A module from packaging/ by path (`packaging` is also a PyPI library's name)."""
    qualified = f"layerlift_packaging_{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(qualified, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


flavours = load("flavours")


def _input_files() -> list[Path]:
    files: list[Path] = []
    for rel in (*SOURCE_TREES, *PANEL_FILES):
        path = REPO / rel
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in path.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted(files)


def fingerprint(flavour: str) -> str:
    """Changes whenever anything that goes into the bundle changes."""
    digest = hashlib.sha256()
    digest.update(f"{flavour}\n{sys.version}\n{platform.platform()}\n".encode())
    for path in _input_files():
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    # A set: with the checkout on sys.path, its own egg-info is found a second time.
    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()})
    digest.update("\n".join(dists).encode())
    return digest.hexdigest()


def bundle_dir(dist: Path, flavour: str) -> Path:
    return dist / flavours.bundle_name(flavour)


def stamp_path(dist: Path, flavour: str) -> Path:
    return dist / f"{flavours.bundle_name(flavour)}.build.json"


def up_to_date(dist: Path, flavour: str) -> dict | None:
    """The previous build's record when its bundle is still current, else None."""
    stamp = stamp_path(dist, flavour)
    exe = bundle_dir(dist, flavour) / flavours.executable_name()
    if not (stamp.is_file() and exe.is_file()):
        return None
    try:
        record = json.loads(stamp.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return record if record.get("fingerprint") == fingerprint(flavour) else None


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def forbidden_files(bundle: Path, flavour: str) -> list[str]:
    """Paths in the bundle (and modules in its archive) that the flavour must not hold."""
    names = flavours.forbidden_in(flavour)
    if not names:
        return []
    notice = load("notice")
    found = [p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
             if any(part.split(".")[0] in names or part.split("-")[0] in names
                    for part in p.relative_to(bundle).parts)]
    found += [f"module {m}" for m in sorted(notice.pyz_modules(bundle / flavours.executable_name()))
              if m in names]
    return found


def strip_interpreter(bundle: Path) -> int:
    """Drop debug sections from the Python runtime's own ELF files (a pyenv-built Python
    keeps them: about 25 MB). Wheels' libraries are left alone: auditwheel-patched files
    do not survive every `strip`. Returns the bytes saved."""
    strip = shutil.which("strip")
    if not strip or not sys.platform.startswith("linux"):
        return 0
    inner = load("notice").internal_dir(bundle)
    candidates = [*inner.glob("libpython3*.so*"), *inner.glob("python3.*/lib-dynload/*.so")]
    targets = [p for p in candidates if p.is_file() and not p.is_symlink()]
    before = sum(p.stat().st_size for p in targets)
    if targets:
        subprocess.run([strip, "--strip-debug", *map(str, targets)], check=True)
    return before - sum(p.stat().st_size for p in targets)


def stage_package(work: Path) -> Path:
    """Install LayerLift (no dependencies) into a fresh folder the way its wheel installs, so
    the bundle is built from the installed layout: one `layerlift` package, plug-ins as data."""
    stage = work / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--no-build-isolation", "--disable-pip-version-check", "--target", str(stage),
               str(REPO)]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if result.returncode != 0:
        raise DistError(f"staging the layerlift package failed:\n{result.stderr[-2000:]}")
    return stage


def run_pyinstaller(flavour: str, stage: Path, dist: Path, work: Path) -> None:
    if importlib.util.find_spec("PyInstaller") is None:
        raise DistError("PyInstaller is not installed in this environment: "
                        "pip install -e '.[dev]' (or pip install pyinstaller)")
    command = [sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm",
               "--distpath", str(dist), "--workpath", str(work / "pyinstaller" / flavour),
               "--log-level", "WARN", "--", "--flavour", flavour, "--stage", str(stage)]
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise DistError(f"PyInstaller failed (exit {result.returncode})")


def finish(bundle: Path, flavour: str) -> list[str]:
    """Licences and NOTICE into the bundle; returns what is wrong with it (empty if fine)."""
    notice = load("notice")
    comps, unknown = notice.components(bundle)
    notice.copy_licences(bundle, comps)
    source = REPO / "NOTICE"
    problems = [f"no licence known for {item} (add it to packaging/notice.py)"
                for item in unknown]
    if source.is_file():
        shutil.copyfile(source, bundle / "NOTICE")
        if flavour == "cpu":  # the checked-in NOTICE describes the cpu bundle
            problems += [f"NOTICE does not name {name}: regenerate it with "
                         f"`python packaging/notice.py {bundle} --write NOTICE`"
                         for name in notice.missing(comps, source.read_text(encoding="utf-8"))]
    else:
        problems.append("NOTICE is missing at the repository root")
    problems += [f"{flavour} bundle holds {path}" for path in forbidden_files(bundle, flavour)]
    return problems


def build(flavour: str = "cpu", dist: Path = REPO / "dist", work: Path = REPO / "build",
          force: bool = False, log=print) -> dict:
    """Build (or reuse) the bundle and return its record: path, seconds, bytes, reused."""
    flavours.check_flavour(flavour)
    dist, work = dist.resolve(), work.resolve()
    if not force and (record := up_to_date(dist, flavour)) is not None:
        log(f"{record['bundle']} is up to date (built in {record['build_s']:.0f} s); "
            "--force rebuilds it")
        return {**record, "reused": True}
    started = time.monotonic()
    # Taken before building: a source edited during the build makes the next call rebuild.
    inputs = fingerprint(flavour)
    stamp_path(dist, flavour).unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    run_pyinstaller(flavour, stage_package(work), dist, work)
    bundle = bundle_dir(dist, flavour)
    saved = strip_interpreter(bundle)
    problems = finish(bundle, flavour)
    if problems:
        raise DistError("the bundle is not right:\n  " + "\n  ".join(problems))
    record = {
        "bundle": str(bundle),
        "flavour": flavour,
        "fingerprint": inputs,
        "build_s": round(time.monotonic() - started, 1),
        "bytes": folder_size(bundle),
        "stripped_bytes": saved,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    stamp_path(dist, flavour).write_text(json.dumps(record, indent=2), encoding="utf-8")
    log(f"built {bundle} in {record['build_s']:.0f} s: {record['bytes'] / 2**20:.0f} MiB")
    return {**record, "reused": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the LayerLift one-folder bundle.")
    parser.add_argument("--flavour", choices=flavours.FLAVOURS, default="cpu")
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="output folder")
    parser.add_argument("--work", type=Path, default=REPO / "build", help="scratch folder")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    try:
        build(args.flavour, args.dist, args.work, args.force)
    except (DistError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
