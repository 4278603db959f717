"""Which packages the distribution holds and where they sit in the repository.

Installed, everything lives under `layerlift` (PyPI has an unrelated `inference`), so the
repository's top-level folders are mapped into that one package: `inference/` becomes
`layerlift.inference`, and so on. The plug-ins travel as package data of
`layerlift.gimp_plugin` and `layerlift.photoshop_plugin` (found through importlib by
`layerlift.desktop.plugin_sources`). In a checkout, layerlift/__init__.py reaches the same
folders. Everything else about the project is in pyproject.toml.
"""

from setuptools import find_packages, setup

OWN_PACKAGES = ("inference", "bridge", "desktop")
PLUGIN_DATA = {
    "gimp_plugin": ["layerlift/*.py"],
    "photoshop_plugin": ["manifest.json", "index.html", "index.js", "styles.css", "src/*.js",
                         "icons/*.png"],
}

packages = ["layerlift"]
package_dir = {"layerlift": "layerlift"}
for top in OWN_PACKAGES:
    package_dir[f"layerlift.{top}"] = top
    packages += [f"layerlift.{top}", *(f"layerlift.{top}.{sub}" for sub in find_packages(top))]
for folder in PLUGIN_DATA:
    package_dir[f"layerlift.{folder}"] = folder
    packages.append(f"layerlift.{folder}")

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={f"layerlift.{folder}": globs for folder, globs in PLUGIN_DATA.items()},
    include_package_data=False,
)
