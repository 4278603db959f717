"""LayerLift: turn a flat picture into editable RGBA layers, locally.

Installed, everything LayerLift owns lives under this one name: `layerlift.inference`,
`layerlift.bridge`, `layerlift.desktop`, and the plug-ins as package data
(`layerlift.gimp_plugin`, `layerlift.photoshop_plugin`). PyPI already has an `inference`
distribution, so the repository's top-level folders are never installed as names of their own.

In the repository the folders stay where the product's layout puts them (`inference/`,
`bridge/`, ... beside this folder). A wheel maps them under this package (see pyproject.toml);
a checkout on `sys.path` (tests, benchmarks, `python -m layerlift.desktop.cli`) reaches them
through the path extension below, which only applies when this file sits in the checkout.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "inference" / "__init__.py").is_file():
    # Running from the repository: the subpackages are the sibling folders.
    __path__.append(str(_CHECKOUT))
