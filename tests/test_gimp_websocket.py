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
        assert isinstance(data, bytes) and len(data) == 3 * 1024 * 1024


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
