"""The GIMP plug-in as users get it, for the tests that run its modules on the host.

`layerlift install-gimp-plugin`'s own installer puts the plug-in into a temporary GIMP folder
(its files and the modules it shares with LayerLift, `ll_wire.py` and `ll_job_states.py`);
the plug-in's modules are imported from there, by the bare names they use for each other.
tests/conftest.py makes the `plugin` fixture available to every test module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from layerlift.desktop.gimp_install import install, plugin_target

MODULES = ("ll_wire", "ll_job_states", "ll_paths", "ll_plan", "ll_websocket", "ll_bridge",
           "ll_options")


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The installed plug-in's folder (`.folder`) and its modules (`.ll_bridge`, ...)."""
    folder = plugin_target(tmp_path_factory.mktemp("gimp-config"))
    install(folder)
    stale = [name for name in MODULES if name in sys.modules]
    assert not stale, f"plug-in modules imported from elsewhere: {stale}"
    sys.path.insert(0, str(folder))
    try:
        modules = {name: importlib.import_module(name) for name in MODULES}
        assert all(str(folder) in module.__file__ for module in modules.values())
        yield SimpleNamespace(folder=folder, **modules)
    finally:
        sys.path.remove(str(folder))
        for name in MODULES:
            sys.modules.pop(name, None)
