"""A backend option is declared in exactly one place.

A backend that exists only in this file declares a made-up option; with nothing else touched,
it must reach the bridge's `welcome` (from a real server on 127.0.0.1), `layerlift decompose
--help`, the settings model, and the one validator behind all of them.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from layerlift.bridge import protocol
from layerlift.desktop.cli import build_parser, main
from layerlift.desktop.cli.backend_options import request_options
from layerlift.desktop.option_model import picture_fields, settings_fields
from layerlift.inference import backends
from layerlift.inference.backends.options import OptionSchema, OptionSpec
from layerlift.inference.jobs import BackendProvider
from layerlift.inference.settings import Settings
from websockets.asyncio.client import connect

from tests.bridge_fixtures import TOKEN, SplitBackend, running_server

SPARKLE = OptionSpec("sparkle", "float", "how much glitter the layers get", default=0.5,
                     minimum=0.0, maximum=2.0)


class SparklyBackend(SplitBackend):
    """A test backend; its whole vocabulary is the schema below."""

    name = "sparkly"
    label = "Sparkly (test)"
    options = OptionSchema([SPARKLE])


@pytest.fixture
def sparkly(monkeypatch):
    """Register the backend for this test only (the registry is module state)."""
    monkeypatch.setitem(backends._REGISTRY, "sparkly", f"{__name__}:SparklyBackend")


async def _welcome_and_decompose(options: dict) -> tuple[dict, dict]:
    async with running_server(BackendProvider()) as server, connect(server.url) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": TOKEN}))
        welcome = json.loads(await ws.recv())
        image = np.zeros((8, 8, 4), np.uint8)
        await ws.send(json.dumps({
            "type": "decompose", "request_id": "r1", "backend": "sparkly", "options": options,
            "image": {"encoding": "rgba8", "width": 8, "height": 8, "bytes": image.size}}))
        answer = json.loads(await ws.recv())
        if answer["type"] == "ready":
            await ws.send(protocol.image_frame("r1", image))
            answer = json.loads(await ws.recv())
        return welcome, answer


def test_made_up_option_reaches_welcome_and_the_validator(sparkly):
    welcome, answer = asyncio.run(_welcome_and_decompose({"sparkle": 1.5}))
    entry = next(b for b in welcome["capabilities"]["backends"] if b["name"] == "sparkly")
    assert entry["options"] == [{"name": "sparkle", "type": "float",
                                 "label": "Sparkle", "help": "how much glitter the layers get",
                                 "default": 0.5, "minimum": 0.0, "maximum": 2.0}]
    assert "sparkle" in welcome["capabilities"]["options"]
    assert answer["type"] == "accepted"
    assert answer["job"]["params"]["options"] == {"sparkle": 1.5}

    _, refused = asyncio.run(_welcome_and_decompose({"sparkle": 5}))
    assert (refused["code"], refused["message"]) == (
        "bad_request", "option sparkle must be between 0 and 2, got 5.0")


def test_made_up_option_is_a_decompose_flag(sparkly, capsys):
    with pytest.raises(SystemExit):
        main(["decompose", "--help"])
    help_text = capsys.readouterr().out
    assert "sparkly backend options" in help_text
    assert "--sparkle SPARKLE" in help_text and "how much glitter the layers get" in help_text

    args = build_parser().parse_args(["decompose", "in.png", "--sparkle", "1.25"])
    assert request_options(args) == {"sparkle": 1.25}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["decompose", "in.png", "--sparkle", "3"])
    assert "option sparkle must be between 0 and 2" in capsys.readouterr().err


def test_made_up_option_is_in_the_settings_model(sparkly):
    fields = {field.name: field for field in settings_fields(Settings())}
    assert (fields["sparkle"].backend, fields["sparkle"].control, fields["sparkle"].value) == (
        "sparkly", "float", 0.5)
    saved = Settings(option_defaults={"sparkle": 1.75})
    assert {f.name: f.value for f in settings_fields(saved)}["sparkle"] == 1.75
    assert "sparkle" not in {field.name for field in picture_fields(Settings())}


def test_without_registration_nothing_knows_it():
    assert "sparkle" not in {field.name for field in settings_fields(Settings())}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["decompose", "in.png", "--sparkle", "1"])


def test_qwen_and_the_bridge_agree_on_cfg_normalize():
    """The backend and the bridge read one schema, so they accept the same values."""
    provider = BackendProvider()
    assert provider.check_options("qwen", "qwen", {"cfg_normalize": False}) == {
        "cfg_normalize": False}
    # `auto` may run either backend: the one that runs gets only its own options.
    assert provider.check_options("auto", "classic", {"steps": 12}) == {}
