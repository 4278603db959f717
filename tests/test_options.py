"""The option schema: one check for every entry point, and the qwen backend's declaration."""

from __future__ import annotations

import pytest
from layerlift.inference.backends.options import OptionSchema, OptionSpec
from layerlift.inference.backends.qwen.options import QWEN_OPTIONS
from layerlift.inference.errors import BadRequest
from layerlift.inference.settings import Settings


def test_check_coerces_and_refuses_with_a_sentence():
    steps = OptionSpec("steps", "int", "steps", minimum=1, maximum=200)
    assert steps.check(20.0) == 20 and isinstance(steps.check(20.0), int)
    for bad, words in ((True, "number"), ("5", "number"), (1.5, "whole"), (0, "between"),
                       (float("nan"), "finite")):
        with pytest.raises(BadRequest, match=words):
            steps.check(bad)
    lang = OptionSpec("caption_language", "str", "", choices=("en", "zh"))
    with pytest.raises(BadRequest, match="one of en, zh"):
        lang.check("fr")
    with pytest.raises(BadRequest, match="at most 2000"):
        OptionSpec("caption", "str", "").check("x" * 2001)
    with pytest.raises(BadRequest, match="true or false"):
        OptionSpec("flag", "bool", "").check(1)


def test_validate_refuses_unknown_names_and_drops_other_backends_names():
    with pytest.raises(BadRequest, match="the options are: resolution, steps"):
        QWEN_OPTIONS.validate({"model": "/tmp/x"})
    assert QWEN_OPTIONS.validate({"steps": 5, "caption": None, "tile": 3},
                                 others={"tile"}) == {"steps": 5}


def test_union_checks_every_declaring_backend():
    wide = OptionSchema([OptionSpec("strength", "float", "", minimum=0, maximum=10)])
    narrow = OptionSchema([OptionSpec("strength", "float", "", minimum=0, maximum=1)])
    union = OptionSchema.union([wide, narrow])
    assert union.validate({"strength": 0.5}) == {"strength": 0.5}
    with pytest.raises(BadRequest):
        union.validate({"strength": 5})


def test_defaults_come_from_the_settings_where_declared():
    values = QWEN_OPTIONS.resolve({}, Settings(resolution=1024, steps=12))
    assert (values["resolution"], values["steps"], values["cfg_normalize"]) == (1024, 12, True)
    wire = {spec["name"]: spec for spec in QWEN_OPTIONS.to_json(Settings(steps=12))}
    assert wire["steps"]["default"] == 12 and wire["steps"]["maximum"] == 200
    assert wire["resolution"]["choices"] == [640, 1024]
    assert wire["cfg_normalize"]["type"] == "bool"


def test_an_option_only_the_local_user_may_set_is_not_offered_to_clients():
    local = OptionSpec("weights_file", "str", "a file on this computer", client=False)
    schema = OptionSchema([local, OptionSpec("steps", "int", "")])
    assert [spec["name"] for spec in schema.to_json()] == ["steps"]
    assert schema.validate({"weights_file": "/x"}) == {"weights_file": "/x"}
    with pytest.raises(BadRequest, match="only be set on the computer running"):
        schema.validate({"weights_file": "/x"}, client=True)


def test_presets_pass_their_schema_and_welcome_lists_them():
    from layerlift.inference.backends.options import OptionPreset
    from layerlift.inference.jobs import BackendProvider

    steps = OptionSpec("steps", "int", "steps", minimum=1, maximum=200)
    with pytest.raises(BadRequest, match="between"):
        OptionSchema([steps], presets=[OptionPreset("broken", "Broken", {"steps": 0})])
    with pytest.raises(BadRequest, match="unknown option"):
        OptionSchema([steps], presets=[OptionPreset("other", "Other", {"seed": 1})])
    described = {entry["name"]: entry for entry in BackendProvider().describe(Settings())}
    assert described["qwen"]["presets"] == QWEN_OPTIONS.presets_json()
    assert [p["name"] for p in described["qwen"]["presets"]] == ["fast", "best"]
    assert described["classic"]["presets"] == []
