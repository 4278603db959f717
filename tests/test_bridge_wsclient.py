"""The fast paths of the bridge: the client's in-place receive and the server's direct send.

The client's WebSocket (`bridge.wsclient`) is checked against the `websockets` server, which
is an independent implementation: fragmentation, text, pings, protocol violations. The
server's direct send (`bridge.fastsend`) is checked for taking the direct path with the
installed websockets, and for keeping control frames out of a data frame it is sending.
"""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest
from layerlift.bridge import fastsend, protocol, wire, wsclient
from layerlift.bridge.client import BridgeClient
from layerlift.bridge.limits import Limits
from layerlift.inference.layers import Layer
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
    """The server sends big layers in fragments; the first one's LLF1 header sizes the buffer."""
    pixels = np.random.default_rng(3).integers(0, 256, (300, 500, 4), np.uint8)
    frame = bytes(protocol.layer_frame("0123456789abcdef", 1, Layer("l", pixels),
                                       wire.ENCODING_RGBA8))
    png_like = wire.FrameHeader(wire.KIND_LAYER, wire.ENCODING_PNG, 0, "ab", 9, 9).pack()
    png_like += bytes(range(256)) * 600  # the size is not in a PNG frame's header

    async def handler(ws):
        for message in (frame, png_like):
            await ws.send([message[:split], *(message[i: i + 65536]
                                              for i in range(split, len(message), 65536))])
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


def _layer_frames_parse(message, frames):
    for info, raw in zip(message["layers"], frames, strict=True):
        header, payload = protocol.parse_frame(raw)
        assert (header.kind, header.index) == (protocol.KIND_LAYER, info["index"])
        assert len(payload) == header.width * header.height * 4


def test_server_sends_big_layers_directly_and_holds_control_frames_back():
    """A ping that arrives while a layer is half sent is answered after the layer, intact."""
    image = picture(2048, 1024, seed=4)  # an 8 MiB background: more than the socket buffers

    async def scenario():
        async with running_server() as server:
            client = await wsclient.connect(server.url)
            await client.send(json.dumps({"type": "hello", "protocol": 1, "token": TOKEN}))
            assert json.loads(await client.recv())["type"] == "welcome"
            spec = {"encoding": "rgba8", "width": 2048, "height": 1024, "bytes": image.nbytes}
            await client.send(json.dumps({"type": "decompose", "request_id": "r1",
                                          "backend": "split", "image": spec}))
            assert json.loads(await client.recv())["type"] == "ready"
            # Stop reading: the server's send of the first layer stalls half way.
            transport = client._protocol.transport
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                                          65536)
            transport.pause_reading()
            await client.send(protocol.image_frame("r1", pixels=image))
            (conn,) = server._connections.values()
            while not conn.ws._holding:
                await asyncio.sleep(0.01)
            pong = asyncio.create_task(client.ping(b"mid-frame"))
            await asyncio.sleep(0.2)  # the server has read the ping and holds its pong
            assert conn.ws._holding, "the test needs the server stuck inside the frame"
            transport.resume_reading()
            await asyncio.wait_for(pong, 10)
            messages = []
            while True:
                message = json.loads(await client.recv())
                messages.append(message)
                if message["type"] == "result":
                    break
            frames = [await client.recv() for _ in message["layers"]]
            direct = conn.ws.direct_sends
            await client.close()
            return message, frames, direct

    message, frames, direct = run(scenario())
    _layer_frames_parse(message, frames)
    _, payload = protocol.parse_frame(frames[0])
    np.testing.assert_array_equal(np.frombuffer(payload, np.uint8).reshape(1024, 2048, 4), image)
    assert direct == 2  # both layers (8 MiB and 2 MiB) went the direct way
    assert fastsend.DIRECT


def test_python_client_gets_direct_layers_as_writable_arrays():
    image = picture(600, 400, seed=2)

    async def scenario():
        async with running_server() as server, BridgeClient(server.url, TOKEN) as client:
            stack = await client.run(image, backend="split")
            (conn,) = server._connections.values()
            return stack, conn.ws.direct_sends

    stack, direct = run(scenario())
    np.testing.assert_array_equal(stack.composite(), image)
    assert direct == 1  # the 960 KB background; the 240 KB quarter went through send()
    background = stack.layers[0].pixels
    background[0, 0] = 0  # the client's own buffer: no copy needed to edit it
