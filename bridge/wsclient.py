"""The Python client's WebSocket connection (RFC 6455), built to receive big layers cheaply.

Why not `websockets.asyncio.client`: its receive path copies every message several times
after the kernel's (asyncio reads into a new bytes object, which goes into the library's
stream buffer, out of it as a slice, and into the joined message), so a 512 MiB result
arrives at a fraction of what the socket carries. bench/bridge.py has it as its "websockets
client" row: in three runs on a shared 2-core machine (best of 5 each), it took 313-638 MiB/s
(19-22% of a raw loopback socket, 0.8-1.35 s of CPU) where this connection took
803-1786 MiB/s (48-62%, 0.35-0.71 s of CPU) from the same server in the same runs.

This connection is an `asyncio.BufferedProtocol`: small frames (JSON, control frames) are
parsed from a scratch buffer, and once a data frame's header is known its payload is read by
`recv_into` straight into the message's own buffer, which becomes the layer's pixels without
another copy. A layer that arrives in fragments gets one buffer of its whole size at once,
because its LLF1 header (the first bytes) says how big it is. Buffers of a megabyte and more
are uninitialised numpy arrays, which numpy backs with huge pages.

Only the I/O is here: the bytes (handshake, frame headers, fragmentation rules, close codes)
are `bridge.wire`'s, the same code the GIMP plug-in runs. Only what the bridge needs: a
`ws://` client, no extensions, text and binary messages, ping/pong and the close handshake.
"""

from __future__ import annotations

import asyncio
import collections
import os
from urllib.parse import urlsplit

import numpy as np
from layerlift.bridge import wire
from layerlift.bridge.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ConnectionClosed,
    HandshakeFailed,
    ProtocolViolation,
    WebSocketError,
)

SCRATCH_SIZE = 256 * 1024  # what one recv reads while no payload has a buffer of its own
MAX_SERVER_HEAD = 10  # the longest header of an (unmasked) server frame: what a read may run on
BIG_BUFFER = 1024 * 1024  # from this size on, a message buffer is a numpy array
MAX_QUEUE = 16  # messages received but not yet read before reading pauses
CLOSE_TIMEOUT = 5.0


def allocate(size: int) -> memoryview:
    """A writable buffer of `size` bytes, to be filled by the caller.

    Big ones are numpy arrays: left uninitialised (bytearray() would write every byte once
    before recv_into writes it again), and numpy asks Linux for huge pages for them, so a
    64 MiB layer faults in with 32 page faults instead of 16384 (measured: 35-45 ms per
    64 MiB written for np.empty, 50-80 ms for bytearray or an anonymous mmap).
    """
    if size < BIG_BUFFER:
        return memoryview(bytearray(size))
    return memoryview(np.empty(size, np.uint8))


def mask_payload(payload: bytes | bytearray | memoryview, key: bytes) -> memoryview:
    """`wire.mask` in numpy, for the picture upload: 0.15 s instead of 0.5 s per 64 MiB."""
    data = np.frombuffer(payload, np.uint8)
    out = np.empty(data.size, np.uint8)
    whole = data.size // 8 * 8
    if whole:
        key8 = np.frombuffer(key * 2, np.uint64)[0]
        np.bitwise_xor(data[:whole].view(np.uint64), key8, out=out[:whole].view(np.uint64))
    out[whole:] = np.frombuffer(wire.mask(data[whole:], key), np.uint8)
    return memoryview(out)


class _Message:
    """A data message being received, fragment after fragment.

    Its buffer keeps MAX_SERVER_HEAD bytes to spare after the payload received so far: a read
    that ends a fragment may run on into the next frame's header (see `_Protocol.lookahead`).
    """

    def __init__(self, opcode: int, size: int) -> None:
        self.opcode = opcode
        self.length = 0
        self.buffer = allocate(size + MAX_SERVER_HEAD)

    def reserve(self, extra: int) -> memoryview:
        """Room for `extra` more bytes and the spare; a fragmented message may outgrow its
        first guess."""
        needed = self.length + extra
        if needed + MAX_SERVER_HEAD > len(self.buffer):
            bigger = allocate(max(needed, 2 * len(self.buffer)) + MAX_SERVER_HEAD)
            bigger[: self.length] = self.buffer[: self.length]
            self.buffer = bigger
        return self.buffer[self.length: needed + MAX_SERVER_HEAD]

    def result(self) -> str | memoryview:
        data = self.buffer[: self.length]
        if self.opcode == OP_TEXT:
            return wire.decode_text(data)
        return data


class _Protocol(asyncio.BufferedProtocol):
    """Parses what arrives; hands whole messages to `WebSocketClient.recv`."""

    def __init__(self, key: str, max_size: int) -> None:
        self.key = key
        self.fragments = wire.Fragments(max_size)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.scratch = bytearray(SCRATCH_SIZE)
        self.start = 0  # unparsed bytes are scratch[start:end]
        self.end = 0
        self.handshaken = False
        self.message: _Message | None = None
        # While a payload is read in place: where it goes (its rest, then the spare), how much
        # of it is still payload, and whether its frame ends a message.
        self.target: memoryview | None = None
        self.target_left = 0
        self.target_fin = False
        self.messages: collections.deque[str | memoryview] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.paused_reading = False
        self.paused_writing = False
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.close_sent = False
        self.closed: ConnectionClosed | None = None  # set once the close is known
        self.pings: dict[bytes, asyncio.Future[None]] = {}

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.target is not None:
            return self.target
        if self.start == self.end:
            self.start = self.end = 0
            if self.message is not None:
                # Between two fragments of a message: read just the next frame's header, so
                # its payload goes straight into the message too, not through this buffer.
                return memoryview(self.scratch)[:MAX_SERVER_HEAD]
        elif len(self.scratch) - self.end < 4096:
            pending = self.end - self.start
            self.scratch[:pending] = self.scratch[self.start: self.end]
            self.start, self.end = 0, pending
        return memoryview(self.scratch)[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self.target is not None:
                assert self.message is not None
                payload = min(nbytes, self.target_left)
                self.message.length += payload
                self.target_left -= payload
                self.target = self.target[nbytes:]
                if self.target_left:
                    return
                # The payload is complete. A few bytes more that ran on belong to the next
                # frame: they go to the scratch buffer (empty while a target is read).
                self.target = None
                extra = nbytes - payload
                start = self.message.length
                self.scratch[:extra] = self.message.buffer[start: start + extra]
                self.start, self.end = 0, extra
                if self.target_fin:
                    self._deliver()
            else:
                self.end += nbytes
            self._parse()
        except WebSocketError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = ConnectionClosed(wire.CLOSE_ABNORMAL,
                                           str(exc) if exc else "no close frame")
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(None, "the server closed the connection "
                                                      "during the upgrade"))
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        for waiter in self.pings.values():
            if not waiter.done():
                waiter.set_exception(self.closed)
        self.pings.clear()

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- parsing -----------------------------------------------------------------------------
    def _parse(self) -> None:
        while self.target is None and self.start < self.end and self.closed is None:
            if not self.handshaken:
                used = wire.parse_handshake(memoryview(self.scratch)[self.start: self.end],
                                            self.key)
                if used is None:
                    return
                self.start += used
                self.handshaken = True
                self.opened.set_result(None)
                continue
            if not self._parse_frame():
                return

    def _parse_frame(self) -> bool:
        """Parse one frame at scratch[start:]; False when more bytes are needed first."""
        head = wire.parse_frame_head(self.scratch, self.start, self.end)
        if head is None:
            return False
        available = self.end - self.start - head.size
        if head.opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
            if available < head.length:
                return False
            body = self.start + head.size
            payload = bytes(self.scratch[body: body + head.length])
            self.start = body + head.length
            self._control(head.opcode, payload)
            return True
        if head.opcode == OP_BINARY and not head.fin and \
                available < min(head.length, wire.HEADER_SIZE):
            return False  # the first fragment's LLF1 header tells the whole size: wait for it
        self.fragments.add(head)
        self.start += head.size
        if self.message is None:
            self.message = _Message(head.opcode, self._first_size(head))
        # The payload: what is already in the scratch buffer, then the rest in place.
        here = min(head.length, self.end - self.start)
        room = self.message.reserve(head.length)
        room[:here] = self.scratch[self.start: self.start + here]
        self.start += here
        self.message.length += here
        if here < head.length:
            # Read the rest in place, and the next frame's header with its last bytes: one read
            # per fragment, not two.
            self.target, self.target_left = room[here:], head.length - here
            self.target_fin = head.fin
            return False
        if head.fin:
            self._deliver()
        return True

    def _first_size(self, head: wire.FrameHead) -> int:
        """The buffer for a new message: exactly its size when that is known."""
        if head.fin or head.length < wire.HEADER_SIZE:
            return head.length if head.fin else max(head.length, 4096)
        hinted = wire.message_size(self.scratch[self.start: self.start + wire.HEADER_SIZE])
        limit = self.fragments.max_size
        if hinted is not None and head.length <= hinted and (limit is None or hinted <= limit):
            return hinted
        return max(head.length, 4096)

    def _deliver(self) -> None:
        message, self.message = self.message, None
        assert message is not None
        self.messages.append(message.result())
        if len(self.messages) >= MAX_QUEUE and not self.paused_reading and self.transport:
            self.transport.pause_reading()
            self.paused_reading = True
        self._wake()

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.write_frame(OP_PONG, payload)
        elif opcode == OP_PONG:
            waiter = self.pings.pop(payload, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif opcode == OP_CLOSE:
            self.closed = ConnectionClosed(*wire.parse_close(payload))
            if not self.close_sent:
                self.write_frame(OP_CLOSE, payload[:2])
                self.close_sent = True
            self._wake()
            # The server closes the TCP connection first (RFC 6455 7.1.1); wait for that.

    def _fail(self, exc: WebSocketError) -> None:
        if isinstance(exc, HandshakeFailed):
            if not self.opened.done():
                self.opened.set_exception(exc)
            self.closed = ConnectionClosed(wire.CLOSE_ABNORMAL, str(exc))
            if self.transport:
                self.transport.close()
            return
        code = exc.code if isinstance(exc, ProtocolViolation) else wire.CLOSE_PROTOCOL_ERROR
        if not self.close_sent and self.transport and not self.transport.is_closing():
            self.write_frame(OP_CLOSE, wire.close_payload(code, str(exc)))
            self.close_sent = True
        self.closed = ConnectionClosed(code, str(exc))
        if self.transport:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- writing -----------------------------------------------------------------------------
    def write_frame(self, opcode: int, payload: bytes | bytearray | memoryview) -> None:
        """Header and masked payload in one synchronous step: frames never interleave."""
        if self.transport is None or self.transport.is_closing():
            raise self.closed or ConnectionClosed(wire.CLOSE_ABNORMAL, "the connection is gone")
        key = os.urandom(4)
        self.transport.write(wire.frame_header(opcode, len(payload), mask_key=key))
        if len(payload):
            self.transport.write(mask_payload(payload, key))


class WebSocketClient:
    """One open client connection; make it with `connect()`."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @property
    def close_code(self) -> int | None:
        closed = self._protocol.closed
        return closed.code if closed is not None else None

    async def recv(self) -> str | memoryview:
        """The next message: `str` for text, a writable `memoryview` for binary."""
        protocol = self._protocol
        while not protocol.messages:
            if protocol.closed is not None:
                raise protocol.closed
            if protocol.waiter is not None:
                raise RuntimeError("recv() is already being awaited")
            protocol.waiter = asyncio.get_running_loop().create_future()
            try:
                await protocol.waiter
            finally:
                protocol.waiter = None
        message = protocol.messages.popleft()
        if protocol.paused_reading and len(protocol.messages) < MAX_QUEUE // 2 and \
                protocol.transport is not None:
            protocol.paused_reading = False
            protocol.transport.resume_reading()
        return message

    def __aiter__(self) -> WebSocketClient:
        return self

    async def __anext__(self) -> str | memoryview:
        try:
            return await self.recv()
        except ConnectionClosed as exc:
            if exc.code in (wire.CLOSE_NORMAL, wire.CLOSE_GOING_AWAY):
                raise StopAsyncIteration from None
            raise

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one text (str) or binary message, waiting while the socket's buffer is full."""
        protocol = self._protocol
        if protocol.closed is not None or protocol.close_sent:
            raise protocol.closed or ConnectionClosed(wire.CLOSE_ABNORMAL, "closing")
        if isinstance(message, str):
            protocol.write_frame(OP_TEXT, message.encode("utf-8"))
        else:
            protocol.write_frame(OP_BINARY, message)
        await self._drain()

    async def ping(self, data: bytes | None = None) -> None:
        """Send a ping and wait for its pong (the server is alive and reading)."""
        protocol = self._protocol
        data = data if data is not None else os.urandom(4)
        waiter = asyncio.get_running_loop().create_future()
        protocol.pings[data] = waiter
        protocol.write_frame(OP_PING, data)
        await waiter

    async def _drain(self) -> None:
        protocol = self._protocol
        if protocol.paused_writing and protocol.closed is None:
            waiter = asyncio.get_running_loop().create_future()
            protocol.drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                protocol.drain_waiters.remove(waiter)
        if protocol.lost.done() and protocol.closed is not None and \
                protocol.closed.code == wire.CLOSE_ABNORMAL:
            raise protocol.closed

    async def close(self, code: int = wire.CLOSE_NORMAL, reason: str = "") -> None:
        """The close handshake: send close, wait for the server to answer and hang up."""
        protocol = self._protocol
        transport = protocol.transport
        if transport is None:
            return
        if not protocol.close_sent and not transport.is_closing():
            protocol.write_frame(OP_CLOSE, wire.close_payload(code, reason))
            protocol.close_sent = True
        try:
            await asyncio.wait_for(asyncio.shield(protocol.lost), CLOSE_TIMEOUT)
        except TimeoutError:
            transport.abort()
            await protocol.lost
        if protocol.closed is None:
            protocol.closed = ConnectionClosed(code, reason)
        protocol._wake()

    def abort(self) -> None:
        """Drop the TCP connection at once, with no close handshake."""
        if self._protocol.transport is not None:
            self._protocol.transport.abort()


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"not a ws:// URL: {url!r}")
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    if not host:
        raise ValueError(f"no host in {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, port, path


async def connect(url: str, *, open_timeout: float = 10.0,
                  max_size: int = 2**31) -> WebSocketClient:
    """Open a connection to `url` (ws://host:port/path) and finish the upgrade.

    Raises ValueError for a bad URL, OSError/TimeoutError when nothing answers, and
    HandshakeFailed (with the HTTP status) when the server refuses the upgrade.
    """
    host, port, path = _split_url(url)
    key = wire.new_key()
    loop = asyncio.get_running_loop()
    request = wire.handshake_request(host, port, path, key, "layerlift-python")
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(open_timeout):
            transport, protocol = await loop.create_connection(
                lambda: _Protocol(key, max_size), host, port)
            transport.write(request)
            await protocol.opened
    except BaseException:
        if transport is not None:
            transport.abort()
        raise
    return WebSocketClient(protocol)
