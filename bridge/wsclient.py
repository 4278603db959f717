"""The Python client's WebSocket connection (RFC 6455), built to receive big layers cheaply.

Why not the `websockets` library here: its receive path copies every message three times
after the kernel's (into its stream buffer, out of it as a slice, and into the joined message),
which made a 512 MiB result arrive at a tenth of what the socket can carry. This connection is
an `asyncio.BufferedProtocol`: small frames (JSON, control frames) are parsed from a scratch
buffer, and once a data frame's header is known its payload is read by `recv_into` straight
into the message's own buffer, which becomes the layer's pixels without another copy. Buffers
of a megabyte and more are uninitialised numpy arrays, which numpy backs with huge pages.

Only what the bridge needs: a `ws://` client, no extensions, text and binary messages with
fragmentation, ping/pong and the close handshake. The server (`bridge.server`) still uses
`websockets`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import os
import struct
from urllib.parse import urlsplit

import numpy as np

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CLOSE_PROTOCOL, CLOSE_DATA, CLOSE_TOO_BIG = 1002, 1007, 1009

SCRATCH_SIZE = 256 * 1024  # what one recv reads while no payload has a buffer of its own
MAX_HEAD = 16 * 1024  # the server's HTTP answer to the upgrade
BIG_BUFFER = 1024 * 1024  # from this size on, a message buffer is a memory map
MAX_QUEUE = 16  # messages received but not yet read before reading pauses
CLOSE_TIMEOUT = 5.0


class WebSocketError(ConnectionError):
    """The connection could not be used (refused upgrade, broken framing...)."""


class HandshakeFailed(WebSocketError):
    """The server did not switch protocols; `status` is its HTTP status (None: no answer)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(WebSocketError):
    """The connection is closed; `code`/`reason` come from the close frame (1006: none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


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
    """`payload` XOR the repeated 4-byte `key` (client frames must be masked), in numpy."""
    data = np.frombuffer(payload, np.uint8)
    out = np.empty(data.size, np.uint8)
    whole = data.size // 8 * 8
    if whole:
        key8 = np.frombuffer(key * 2, np.uint64)[0]
        np.bitwise_xor(data[:whole].view(np.uint64), key8, out=out[:whole].view(np.uint64))
    for offset in range(whole, data.size):
        out[offset] = data[offset] ^ key[offset % 4]
    return memoryview(out)


def frame_header(opcode: int, length: int, fin: bool = True, mask: bytes | None = None) -> bytes:
    """The 2-14 byte header of one frame (the server sends unmasked, a client masked)."""
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if mask is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, bit | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, bit | 127, length)
    return head + mask if mask is not None else head


class _Message:
    """A data message being received, fragment after fragment."""

    def __init__(self, opcode: int, first_frame: int, fin: bool) -> None:
        self.opcode = opcode
        self.length = 0
        # A one-frame message (the usual case) gets a buffer of exactly its size.
        self.buffer = allocate(first_frame if fin else max(first_frame, 4096))

    def reserve(self, extra: int) -> memoryview:
        """Room for `extra` more bytes; a fragmented message may outgrow its first guess."""
        needed = self.length + extra
        if needed > len(self.buffer):
            bigger = allocate(max(needed, 2 * len(self.buffer)))
            bigger[: self.length] = self.buffer[: self.length]
            self.buffer = bigger
        return self.buffer[self.length: needed]

    def result(self) -> str | memoryview:
        data = self.buffer[: self.length]
        if self.opcode == OP_TEXT:
            return str(data, "utf-8")
        return data


class _Protocol(asyncio.BufferedProtocol):
    """Parses what arrives; hands whole messages to `WebSocketClient.recv`."""

    def __init__(self, key: str, max_size: int) -> None:
        self.key = key
        self.max_size = max_size
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.scratch = bytearray(SCRATCH_SIZE)
        self.start = 0  # unparsed bytes are scratch[start:end]
        self.end = 0
        self.handshaken = False
        self.message: _Message | None = None
        # While a payload is read in place: where it goes, and whether its frame ends a message.
        self.target: memoryview | None = None
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
        elif len(self.scratch) - self.end < 4096:
            pending = self.end - self.start
            self.scratch[:pending] = self.scratch[self.start: self.end]
            self.start, self.end = 0, pending
        return memoryview(self.scratch)[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self.target is not None:
                assert self.message is not None
                self.message.length += nbytes
                self.target = self.target[nbytes:]
                if len(self.target):
                    return
                self.target = None
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
            self.closed = ConnectionClosed(1006, str(exc) if exc else "no close frame")
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
                if not self._parse_handshake():
                    return
                continue
            if not self._parse_frame():
                return

    def _parse_handshake(self) -> bool:
        data = bytes(self.scratch[self.start: self.end])
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            if len(data) > MAX_HEAD:
                raise HandshakeFailed(None, "the server's upgrade answer is too long")
            return False
        self.start += head_end + 4
        lines = data[:head_end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            raise HandshakeFailed(None, f"not an HTTP answer: {lines[0][:80]!r}") from None
        if status != 101:
            raise HandshakeFailed(status, f"the server refused the upgrade (HTTP {status})")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
        if headers.get("upgrade", "").lower() != "websocket" or \
                "upgrade" not in headers.get("connection", "").lower():
            raise HandshakeFailed(status, "the server did not upgrade to WebSocket")
        if headers.get("sec-websocket-accept") != accept:
            raise HandshakeFailed(status, "the server's Sec-WebSocket-Accept is wrong")
        if headers.get("sec-websocket-extensions"):
            raise HandshakeFailed(status, "the server chose an extension nobody offered")
        self.handshaken = True
        self.opened.set_result(None)
        return True

    def _parse_frame(self) -> bool:
        """Parse one frame at scratch[start:]; False when more bytes are needed first."""
        available = self.end - self.start
        if available < 2:
            return False
        first, second = self.scratch[self.start], self.scratch[self.start + 1]
        fin, opcode, length = bool(first & 0x80), first & 0x0F, second & 0x7F
        head = 2
        if length == 126:
            head = 4
            if available < head:
                return False
            (length,) = struct.unpack_from("!H", self.scratch, self.start + 2)
        elif length == 127:
            head = 10
            if available < head:
                return False
            (length,) = struct.unpack_from("!Q", self.scratch, self.start + 2)
        if first & 0x70:
            raise _Fail(CLOSE_PROTOCOL, "reserved bits set (no extension was agreed)")
        if second & 0x80:
            raise _Fail(CLOSE_PROTOCOL, "a server must not mask its frames")
        if opcode in DATA_OPCODES:
            self._begin_data(opcode, fin, length)
        elif opcode in (OP_CLOSE, OP_PING, OP_PONG):
            if not fin or length > 125:
                raise _Fail(CLOSE_PROTOCOL, "control frames are short and not fragmented")
            if available < head + length:
                return False
            payload = bytes(self.scratch[self.start + head: self.start + head + length])
            self.start += head + length
            self._control(opcode, payload)
            return True
        else:
            raise _Fail(CLOSE_PROTOCOL, f"unknown opcode {opcode}")
        # The payload: what is already in the scratch buffer, then the rest in place.
        assert self.message is not None
        self.start += head
        here = min(length, self.end - self.start)
        room = self.message.reserve(length)
        room[:here] = self.scratch[self.start: self.start + here]
        self.start += here
        self.message.length += here
        if here < length:
            self.target, self.target_fin = room[here:], fin
            return False
        if fin:
            self._deliver()
        return True

    def _begin_data(self, opcode: int, fin: bool, length: int) -> None:
        if opcode == OP_CONT:
            if self.message is None:
                raise _Fail(CLOSE_PROTOCOL, "a continuation frame without a message")
        elif self.message is not None:
            raise _Fail(CLOSE_PROTOCOL, "a new message before the last one ended")
        total = length + (self.message.length if self.message else 0)
        if total > self.max_size:
            raise _Fail(CLOSE_TOO_BIG, f"a message of over {self.max_size} bytes")
        if self.message is None:
            self.message = _Message(opcode, length, fin)

    def _deliver(self) -> None:
        message, self.message = self.message, None
        assert message is not None
        try:
            self.messages.append(message.result())
        except UnicodeDecodeError:
            raise _Fail(CLOSE_DATA, "a text message that is not UTF-8") from None
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
            code, reason = 1005, ""
            if len(payload) >= 2:
                (code,) = struct.unpack_from("!H", payload)
                reason = payload[2:].decode("utf-8", "replace")
            self.closed = ConnectionClosed(code, reason)
            if not self.close_sent:
                self.write_frame(OP_CLOSE, payload[:2])
                self.close_sent = True
            self._wake()
            # The server closes the TCP connection first (RFC 6455 7.1.1); wait for that.

    def _fail(self, exc: WebSocketError) -> None:
        if isinstance(exc, HandshakeFailed):
            if not self.opened.done():
                self.opened.set_exception(exc)
            self.closed = ConnectionClosed(1006, str(exc))
            if self.transport:
                self.transport.close()
            return
        code = exc.code if isinstance(exc, _Fail) else CLOSE_PROTOCOL
        if not self.close_sent and self.transport and not self.transport.is_closing():
            self.write_frame(OP_CLOSE, struct.pack("!H", code) + str(exc).encode()[:100])
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
            raise self.closed or ConnectionClosed(1006, "the connection is gone")
        key = os.urandom(4)
        self.transport.write(frame_header(opcode, len(payload), mask=key))
        if len(payload):
            self.transport.write(mask_payload(payload, key))


class _Fail(WebSocketError):
    """A protocol violation by the server: close with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


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
            if exc.code in (1000, 1001):
                raise StopAsyncIteration from None
            raise

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one text (str) or binary message, waiting while the socket's buffer is full."""
        protocol = self._protocol
        if protocol.closed is not None or protocol.close_sent:
            raise protocol.closed or ConnectionClosed(1006, "closing")
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
        if protocol.lost.done() and protocol.closed is not None and protocol.closed.code == 1006:
            raise protocol.closed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The close handshake: send close, wait for the server to answer and hang up."""
        protocol = self._protocol
        transport = protocol.transport
        if transport is None:
            return
        if not protocol.close_sent and not transport.is_closing():
            protocol.write_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
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
    key = base64.b64encode(os.urandom(16)).decode()
    loop = asyncio.get_running_loop()
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\nUser-Agent: layerlift-python\r\n\r\n")
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(open_timeout):
            transport, protocol = await loop.create_connection(
                lambda: _Protocol(key, max_size), host, port)
            transport.write(request.encode("latin-1"))
            await protocol.opened
    except BaseException:
        if transport is not None:
            transport.abort()
        raise
    return WebSocketClient(protocol)
