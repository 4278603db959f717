"""The fast paths of the bridge: the client's in-place receive and the server's fragmented send.

The client's WebSocket (`bridge.wsclient`) is checked against the `websockets` server, which
is an independent implementation: fragmentation, text, pings, protocol violations. The
server's big layers are checked from the outside, by `websockets`' own client: they arrive
whole, and the server still answers a ping while one is on its way. How fast they arrive is
bench/bridge.py's business.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from layerlift.bridge import protocol, wire, wsclient
from layerlift.bridge.client import BridgeClient
from layerlift.bridge.limits import Limits
from layerlift.inference.layers import Layer
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from tests.bridge_fixtures import TOKEN, picture, running_server

TIMEOUT = 60.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def _peer(handler, **kwargs):
    return await serve(handler, "127.0.0.1", 0, compression=None, **kwargs)


def test_client_reassembles_fragments_and_answers_pings():
    big = np.random.default_rng(1).integers(0, 256, 3 * 1024 * 1024 + 5, np.uint8).tobytes()

    async def handler(ws):
        await ws.send("héllo")
        # Fragmented: a small first fragment, so the client's buffer has to grow.
        await ws.send([big[:10], big[10:2_000_000], big[2_000_000:]])
        await ws.send(["frag", "mented ", "tëxt"])
        await ws.ping(b"are you there")  # answered by the client while it reads
        await ws.send(big[:1000])
        await ws.recv()

    async def scenario():
        peer = await _peer(handler)
        port = peer.sockets[0].getsockname()[1]
        client = await wsclient.connect(f"ws://127.0.0.1:{port}/")
        got = [await client.recv() for _ in range(4)]
        await client.ping(b"ours")
        await client.send("bye")
        await client.close()
        peer.close()
        await peer.wait_closed()
        return got, client.close_code

    got, code = run(scenario())
    assert got[0] == "héllo"
    assert isinstance(got[1], memoryview) and bytes(got[1]) == big
    assert got[2] == "fragmented tëxt"
    assert bytes(got[3]) == big[:1000]
    assert code == 1000


@pytest.mark.parametrize("split", [10, wire.HEADER_SIZE, 1000, 70_000])
def test_client_takes_a_fragmented_layer_whole(split):
    """The server sends big layers in fragments; the first one's LLF1 header sizes the buffer,
    and a ping between two fragments is answered without disturbing the message."""
    pixels = np.random.default_rng(3).integers(0, 256, (300, 500, 4), np.uint8)
    frame = bytes(protocol.layer_frame("0123456789abcdef", 1, Layer("l", pixels),
                                       wire.ENCODING_RGBA8))
    png_like = wire.FrameHeader(wire.KIND_LAYER, wire.ENCODING_PNG, 0, "ab", 9, 9).pack()
    png_like += bytes(range(256)) * 600  # the size is not in a PNG frame's header

    async def pieces(ws, message):
        yield message[:split]
        for number, start in enumerate(range(split, len(message), 65536)):
            if number == 2:
                await ws.ping()  # a control frame inside the message
            yield message[start: start + 65536]

    async def handler(ws):
        for message in (frame, png_like):
            await ws.send(pieces(ws, message))
        await ws.recv()

    async def scenario():
        peer = await _peer(handler)
        port = peer.sockets[0].getsockname()[1]
        client = await wsclient.connect(f"ws://127.0.0.1:{port}/")
        got = [await client.recv() for _ in range(2)]
        await client.send("bye")
        await client.close()
        peer.close()
        await peer.wait_closed()
        return got

    layer, other = run(scenario())
    header, payload = protocol.parse_frame(layer)
    assert header.index == 1 and not layer.readonly
    np.testing.assert_array_equal(protocol.decode_pixels(header, payload, copy=False), pixels)
    assert bytes(other) == png_like


def test_numpy_mask_is_wire_mask():
    key = b"\x9a\x01\xff\x10"
    for size in (0, 1, 7, 8, 9, 4099):
        data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
        assert bytes(wsclient.mask_payload(data, key)) == wire.mask(data, key)


@pytest.mark.parametrize(("frame", "code"), [
    (b"x" * 20, 1009),  # a well-formed message over the client's max_size of 16
    (bytes([0x82, 0x81, 1, 2, 3, 4, 0x79]), 1002),  # a masked frame from a server
    (bytes([0xC2, 0x01, 0x00]), 1002),  # RSV1 without an extension
    (bytes([0x00, 0x01, 0x00]), 1002),  # a continuation with no message
    (bytes([0x81, 0x02, 0xC3, 0x28]), 1007),  # text that is not UTF-8
])
def test_client_closes_on_protocol_violations(frame, code):
    async def handler(ws):
        if code == 1009:
            await ws.send(frame)
        else:
            ws.transport.write(frame)  # below the library: bytes it would never send
        with pytest.raises(Exception):  # noqa: B017 - whatever the library makes of it
            await ws.recv()

    async def scenario():
        peer = await _peer(handler)
        port = peer.sockets[0].getsockname()[1]
        client = await wsclient.connect(f"ws://127.0.0.1:{port}", max_size=16)
        with pytest.raises(wsclient.ConnectionClosed) as closed:
            await client.recv()
        peer.close()
        await peer.wait_closed()
        return closed.value.code

    assert run(scenario()) == code


def test_client_reports_refused_upgrades_and_bad_urls():
    async def scenario():
        async with running_server(limits=Limits(max_connections=0)) as server:
            with pytest.raises(wsclient.HandshakeFailed) as refused:
                await wsclient.connect(server.url)
        with pytest.raises(ValueError):
            await wsclient.connect("http://127.0.0.1:1/")
        return refused.value.status

    assert run(scenario()) == 503  # too many connections


def test_server_answers_a_ping_in_the_middle_of_a_big_layer():
    """The layer goes out in fragments; the server's pong comes between them, the pixels whole."""
    image = picture(4096, 2048, seed=4)  # a 32 MiB background: far more than socket buffers

    async def scenario():
        # max_queue=1: this client stops reading while it does not recv, so the server's send
        # stalls half way through the layer.
        async with running_server() as server, \
                connect(server.url, compression=None, max_size=None, max_queue=1) as ws:
            await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": TOKEN}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            spec = {"encoding": "rgba8", "width": 4096, "height": 2048,
                    "bytes": image.nbytes}
            await ws.send(json.dumps({"type": "decompose", "request_id": "r1",
                                      "backend": "split", "image": spec}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(protocol.image_frame("r1", pixels=image))
            while not any(job.state == "done" for job in server.runner.jobs()):
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)  # the server starts on the result, and fills the buffers
            pong = await ws.ping(b"mid-layer")
            while (message := json.loads(await ws.recv()))["type"] != "result":
                pass
            fragments, pong_after = [], None
            async for fragment in ws.recv_streaming():
                fragments.append(fragment)
                if pong.done() and pong_after is None:
                    pong_after = len(fragments)
            others = [await ws.recv() for _ in message["layers"][1:]]
            await pong
            return message, fragments, pong_after, others

    message, fragments, pong_after, others = run(scenario())
    assert pong_after is not None and pong_after < len(fragments), \
        "the pong came only after the whole layer"
    header, payload = protocol.parse_frame(b"".join(fragments))
    assert (header.kind, header.index) == (protocol.KIND_LAYER, 0)
    np.testing.assert_array_equal(np.frombuffer(payload, np.uint8).reshape(2048, 4096, 4),
                                  image)
    assert len(others) == len(message["layers"]) - 1 == 1


def test_python_client_gets_layers_as_writable_arrays():
    image = picture(600, 400, seed=2)

    async def scenario():
        async with running_server() as server, BridgeClient(server.url, TOKEN) as client:
            return await client.run(image, backend="split")

    stack = run(scenario())
    np.testing.assert_array_equal(stack.composite(), image)
    background = stack.layers[0].pixels
    background[0, 0] = 0  # the client's own buffer: no copy needed to edit it


def test_a_big_message_right_after_welcome_is_no_preauth_message():
    """The small limit is for the first message only; the next may be as big as any text."""
    limits = Limits()

    async def scenario():
        async with running_server(limits=limits) as server, \
                connect(server.url, compression=None) as ws:
            await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": TOKEN}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            pad = "y" * (limits.max_preauth_bytes * 4)
            await ws.send(json.dumps({"type": "ping", "id": "big", "pad": pad}))
            return json.loads(await ws.recv())

    assert run(scenario()) == {"type": "pong", "id": "big"}
