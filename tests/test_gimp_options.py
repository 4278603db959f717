"""The GIMP dialog's backend-option fields, read from a real server's `welcome`.

GIMP cannot run here; `ll_options` is the plug-in's Gtk-free part: which fields the dialog
shows for the options the server declares, and what the user's text becomes. The plug-in is
the installed one (the `plugin` fixture).
"""

from __future__ import annotations

import pytest

from tests.bridge_fixtures import TOKEN, DictProvider, ServerThread, SplitBackend
from tests.test_option_declared_once import SparklyBackend


@pytest.fixture
def ll_options(plugin):
    return plugin.ll_options


@pytest.fixture
def capabilities(plugin):
    provider = DictProvider({"split": SplitBackend, "sparkly": SparklyBackend})
    with ServerThread(provider=provider) as running, \
            plugin.ll_bridge.BridgeSession(port=running.server.port, token=TOKEN) as session:
        return session.capabilities


def test_a_made_up_option_in_welcome_becomes_a_field(capabilities, ll_options):
    specs = ll_options.option_specs(capabilities, "auto")
    assert [spec["name"] for spec in specs] == ["sparkle"]
    assert ll_options.option_specs(capabilities, "split") == []
    assert ll_options.collect(specs, {"sparkle": " 1.25 "}) == {"sparkle": 1.25}
    assert ll_options.collect(specs, {"sparkle": ""}) == {}
    with pytest.raises(ValueError, match=r"from 0\.0 to 2\.0"):
        ll_options.collect(specs, {"sparkle": "7"})


def test_menus_and_values_follow_the_spec(ll_options):
    resolution = {"name": "resolution", "type": "int", "choices": [640, 1024]}
    flag = {"name": "cfg_normalize", "type": "bool", "label": "CFG normalize"}
    assert ll_options.choices_of(flag) == [True, False]
    assert ll_options.parse_value(resolution, "1024") == 1024
    assert ll_options.parse_value(flag, "off") is False
    with pytest.raises(ValueError, match="one of 640, 1024"):
        ll_options.parse_value(resolution, "512")
    with pytest.raises(ValueError, match="whole number"):
        ll_options.parse_value({"name": "steps", "type": "int"}, "2.5")


def test_the_options_argument_is_a_json_object(ll_options):
    assert ll_options.parse_argument("") == {}
    assert ll_options.parse_argument('{"steps": 20}') == {"steps": 20}
    with pytest.raises(ValueError, match="JSON object"):
        ll_options.parse_argument("[1]")


def test_the_backend_menu_is_the_apps_backends(capabilities, ll_options):
    """GIMP fixes a choice argument at registration: the dialog's menu comes from welcome."""
    assert ll_options.backend_choices(capabilities) == [
        ("auto", "Automatic"), ("split", "split"), ("sparkly", "sparkly")]
    unavailable = {"backends": [{"name": "qwen", "label": "Qwen", "available": False}]}
    assert ll_options.backend_choices(unavailable)[1] == ("qwen", "Qwen (unavailable)")
    assert ll_options.backend_choices({}) == [("auto", "Automatic")]
