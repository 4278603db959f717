"""`layerlift serve/token/pair` and the `--remote` helper against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest
from layerlift.bridge import auth
from layerlift.bridge.client import BridgeClient, ServerNotRunning, Unauthorized, decompose_remote
from layerlift.desktop.cli import main
from layerlift.inference.backends.base import DecomposeRequest, Progress
from layerlift.inference.errors import BadRequest
from layerlift.inference.layers import psnr

from tests.bridge_fixtures import (
    REAL_BACKEND,
    TOKEN,
    ServerThread,
    handshake_status,
    picture,
    real_provider,
)
from tests.conftest import REPO


def test_token_command_prints_the_private_token(capsys):
    assert main(["token"]) == 0
    token = capsys.readouterr().out.strip()
    assert token == auth.read_token()
    assert main(["token", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(auth.token_path())


def test_pair_command_prints_a_code_that_redeems_once(capsys):
    assert main(["pair"]) == 0
    out = capsys.readouterr().out
    code = re.search(r"(\d{3}) (\d{3})", out)
    assert code, out
    assert auth.redeem_pairing_code(code.group(0)) == auth.read_token()
    assert auth.redeem_pairing_code(code.group(0)) is None


def test_decompose_remote_runs_on_the_server_with_progress():
    image = picture(48, 40, seed=4)
    events: list[Progress] = []
    with ServerThread(provider=real_provider()) as running:
        url = running.server.url
        stack = decompose_remote(image, DecomposeRequest(layers=3), REAL_BACKEND, url=url,
                                 token=TOKEN, progress=events.append)
        with pytest.raises(Unauthorized):
            decompose_remote(image, DecomposeRequest(), REAL_BACKEND, url=url, token="nope")
        with pytest.raises(BadRequest):
            decompose_remote(image, DecomposeRequest(), "no_such_backend", url=url, token=TOKEN)
    assert psnr(image, stack.composite()) >= 50.0
    assert events[-1].stage == "done" and events[-1].fraction == 1.0


def test_decompose_remote_without_a_server_says_so():
    with pytest.raises(ServerNotRunning, match="layerlift serve"):
        decompose_remote(picture(), DecomposeRequest(), "auto", url="ws://127.0.0.1:9",
                         token=TOKEN)
    with pytest.raises(ServerNotRunning, match="token"):
        decompose_remote(picture(), DecomposeRequest(), "auto", url="ws://127.0.0.1:9")


def test_cli_decompose_remote_end_to_end(tmp_path, capsys):
    from PIL import Image

    auth._write_private(auth.token_path(), TOKEN)
    source = tmp_path / "in.png"
    Image.fromarray(picture(40, 32, seed=8)).save(source)
    target = tmp_path / "out"
    with ServerThread(provider=real_provider()) as running:
        code = main(["decompose", str(source), "-o", f"{target}/", "--backend", REAL_BACKEND,
                     "--remote", running.server.url, "-q"])
    assert code == 0, capsys.readouterr().err
    assert (target / "stack.json").exists()


@pytest.mark.timeout(60)
def test_serve_command_serves_until_interrupted(tmp_path):
    env = dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, "-m", "layerlift.desktop.cli", "serve", "--port", "0"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stderr.readline()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
        assert match, line

        async def talk():
            async with BridgeClient(match.group(0)) as client:  # token from the file
                stack = await client.run(picture(24, 24), backend="auto")
                return client.capabilities, stack

        capabilities, stack = asyncio.run(asyncio.wait_for(talk(), 40))
        assert stack.width == 24
        assert any(b["name"] == "classic" and b["available"] for b in capabilities["backends"])
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.timeout(60)
def test_serve_admits_uxp_panels_refuses_web_pages_and_logs_what_it_refused():
    """The real `layerlift serve`: the Origin policy over a real socket, and the log line a
    user reads to learn what their Photoshop sent (docs/photoshop.md)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "layerlift.desktop.cli", "serve", "--port", "0"],
        cwd=REPO, env=dict(os.environ), stderr=subprocess.PIPE, text=True,
    )
    try:
        match = re.search(r"ws://127\.0\.0\.1:(\d+)", process.stderr.readline())
        assert match
        port = int(match.group(1))
        host = ("Host", f"127.0.0.1:{port}")

        async def statuses():
            return [await handshake_status(port, [host, *extra]) for extra in (
                [("Origin", "uxp://uxp-internal")], [],
                [("Origin", "null")], [("Origin", "https://example.com")],
                [("Origin", "null")])]

        assert asyncio.run(asyncio.wait_for(statuses(), 30)) == [101, 101, 403, 403, 403]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, log = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    refused = [line for line in log.splitlines() if "refused a connection" in line]
    assert len(refused) == 2, log
    assert "Origin 'null'" in refused[0]
    assert "Origin 'https://example.com'" in refused[1]


def test_serve_warns_loudly_off_loopback():
    from layerlift.desktop.cli.serve import exposure_warning

    assert exposure_warning("127.0.0.1") is None
    assert exposure_warning("localhost") is None
    assert "WARNING" in exposure_warning("0.0.0.0")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("number", "inherited"), [
    (signal.SIGINT, _ignore_sigint),  # how a shell starts a script's background command
    (signal.SIGTERM, None),
], ids=["sigint-inherited-ignored", "sigterm"])
def test_serve_stops_on_its_signals_whatever_it_inherited(number, inherited):
    process = subprocess.Popen(
        [sys.executable, "-m", "layerlift.desktop.cli", "serve", "--port", "0"],
        cwd=REPO, env=dict(os.environ), stderr=subprocess.PIPE, text=True,
        preexec_fn=inherited,
    )
    try:
        assert re.search(r"ws://127\.0\.0\.1:\d+", process.stderr.readline())
        process.send_signal(number)
        _, log = process.communicate(timeout=20)
        assert process.returncode == 0, log
        assert "stopped" in log
    finally:
        if process.poll() is None:
            process.kill()


def test_a_stop_past_its_deadline_says_what_each_thread_does_and_exits():
    """A thread that never ends (a stuck decode, say) cannot keep a stopping server alive."""
    script = ("import threading, time\n"
              "from layerlift.desktop.cli.stop_deadline import StopDeadline\n"
              "def stuck_in_a_decode():\n"
              "    time.sleep(600)\n"
              "threading.Thread(target=stuck_in_a_decode).start()\n"
              "StopDeadline(0.5).start()\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "stopping took longer than 0.5 s; exiting anyway" in done.stderr
    assert "stuck_in_a_decode" in done.stderr
