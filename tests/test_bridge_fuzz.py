"""Fuzz: over 10,000 malformed and random messages at a live server, which must stay up.

Hypothesis builds three kinds of input: random text and bytes, JSON messages of every type
with fields of random types and values, and binary frames with the real magic but random
header fields and payloads. Most go to authenticated connections (the deepest code); some
are the very first message of a connection (the authentication path); some are raw bytes
written under the WebSocket framing. After each batch the server must still answer a ping,
and at the end it must run a real decomposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layerlift.bridge import protocol
from layerlift.bridge.client import BridgeClient
from layerlift.bridge.limits import Limits
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.bridge_fixtures import TOKEN, ServerThread, picture

BATCH = 25
AUTH_EXAMPLES = 410  # x BATCH = 10,250 messages on authenticated connections
FIRST_EXAMPLES = 250  # first messages of a connection
RAW_EXAMPLES = 60  # raw bytes under the framing

LIMITS = Limits(max_image_pixels=64 * 64, max_image_bytes=64 * 64 * 4, auth_timeout=2.0,
                max_jobs_per_client=4)

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | \
    st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
field_names = st.sampled_from(["request_id", "job_id", "backend", "layers", "seed", "options",
                               "image", "result_encoding", "token", "protocol", "code", "id",
                               "type", "encoding", "width", "height", "bytes"])
image_specs = st.fixed_dictionaries({
    "encoding": st.sampled_from(["rgba8", "png", "jpeg"]) | json_values,
    "width": st.integers(-2, 70) | json_values,
    "height": st.integers(-2, 70) | json_values,
    "bytes": st.integers(-1, 20000) | json_values,
})


@st.composite
def json_messages(draw) -> str:
    message = {"type": draw(st.sampled_from([*protocol.CLIENT_TYPES, "", "HELLO", "result"]))}
    if draw(st.booleans()):
        message.update({
            "request_id": draw(st.text(max_size=20) | st.sampled_from(["r1", "x" * 17])),
            "job_id": draw(st.text(alphabet="0123456789abcdef", min_size=15, max_size=17)),
            "backend": draw(st.sampled_from(["auto", "split", "gated", "nope", "../x"])),
            "layers": draw(st.integers(-1, 12) | json_values),
            "options": draw(st.dictionaries(st.sampled_from(["steps", "resolution", "model",
                                                             "caption"]), json_values,
                                            max_size=3)),
            "image": draw(image_specs),
        })
    message.update(draw(st.dictionaries(field_names, json_values, max_size=3)))
    return json.dumps(message)


@st.composite
def binary_frames(draw) -> bytes:
    header = struct.pack("<4sBBH16sII",
                         draw(st.sampled_from([b"LLF1", b"LLF2", b"\0\0\0\0"])),
                         draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                         draw(st.integers(0, 65535)),
                         draw(st.sampled_from([b"r1", b"\xff\xfe", b"", b"a" * 16])),
                         draw(st.integers(0, 2**32 - 1) | st.integers(0, 70)),
                         draw(st.integers(0, 2**32 - 1) | st.integers(0, 70)))
    cut = draw(st.integers(0, 32))
    return header[: cut if cut < 32 else 32] + draw(st.binary(max_size=200))


messages = st.one_of(
    st.text(max_size=120),
    st.binary(max_size=120),
    json_messages(),
    binary_frames(),
    st.just("[" * 50_000),  # recursion bomb; over the text limit, and too deep anyway
    st.just('{"type":"ping","id":' + "1" * 5000 + "}"),
)


async def _authenticated(url: str):
    ws = await connect(url, compression=None, max_size=None)
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": TOKEN}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def _throw_batch(state: dict, url: str, batch: list) -> None:
    ws = state.get("ws")
    if ws is None:
        ws = state["ws"] = await _authenticated(url)
    try:
        for message in batch:
            await ws.send(message)
            state["sent"] += 1
        await ws.send(json.dumps({"type": "ping", "id": "fuzz"}))
        while True:
            reply = await ws.recv()
            if isinstance(reply, str) and json.loads(reply).get("type") == "pong":
                return
    except ConnectionClosed:
        # Allowed only as the documented refusals (oversize message); reconnect.
        assert ws.close_code in (1009, 1002, 1007, 1008), ws.close_code
        state["ws"] = None


async def _throw_first(url: str, message) -> None:
    async with connect(url, compression=None) as ws:
        await ws.send(message)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
        assert ws.close_code in (1008, 1009, 1007, 1002), ws.close_code


async def _throw_raw(port: int, garbage: bytes) -> None:
    """A real upgrade, then bytes that are not valid WebSocket frames."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    assert b"101" in await reader.readline()
    writer.write(garbage)
    writer.write_eof()  # an incomplete frame would otherwise keep the server waiting for more
    await writer.drain()
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(), 5.0)
    writer.close()


def test_server_survives_ten_thousand_malformed_messages():
    state: dict = {"sent": 0}
    with ServerThread(limits=LIMITS) as running:
        server = running.server
        assert server is not None
        url = server.url
        fuzz = settings(max_examples=AUTH_EXAMPLES, deadline=None, database=None,
                        derandomize=True, suppress_health_check=list(HealthCheck))

        @fuzz
        @given(st.lists(messages, min_size=BATCH, max_size=BATCH))
        def authenticated(batch):
            running.call(_throw_batch(state, url, batch))

        @settings(max_examples=FIRST_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(messages)
        def first(message):
            running.call(_throw_first(url, message))
            state["sent"] += 1

        @settings(max_examples=RAW_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(st.binary(min_size=1, max_size=64))
        def raw(garbage):
            running.call(_throw_raw(server.port, garbage))
            state["sent"] += 1

        for phase in (authenticated, first, raw):
            started = time.monotonic()
            phase()
            print(f"{phase.__name__}: {time.monotonic() - started:.1f} s")
        if state.get("ws") is not None:
            running.call(state["ws"].close())

        async def well_formed():
            async with BridgeClient(url, TOKEN) as client:
                return await client.run(picture(32, 24), backend="split")

        stack = running.call(well_formed(), timeout=60)
        assert running.server.runner._thread.is_alive()
    assert state["sent"] >= 10_000
    np.testing.assert_array_equal(stack.composite(), picture(32, 24))
