"""The bridge over real loopback sockets: decompose, cancel, reconnect, and every refusal."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import numpy as np
import pytest
from layerlift.bridge import auth, protocol
from layerlift.bridge.client import BridgeClient, Unauthorized
from layerlift.bridge.limits import Limits
from layerlift.inference.errors import Cancelled, ImageTooLarge
from layerlift.inference.layers import psnr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.bridge_fixtures import (
    REAL_BACKEND,
    TOKEN,
    GatedBackend,
    handshake_status,
    picture,
    real_provider,
    running_server,
)

TIMEOUT = 60.0


def run(coro):
    """Run one scenario with a hard time bound."""
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


@pytest.fixture(autouse=True)
def _gate():
    GatedBackend.reset()
    yield
    GatedBackend.release.set()


async def hello(ws, token=TOKEN):
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token}))
    return json.loads(await ws.recv())


def test_full_decompose_with_progress_and_binary_layers():
    image = picture(64, 48, seed=3)

    async def scenario():
        async with running_server(real_provider()) as server, \
                BridgeClient(server.url, TOKEN) as client:
            caps = client.capabilities
            assert REAL_BACKEND in [b["name"] for b in caps["backends"]]
            assert caps["limits"]["max_image_pixels"] == Limits().max_image_pixels
            assert "rgba8" in caps["encodings"] and "png" in caps["encodings"]
            events = []
            stack = await client.run(image, progress=events.append, backend=REAL_BACKEND)
            return stack, events

    stack, events = run(scenario())
    assert (stack.width, stack.height) == (64, 48)
    assert len(stack.layers) >= 2
    assert psnr(image, stack.composite()) >= 50.0
    stages = [event.stage for event in events]
    assert stages[0] == "queued" and stages[-1] == "done"
    assert "running" in stages
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_raw_messages_match_the_documented_layout():
    """Drive the server with hand-built frames, as a non-Python client would."""
    image = picture(20, 10)

    async def scenario():
        async with running_server() as server, connect(server.url, compression=None) as ws:
            welcome = await hello(ws)
            assert welcome["type"] == "welcome" and welcome["protocol"] == 1
            await ws.send(json.dumps({
                "type": "decompose", "request_id": "r1", "backend": "split", "layers": 2,
                "image": {"encoding": "rgba8", "width": 20, "height": 10, "bytes": 800},
            }))
            assert json.loads(await ws.recv()) == {"type": "ready", "request_id": "r1"}
            header = b"LLF1" + bytes([1, 0]) + (0).to_bytes(2, "little") + b"r1".ljust(16, b"\0")
            header += (20).to_bytes(4, "little") + (10).to_bytes(4, "little")
            assert len(header) == 32
            await ws.send(header + image.tobytes())
            accepted = json.loads(await ws.recv())
            assert accepted["type"] == "accepted" and accepted["request_id"] == "r1"
            job_id = accepted["job"]["id"]
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "result":
                    break
                assert message["type"] == "progress" and message["job"]["id"] == job_id
            assert message["canvas"] == {"width": 20, "height": 10}
            frames = [await ws.recv() for _ in message["layers"]]
            return message, frames

    message, frames = run(scenario())
    background = frames[0]
    assert background[:4] == b"LLF1" and background[4] == 2 and background[5] == 0
    assert int.from_bytes(background[6:8], "little") == 0
    assert background[8:24].rstrip(b"\0").decode() == message["job_id"]
    assert int.from_bytes(background[24:28], "little") == 20
    assert int.from_bytes(background[28:32], "little") == 10
    np.testing.assert_array_equal(np.frombuffer(background[32:], np.uint8).reshape(10, 20, 4),
                                  image)
    quarter = message["layers"][1]
    assert (quarter["x"], quarter["y"], quarter["width"], quarter["height"]) == (0, 0, 10, 5)


def test_png_upload_and_png_result():
    pytest.importorskip("layerlift.inference.formats", reason="formats package missing")
    from layerlift.inference import formats

    if not hasattr(formats, "read_image_bytes"):
        pytest.skip("layerlift.inference.formats.read_image_bytes has not landed yet")
    image = picture(30, 20, seed=5)
    png = protocol.encode_png(image)

    async def scenario():
        async with running_server() as server, BridgeClient(server.url, TOKEN) as client:
            return await client.run(png, backend="split", result_encoding="png")

    stack = run(scenario())
    np.testing.assert_array_equal(stack.composite(), image)


def test_cancel_queued_and_running_jobs():
    async def scenario():
        async with running_server() as server, BridgeClient(server.url, TOKEN) as client:
            running = await client.submit(picture(), backend="gated")
            assert await asyncio.to_thread(GatedBackend.started.wait, 10)
            queued = await client.submit(picture(), backend="split")
            assert queued.position == 1
            record = await client.cancel(queued.id)
            assert record.state == "cancelled"
            with pytest.raises(Cancelled):
                await client.wait(queued.id)
            await client.cancel(running.id)
            with pytest.raises(Cancelled):
                await client.wait(running.id)
            states = {job.id: job.state for job in await client.list_jobs()}
            return states, running.id, queued.id

    states, running_id, queued_id = run(scenario())
    assert states == {running_id: "cancelled", queued_id: "cancelled"}


def test_disconnect_mid_job_then_reconnect_and_fetch():
    image = picture(40, 30, seed=9)

    async def scenario():
        async with running_server() as server:
            async with BridgeClient(server.url, TOKEN) as first:
                job = await first.submit(image, backend="gated")
                assert await asyncio.to_thread(GatedBackend.started.wait, 10)
            # Gone mid-job. The job goes on; a new connection finds and fetches it.
            async with BridgeClient(server.url, TOKEN) as second:
                listed = {j.id: j.state for j in await second.list_jobs()}
                assert listed[job.id] in ("loading", "running")
                waiting = asyncio.create_task(second.fetch(job.id))
                await asyncio.sleep(0)  # the fetch is sent before the job is released
                GatedBackend.release.set()
                live = await waiting
            async with BridgeClient(server.url, TOKEN) as third:
                again = await third.fetch(job.id, result_encoding="rgba8")
            return live, again

    live, again = run(scenario())
    for stack in (live, again):
        np.testing.assert_array_equal(stack.composite(), image)
        assert [layer.name for layer in stack.layers] == ["background", "quarter"]


def test_wrong_and_missing_token_are_refused():
    async def scenario():
        async with running_server(limits=Limits(auth_timeout=0.5)) as server:
            with pytest.raises(Unauthorized):
                await BridgeClient(server.url, "wrong-token").connect()
            async with connect(server.url) as ws:
                answer = await hello(ws, token="x" * 21)
                assert answer == {"type": "error", "code": "unauthorized",
                                  "message": "wrong token"}
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1008
            # Silence: closed after the timeout, never authenticated.
            async with connect(server.url) as ws:
                answer = json.loads(await ws.recv())
                assert answer["code"] == "auth_timeout"
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1008
            # Anything but hello first, even a well-formed request.
            async with connect(server.url) as ws:
                await ws.send(json.dumps({"type": "list_jobs"}))
                assert json.loads(await ws.recv())["code"] == "unauthorized"
                with pytest.raises(ConnectionClosed):
                    await ws.recv()

    run(scenario())


# The Origin policy (docs/protocol.md, "Security"): none or any uxp:// origin is admitted,
# because Adobe documents no Origin for UXP WebSockets and a web page cannot send uxp://.
ADMITTED_ORIGINS = [None, "uxp://uxp-internal", auth.UXP_ORIGIN, "UXP://uxp-internal"]
REFUSED_ORIGINS = ["null", "https://example.com", "http://127.0.0.1:8000", "file://",
                   "chrome-extension://x", "moz-extension://x", "uxp", "uxp:/x", "",
                   "https://uxp.example"]


def test_uxp_origins_are_admitted_and_web_origins_refused_before_the_upgrade():
    async def scenario():
        async with running_server() as server:
            port = server.port
            host = ("Host", f"127.0.0.1:{port}")
            statuses = {}
            for origin in ADMITTED_ORIGINS + REFUSED_ORIGINS:
                headers = [host] if origin is None else [host, ("Origin", origin)]
                statuses[origin] = await handshake_status(port, headers)
            two = await handshake_status(port, [host, ("Origin", auth.UXP_ORIGIN),
                                                ("Origin", auth.UXP_ORIGIN)])
            with pytest.raises(InvalidStatus) as refused:
                await connect(server.url, origin="http://localhost:8000")
            assert refused.value.response.status_code == 403
            # An admitted uxp:// origin gets a working connection, not just a 101.
            async with connect(server.url, origin="uxp://uxp-internal") as ws:
                assert (await hello(ws))["type"] == "welcome"
            return statuses, two

    statuses, two = run(scenario())
    assert {o: statuses[o] for o in ADMITTED_ORIGINS} == dict.fromkeys(ADMITTED_ORIGINS, 101)
    assert {o: statuses[o] for o in REFUSED_ORIGINS} == dict.fromkeys(REFUSED_ORIGINS, 403)
    assert two == 403  # two Origin headers: ambiguous, refused


def test_a_plain_http_request_gets_the_same_verdict():
    """The Photoshop panel's probe (photoshop_plugin/src/probe.js): 403 when the caller would
    be refused, 426 (no upgrade asked for) when it would be admitted."""
    async def scenario():
        async with running_server() as server:
            host = ("Host", f"127.0.0.1:{server.port}")
            return [await handshake_status(server.port, [host, *extra], upgrade=False)
                    for extra in ([], [("Origin", "uxp://uxp-internal")], [("Origin", "null")],
                                  [("Origin", "https://example.com")])]

    assert run(scenario()) == [426, 426, 403, 403]


def test_foreign_hosts_are_refused_before_the_upgrade():
    async def scenario():
        async with running_server() as server:
            port = server.port
            host = ("Host", f"127.0.0.1:{port}")
            uxp = ("Origin", "uxp://uxp-internal")
            return {
                "plain": await handshake_status(port, [host]),
                "localhost": await handshake_status(port, [("Host", f"localhost:{port}")]),
                "ipv6": await handshake_status(port, [("Host", f"[::1]:{port}")]),
                "rebinding": await handshake_status(port, [("Host", f"evil.example:{port}")]),
                "rebinding uxp": await handshake_status(port, [("Host", f"evil.example:{port}"),
                                                               uxp]),
                "wrong port": await handshake_status(port, [("Host", f"127.0.0.1:{port + 1}")]),
                "no port": await handshake_status(port, [("Host", "127.0.0.1")]),
                "no host": await handshake_status(port, []),
                "two hosts": await handshake_status(port, [host, host]),
            }

    statuses = run(scenario())
    assert statuses.pop("plain") == 101
    assert statuses.pop("localhost") == 101
    assert statuses.pop("ipv6") == 101
    assert statuses == dict.fromkeys(statuses, 403)


def test_each_refused_origin_is_logged_once(caplog):
    async def scenario():
        async with running_server() as server:
            host = ("Host", f"127.0.0.1:{server.port}")
            for origin in ["null", "https://example.com", "null", "null", "uxp://uxp-internal"]:
                await handshake_status(server.port, [host, ("Origin", origin)])

    with caplog.at_level(logging.WARNING):
        run(scenario())
    lines = [r.getMessage() for r in caplog.records if "Origin" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "'null'" in lines[0] and "'https://example.com'" in lines[1]
    assert not any("uxp-internal" in line for line in lines)


def test_oversize_frame_and_image_are_refused_while_others_are_served():
    limits = Limits(max_image_pixels=64 * 64, max_image_bytes=64 * 64 * 4,
                    max_text_bytes=4096)

    async def scenario():
        async with running_server(limits=limits) as server, \
                BridgeClient(server.url, TOKEN) as bystander:
            # A message bigger than any allowed image: the socket is closed with 1009.
            async with connect(server.url, compression=None) as ws:
                assert (await hello(ws))["type"] == "welcome"
                await ws.send(b"\0" * (limits.max_message_bytes + 1))
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009
            # Before authentication the limit is tiny.
            async with connect(server.url, compression=None) as ws:
                await ws.send("x" * (limits.max_preauth_bytes + 1))
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009
            # A big text message after auth: an error, the socket stays.
            async with connect(server.url, compression=None) as ws:
                await hello(ws)
                await ws.send(json.dumps({"type": "ping", "pad": "y" * 5000}))
                answer = json.loads(await ws.recv())
                assert answer["code"] == "protocol_error" and "4096" in answer["message"]
                await ws.send(json.dumps({"type": "ping"}))
                assert json.loads(await ws.recv())["type"] == "pong"
            async with BridgeClient(server.url, TOKEN) as client:
                # An image over the pixel limit: refused by its announced size, socket stays.
                with pytest.raises(ImageTooLarge):
                    await client.submit(np.zeros((65, 64, 4), np.uint8), backend="split")
                assert (await client.ping())["type"] == "pong"
                small = await client.run(picture(16, 16), backend="split")
                assert small.width == 16
            # The client that did nothing wrong was never disturbed.
            stack = await bystander.run(picture(32, 32), backend="split")
            return stack

    assert run(scenario()).width == 32


def test_malformed_requests_get_errors_and_keep_the_connection():
    async def scenario():
        async with running_server() as server, connect(server.url) as ws:
            await hello(ws)
            answers = []
            for raw in ["{", "[]", json.dumps({"type": "launch_missiles"}),
                        json.dumps({"type": "cancel", "job_id": "../../etc/passwd"}),
                        json.dumps({"type": "fetch", "job_id": "0123456789abcdef"}),
                        json.dumps({"type": "decompose", "request_id": "a", "layers": 99,
                                    "image": {"encoding": "rgba8", "width": 1, "height": 1,
                                              "bytes": 4}}),
                        json.dumps({"type": "decompose", "request_id": "b",
                                    "options": {"model": "/tmp/x"},
                                    "image": {"encoding": "rgba8", "width": 1, "height": 1,
                                              "bytes": 4}}),
                        b"LLF1garbage", json.dumps({"type": "hello", "protocol": 1,
                                                    "token": TOKEN})]:
                await ws.send(raw)
                answers.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            answers.append(json.loads(await ws.recv()))
            return answers

    answers = run(scenario())
    codes = [answer.get("code") for answer in answers[:-1]]
    assert codes == ["protocol_error", "protocol_error", "protocol_error", "protocol_error",
                     "unknown_job", "bad_request", "bad_request", "protocol_error",
                     "protocol_error"]
    assert "model" in answers[6]["message"]
    assert answers[-1] == {"type": "pong", "id": 7}


def test_image_frame_must_match_its_decompose():
    async def scenario():
        async with running_server() as server, connect(server.url) as ws:
            await hello(ws)
            spec = {"encoding": "rgba8", "width": 4, "height": 4, "bytes": 64}
            await ws.send(json.dumps({"type": "decompose", "request_id": "r1", "image": spec}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(protocol.image_frame("r2", pixels=np.zeros((4, 4, 4), np.uint8)))
            mismatch = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "decompose", "request_id": "r3", "image": spec}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "ping"}))
            dropped = json.loads(await ws.recv())
            return mismatch, dropped

    mismatch, dropped = run(scenario())
    assert mismatch["code"] == "protocol_error" and mismatch["request_id"] == "r1"
    assert dropped["code"] == "protocol_error" and "r3" in dropped["message"]


def test_per_client_job_limit():
    async def scenario():
        limits = Limits(max_jobs_per_client=2)
        async with running_server(limits=limits) as server, \
                BridgeClient(server.url, TOKEN) as client:
            await client.submit(picture(), backend="gated")
            await client.submit(picture(), backend="split")
            with pytest.raises(Exception) as refused:
                await client.submit(picture(), backend="split")
            async with BridgeClient(server.url, TOKEN) as other:
                accepted = await other.submit(picture(), backend="split")
                GatedBackend.release.set()
                await other.wait(accepted.id)
            return refused.value

    error = run(scenario())
    assert getattr(error, "code", None) == "queue_full"


def test_pairing_code_is_exchanged_once_for_the_token():
    async def scenario():
        async with running_server() as server:
            server.token = auth.load_or_create_token()
            code, _ = auth.create_pairing_code()
            async with connect(server.url) as ws:
                await ws.send(json.dumps({"type": "pair", "code": f"{code[:3]} {code[3:]}"}))
                paired = json.loads(await ws.recv())
                assert paired == {"type": "paired", "token": server.token}
                assert (await hello(ws, paired["token"]))["type"] == "welcome"
            async with connect(server.url) as ws:
                await ws.send(json.dumps({"type": "pair", "code": code}))
                again = json.loads(await ws.recv())
            return again

    assert run(scenario())["code"] == "pairing_failed"


def test_pairing_code_dies_after_wrong_guesses():
    code, _ = auth.create_pairing_code()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(auth.PAIRING_ATTEMPTS):
        assert auth.redeem_pairing_code(wrong) is None
    assert auth.redeem_pairing_code(code) is None
    expired, _ = auth.create_pairing_code(ttl=-1)
    assert auth.redeem_pairing_code(expired) is None


def test_token_file_is_private():
    token = auth.load_or_create_token()
    path = auth.token_path()
    assert len(token) >= 40
    assert auth.load_or_create_token() == token
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
        path.chmod(0o644)
        auth.load_or_create_token()
        assert path.stat().st_mode & 0o777 == 0o600
    assert auth.token_matches(token, token)
    assert not auth.token_matches(token, token[:-1])
    assert not auth.token_matches(token, None)


def test_cancel_on_disconnect_cancels_only_flagged_jobs():
    """GIMP's Cancel kills the plug-in: a flagged job dies with its connection, others live."""

    async def finished(server, job_id):
        record = await asyncio.to_thread(server.runner.wait, job_id, 10.0)
        return record.state

    async def scenario():
        async with running_server() as server:
            # Killed client (TCP dropped, no close frame): its running and queued jobs go.
            killed = BridgeClient(server.url, TOKEN)
            await killed.connect()
            running = await killed.submit(picture(), backend="gated", cancel_on_disconnect=True)
            assert await asyncio.to_thread(GatedBackend.started.wait, 10)
            queued = await killed.submit(picture(), backend="split", cancel_on_disconnect=True)
            killed.ws.abort()
            states = [await finished(server, running.id), await finished(server, queued.id)]
            # A clean close counts too; an unflagged job of the same client runs on.
            GatedBackend.reset()
            async with BridgeClient(server.url, TOKEN) as polite:
                flagged = await polite.submit(picture(), backend="gated",
                                              cancel_on_disconnect=True)
                assert await asyncio.to_thread(GatedBackend.started.wait, 10)
            states.append(await finished(server, flagged.id))
            GatedBackend.reset()
            async with BridgeClient(server.url, TOKEN) as leaving:
                kept = await leaving.submit(picture(), backend="gated")
                assert await asyncio.to_thread(GatedBackend.started.wait, 10)
            GatedBackend.release.set()
            states.append(await finished(server, kept.id))
            async with BridgeClient(server.url, TOKEN) as later:
                stack = await later.fetch(kept.id)
            # The flag must be a boolean.
            async with connect(server.url) as ws:
                await hello(ws)
                await ws.send(json.dumps({
                    "type": "decompose", "request_id": "r1", "cancel_on_disconnect": "yes",
                    "image": {"encoding": "rgba8", "width": 1, "height": 1, "bytes": 4}}))
                refused = json.loads(await ws.recv())
            return states, stack, refused

    states, stack, refused = run(scenario())
    assert states == ["cancelled", "cancelled", "cancelled", "done"]
    np.testing.assert_array_equal(stack.composite(), picture())
    assert refused["code"] == "protocol_error" and "cancel_on_disconnect" in refused["message"]
