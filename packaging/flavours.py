"""What goes into each flavour of the one-folder bundle, in one place.

layerlift.spec imports this (PyInstaller runs the spec with packaging/ on sys.path) and so
do the build script and the smoke test, so the rules the build applies and the rules the
test checks cannot drift apart. Nothing here imports PyInstaller.

Two flavours:
- `cpu`: the classic backend only. torch and the diffusion stack are excluded even when the
  build environment has them installed (the test virtualenv does), which keeps the bundle
  small; `--backend qwen` then says the libraries are not installed.
- `gpu`: adds torch, torchvision, diffusers, transformers and accelerate from the build
  environment (which must hold a CUDA torch wheel). Model weights are never bundled: the
  app finds them in the Hugging Face cache or a folder chosen in the settings.
"""

from __future__ import annotations

import fnmatch
import sys

FLAVOURS = ("cpu", "gpu")
APP_NAME = "layerlift"

# LayerLift's own packages whose modules are imported by string (the CLI's subcommands, the
# backend registry) and so are invisible to PyInstaller's import scan.
OWN_PACKAGES = ("layerlift",)

# Never useful at run time, whatever the flavour: test and dev tools, other Qt bindings, Tk.
ALWAYS_EXCLUDED = (
    "tests", "bench", "pytest", "_pytest", "pytestqt", "hypothesis", "psutil", "ruff",
    "IPython", "matplotlib", "pandas", "tkinter", "_tkinter", "PyQt5", "PyQt6", "PySide2",
    "pip", "setuptools", "pkg_resources", "PyInstaller",
    # GNU readline is GPL-3.0 and only serves the interactive interpreter.
    "readline",
    # Qt modules LayerLift does not use (it needs QtCore, QtGui, QtWidgets, QtNetwork).
    "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtPdf",
    "PySide6.QtPdfWidgets", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtSql",
    "PySide6.QtTest", "PySide6.QtXml", "PySide6.QtConcurrent", "PySide6.QtHelp",
    "PySide6.QtDesigner", "PySide6.QtUiTools", "PySide6.QtPrintSupport", "PySide6.QtSvg",
    "PySide6.QtSvgWidgets",
)

# scipy subpackages the classic backend does not use: it needs ndimage and spatial, which
# pull in linalg, sparse and special (tests/test_dist.py checks LayerLift imports none of
# these). `cpu` only: transformers imports scipy.optimize, so the `gpu` flavour keeps them.
CPU_ONLY_EXCLUDED = (
    "scipy.optimize", "scipy.integrate", "scipy.interpolate", "scipy.stats", "scipy.fft",
    "scipy.fftpack", "scipy.signal", "scipy.io", "scipy.cluster", "scipy.odr",
    "scipy.datasets", "scipy.misc",
)

# The diffusion stack: the whole of the `gpu` flavour's extra weight.
GPU_PACKAGES = (
    "torch", "torchvision", "torchaudio", "diffusers", "transformers", "accelerate",
    "bitsandbytes", "torchao", "triton", "safetensors", "huggingface_hub", "hf_xet",
    "tokenizers", "sympy", "mpmath", "networkx", "jinja2", "nvidia", "cuda", "fsspec",
)

# Dependencies of the diffusion stack that the classic app never imports.
GPU_ONLY_HELPERS = (
    "regex", "tqdm", "yaml", "filelock", "requests", "urllib3", "certifi", "idna",
    "charset_normalizer", "pydantic", "pydantic_core", "typer", "rich", "click", "httpx2",
    "httpcore2", "anyio", "markdown_it", "pygments", "shellingham", "sniffio", "h11",
)

# For `gpu`: modules that diffusers and transformers import lazily (by string) for the
# Qwen-Image-Layered pipeline and its Qwen2.5-VL text encoder and processors.
GPU_HIDDEN_PACKAGES = (
    "diffusers.pipelines.qwenimage",
    "diffusers.models.transformers",
    "diffusers.models.autoencoders",
    "diffusers.schedulers",
    "transformers.models.qwen2_5_vl",
    "transformers.models.qwen2_vl",
    "transformers.models.qwen2",
)
# Distributions whose metadata these libraries read at run time (importlib.metadata).
GPU_METADATA = (
    "torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors",
    "huggingface_hub", "tokenizers", "numpy", "pillow", "regex", "tqdm", "filelock",
    "packaging", "pyyaml", "requests",
)

# Qt plug-ins the app needs, as paths under PySide6/Qt/plugins: the platforms it can start on
# (offscreen for tests and headless machines, xcb and wayland on Linux, the native ones on
# Windows and macOS), image formats for the window, and the tray's integrations.
QT_PLUGIN_KEEP = (
    "platforms/*qoffscreen.*", "platforms/*qminimal.*", "platforms/*qxcb.*",
    "platforms/*qwayland.*", "platforms/*qwayland-generic.*", "platforms/*qwindows.*",
    "platforms/*qcocoa.*", "platforms/*qdirect2d.*",
    "wayland-shell-integration/*xdg-shell.*", "wayland-decoration-client/*bradient.*",
    "platformthemes/*xdgdesktopportal.*", "platforminputcontexts/*",
    "imageformats/*qjpeg.*", "imageformats/*qgif.*", "imageformats/*qico.*",
    "imageformats/*qwebp.*", "imageformats/*qtiff.*", "styles/*",
)
# Everything else goes: OpenGL/EGL integrations (the window paints with the raster engine),
# the GTK theme (it drags in GTK, Pango and Cairo), SVG engines (they need QtSvg), evdev
# input for kiosk devices, TLS and network-information back-ends (QtNetwork is only used for
# the single-instance local socket).
# Qt translations: only Qt's own base strings (standard dialog buttons) are used.
QT_TRANSLATION_KEEP = ("qtbase_*",)


def excludes(flavour: str) -> list[str]:
    """Module names PyInstaller must not collect for `flavour`."""
    check_flavour(flavour)
    names = list(ALWAYS_EXCLUDED)
    if flavour == "cpu":
        names += [*CPU_ONLY_EXCLUDED, *GPU_PACKAGES, *GPU_ONLY_HELPERS]
    return names


def check_flavour(flavour: str) -> None:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")


def _qt_relative(dest: str, folder: str) -> str | None:
    """`dest` relative to PySide6/Qt/<folder>/, or None when it lies elsewhere."""
    marker = f"PySide6/Qt/{folder}/"
    dest = dest.replace("\\", "/")
    return dest.split(marker, 1)[1] if marker in dest else None


def keep_file(dest: str) -> bool:
    """Whether a collected file (its path inside the bundle) stays: unused Qt plug-ins and
    translations go, everything else stays."""
    plugin = _qt_relative(dest, "plugins")
    if plugin is not None:
        return any(fnmatch.fnmatch(plugin, pattern) for pattern in QT_PLUGIN_KEEP)
    translation = _qt_relative(dest, "translations")
    if translation is not None:
        return any(fnmatch.fnmatch(translation, pattern) for pattern in QT_TRANSLATION_KEEP)
    return True


def forbidden_in(flavour: str) -> tuple[str, ...]:
    """Top-level names that must not appear anywhere in a `flavour` bundle."""
    check_flavour(flavour)
    return GPU_PACKAGES if flavour == "cpu" else ()


def bundle_name(flavour: str) -> str:
    """The bundle's folder under dist/: `layerlift` (cpu) or `layerlift-gpu`."""
    check_flavour(flavour)
    return APP_NAME if flavour == "cpu" else f"{APP_NAME}-{flavour}"


def executable_name(platform: str | None = None) -> str:
    platform = platform or sys.platform
    return f"{APP_NAME}.exe" if platform.startswith("win") else APP_NAME
