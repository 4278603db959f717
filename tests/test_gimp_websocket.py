"""The GIMP plug-in's standard-library WebSocket client against a real `websockets` server.

The plug-in is the installed one (tests/installed_plugin.py): `ll_websocket` over `ll_wire`,
the copy of bridge/wire.py that the installer puts beside it. The protocol-level tests against
the LayerLift bridge itself are in test_gimp_bridge_client.py; these pin down the transport:
handshake, masking, fragmentation both ways, large binary messages, ping/pong, close codes, a
server that breaks the protocol and one that vanishes.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def _handler(ws):
    try:
        async for message in ws:
            if message == "fragment-back":
                await ws.send(["part one, ", "part two, ", "part three"])
            elif message == "big-back":
                await ws.send(os.urandom(8) * (3 * 1024 * 1024 // 8))
            elif message == "ping-me":
                await ws.ping(b"are you there")
                await ws.send("pinged")
            elif message == "close-4001":
                await ws.close(4001, "policy says no")
            elif message == "drop":
                ws.transport.abort()
            elif message == "bad-utf8":
                await ws.send(b"\xc3\x28", text=True)
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass


@contextmanager
def echo_server(max_size: int = 64 * 1024 * 1024, **options) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def main():
        stop = asyncio.Event()
        state["stop"] = stop
        async with serve(_handler, "127.0.0.1", 0, max_size=max_size, **options) as server:
            state["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield state["port"]
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        loop.close()


def test_text_and_binary_echo(plugin):
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_text("héllo ✓")
        assert ws.recv() == "héllo ✓"
        ws.send_binary(b"\x00\x01\xff" * 1000)
        assert ws.recv() == b"\x00\x01\xff" * 1000


def test_large_binary_message_is_fragmented_and_reassembled(plugin):
    payload = os.urandom(1024) * (20 * 1024)  # 20 MiB, sent as 4 MiB frames
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_binary(payload)
        assert ws.recv() == payload


def test_fragmented_message_from_server(plugin):
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_text("fragment-back")
        assert ws.recv() == "part one, part two, part three"


def test_large_binary_from_server(plugin):
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_text("big-back")
        data = ws.recv()
        assert isinstance(data, bytearray) and len(data) == 3 * 1024 * 1024


def test_server_ping_is_answered_and_client_ping_works(plugin):
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_text("ping-me")
        assert ws.recv() == "pinged"
        ws.ping(b"x")
        ws.send_text("after ping")
        assert ws.recv() == "after ping"


def test_close_code_and_reason_reach_the_caller(plugin):
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_text("close-4001")
        with pytest.raises(plugin.ll_websocket.ConnectionClosed) as exc:
            ws.recv()
        assert exc.value.code == 4001 and exc.value.reason == "policy says no"
        with pytest.raises(plugin.ll_websocket.ConnectionClosed):
            ws.send_text("too late")


def test_vanished_server_is_a_clean_error(plugin):
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_text("drop")
        with pytest.raises(plugin.ll_websocket.WebSocketError):
            ws.recv()


def test_message_over_limit_is_refused(plugin):
    with echo_server() as port, \
            plugin.ll_websocket.connect("127.0.0.1", port, max_message=1024) as ws:
        ws.send_text("big-back")
        with pytest.raises(plugin.ll_websocket.WebSocketError, match="limit"):
            ws.recv()


def test_nothing_listening_is_connection_refused(plugin):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        plugin.ll_websocket.connect("127.0.0.1", port, timeout=2)


def test_text_that_is_not_utf8_closes_with_1007(plugin):
    with echo_server() as port, plugin.ll_websocket.connect("127.0.0.1", port) as ws:
        ws.send_text("bad-utf8")
        with pytest.raises(plugin.ll_wire.ProtocolViolation) as exc:
            ws.recv()
        assert exc.value.code == 1007 and ws.closed


def test_refused_upgrade_reports_the_status(plugin):
    async def forbid(connection, request):
        return connection.respond(403, "no\n")

    with echo_server(process_request=forbid) as port, \
            pytest.raises(plugin.ll_websocket.HandshakeFailed) as exc:
        plugin.ll_websocket.connect("127.0.0.1", port, timeout=5)
    assert exc.value.status == 403


# -- the receive path, driven byte by byte from the other end of a socket pair ---------------
@contextmanager
def socket_pair(plugin, max_message: int = 64 * 1024 * 1024):
    """A plug-in connection (past the upgrade) and the raw socket of the 'server' end."""
    import socket

    client, server = socket.socketpair()
    client.settimeout(10)
    server.settimeout(10)
    try:
        yield plugin.ll_websocket.WebSocket(client, max_message=max_message), server
    finally:
        client.close()
        server.close()


def _send_in_thread(target) -> threading.Thread:
    """Run the 'server' side beside the client: a socket pair's buffer holds little."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _read_client_frame(sock) -> tuple[int, bytes]:
    """Opcode and unmasked payload of the next (masked, short) frame the client sent."""
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            assert chunk, "the client closed the connection"
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    assert second & 0x80 and length < 126
    key = exactly(4)
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(exactly(length)))
    return first & 0x0F, payload


def _layer_message(plugin, width: int, height: int) -> bytes:
    wire = plugin.ll_wire
    header = wire.FrameHeader(wire.KIND_LAYER, wire.ENCODING_RGBA8, 0, "job1", width, height)
    return header.pack() + os.urandom(width * height * 4)


def _fragments(plugin, message: bytes, sizes: list[int], opcode: int) -> list[bytes]:
    """`message` as data frames of the given payload sizes (the last takes the rest)."""
    wire = plugin.ll_wire
    frames, start = [], 0
    for number, size in enumerate([*sizes, len(message)]):
        part = message[start:start + size]
        start += len(part)
        fin = start == len(message)
        frames.append(wire.frame_header(opcode if number == 0 else wire.OP_CONT, len(part),
                                        fin=fin) + part)
        if fin:
            return frames
    raise AssertionError("unreachable")


def test_layer_in_many_fragments_with_pings_between(plugin):
    wire = plugin.ll_wire
    message = _layer_message(plugin, 64, 48)  # 12 320 bytes
    frames = _fragments(plugin, message, [1, 40, 7, 1000, 0, 3000, 125, 126, 4000],
                        wire.OP_BINARY)
    with socket_pair(plugin) as (ws, server):
        def send() -> None:
            for number, frame in enumerate(frames):
                server.sendall(frame)
                if number % 3 == 1:
                    server.sendall(wire.frame_header(wire.OP_PING, 4) + b"p%03d" % number)
            server.sendall(wire.frame_header(wire.OP_TEXT, 5) + b"after")

        thread = _send_in_thread(send)
        received = ws.recv()
        thread.join(10)
        assert isinstance(received, bytearray) and received == message
        assert ws.recv() == "after"
        pongs = [_read_client_frame(server) for number in range(len(frames)) if number % 3 == 1]
        assert pongs == [(wire.OP_PONG, b"p%03d" % number)
                         for number in range(len(frames)) if number % 3 == 1]


def test_layer_header_that_lies_about_the_size(plugin):
    """The LLF1 size only sizes the first buffer: more fragments grow it, fewer trim it."""
    wire = plugin.ll_wire
    small = _layer_message(plugin, 4, 4)
    with socket_pair(plugin) as (ws, server):
        longer = small + os.urandom(5000)
        shorter = _layer_message(plugin, 64, 64)[:200]
        frames = (_fragments(plugin, longer, [40, 30], wire.OP_BINARY)
                  + _fragments(plugin, shorter, [100], wire.OP_BINARY))
        thread = _send_in_thread(lambda: server.sendall(b"".join(frames)))
        assert ws.recv() == longer
        assert ws.recv() == shorter
        thread.join(10)


def test_layer_header_over_the_limit_is_not_trusted_and_the_limit_holds(plugin):
    wire = plugin.ll_wire
    message = _layer_message(plugin, 64, 64)  # says 16 416 bytes; the limit is 8 KiB
    with socket_pair(plugin, max_message=8 * 1024) as (ws, server):
        frames = _fragments(plugin, message, [4096, 4096], wire.OP_BINARY)
        thread = _send_in_thread(lambda: server.sendall(b"".join(frames)))
        with pytest.raises(wire.ProtocolViolation, match="limit") as exc:
            ws.recv()
        assert exc.value.code == wire.CLOSE_TOO_BIG and ws.closed
        thread.join(10)


@pytest.mark.parametrize("length", [100, 300, 70_000])  # 2, 4 and 10 byte frame headers
def test_frame_header_arriving_byte_by_byte(plugin, length):
    import time

    wire = plugin.ll_wire
    payload = os.urandom(length)
    head = wire.frame_header(wire.OP_BINARY, length)
    with socket_pair(plugin) as (ws, server):
        def send() -> None:
            for byte in head:
                server.sendall(bytes([byte]))
                time.sleep(0.01)  # each byte its own read
            server.sendall(payload)

        thread = _send_in_thread(send)
        assert ws.recv() == payload
        thread.join(10)


@pytest.mark.parametrize("sent", [1, 5, 600])  # in the header, after it, in the payload
def test_server_closing_mid_fragment(plugin, sent):
    wire = plugin.ll_wire
    message = _layer_message(plugin, 16, 16)
    data = b"".join(_fragments(plugin, message, [500], wire.OP_BINARY))
    with socket_pair(plugin) as (ws, server):
        server.sendall(data[:sent])
        server.close()
        with pytest.raises(plugin.ll_websocket.ConnectionClosed) as exc:
            ws.recv()
        assert exc.value.code == wire.CLOSE_ABNORMAL and ws.closed


def test_close_frame_between_fragments(plugin):
    wire = plugin.ll_wire
    frames = _fragments(plugin, _layer_message(plugin, 16, 16), [500], wire.OP_BINARY)
    with socket_pair(plugin) as (ws, server):
        close = wire.close_payload(4002, "bye")
        server.sendall(frames[0] + wire.frame_header(wire.OP_CLOSE, len(close)) + close)
        with pytest.raises(plugin.ll_websocket.ConnectionClosed) as exc:
            ws.recv()
        assert (exc.value.code, exc.value.reason) == (4002, "bye")
        assert _read_client_frame(server) == (wire.OP_CLOSE, b"\x0f\xa2")


def test_timeout_mid_payload_is_a_timeout(plugin):
    wire = plugin.ll_wire
    with socket_pair(plugin) as (ws, server):
        ws.sock.settimeout(0.2)
        server.sendall(wire.frame_header(wire.OP_BINARY, 1000) + b"x" * 10)
        with pytest.raises(TimeoutError):
            ws.recv()
        assert ws.closed  # its place in the stream is lost: never read from it again


def test_timeout_before_a_frame_starts_keeps_the_connection(plugin):
    wire = plugin.ll_wire
    with socket_pair(plugin) as (ws, server):
        ws.sock.settimeout(0.2)
        server.sendall(wire.frame_header(wire.OP_TEXT, 5)[:1])
        with pytest.raises(TimeoutError):
            ws.recv()
        assert not ws.closed
        server.sendall(wire.frame_header(wire.OP_TEXT, 5)[1:] + b"hello")
        assert ws.recv() == "hello"


def test_frames_after_the_upgrade_answer_are_read_first(plugin):
    """What the last handshake read took beyond the answer is parsed before the socket."""
    wire = plugin.ll_wire
    first = wire.frame_header(wire.OP_TEXT, 5) + b"first"
    second = b"".join(_fragments(plugin, b"0123456789" * 1000, [3], wire.OP_BINARY))
    import socket

    client, server = socket.socketpair()
    with client, server:
        ws = plugin.ll_websocket.WebSocket(client, buffered=first + second[:7])
        assert ws.wait_readable(0)
        server.sendall(second[7:])
        assert ws.recv() == "first"
        assert ws.recv() == b"0123456789" * 1000


def test_binary_messages_are_received_into_a_spare_buffer_that_fits(plugin):
    wire = plugin.ll_wire
    big = _layer_message(plugin, 32, 32)  # 4128 bytes, in fragments: sized by its header
    small = _layer_message(plugin, 8, 8)  # 288 bytes, in one frame
    frames = (_fragments(plugin, big, [1000, 1000], wire.OP_BINARY)
              + _fragments(plugin, small, [], wire.OP_BINARY)
              + _fragments(plugin, big, [1000], wire.OP_BINARY)
              + _fragments(plugin, b"some text", [4], wire.OP_TEXT))
    with socket_pair(plugin) as (ws, server):
        thread = _send_in_thread(lambda: server.sendall(b"".join(frames)))
        spare = bytearray(5000)
        first = ws.recv(spare)
        assert first is spare and first == big
        second = ws.recv(first)
        assert second is first and second == small  # trimmed to the message
        third = ws.recv(second)  # too small now: a new buffer, the spare untouched
        assert third is not second and third == big and second == small
        assert ws.recv(third) == "some text" and third == big
        thread.join(10)
