"""A small WebSocket client (RFC 6455) on the standard library alone.

GIMP's bundled Python has no third-party packages, so the plug-in cannot use `websockets`.
This client does only what the LayerLift bridge needs: one blocking connection to a loopback
server, text and binary messages of bounded size, fragmentation, ping/pong and a clean close.
It sends no Origin header, because the bridge refuses any browser origin.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import select
import socket
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
# Outgoing messages larger than this are sent as several frames (exercises fragmentation and
# keeps one frame under the server's per-frame limit).
DEFAULT_FRAGMENT = 4 * 1024 * 1024


class WebSocketError(Exception):
    """The connection failed or the peer broke the protocol."""


class HandshakeError(WebSocketError):
    """The server refused the upgrade; `status` holds the HTTP status code (403, 404...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(WebSocketError):
    """The peer closed the connection; `code` and `reason` are from its close frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if code else "connection closed")
        self.code = code
        self.reason = reason


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the 4-byte `key`; one big-integer XOR keeps large frames fast."""
    if not payload:
        return b""
    repeats = len(payload) // 4 + 1
    stream = (key * repeats)[: len(payload)]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(len(payload), "little")


class WebSocket:
    """A blocking client connection. Use `connect()` to make one."""

    def __init__(self, sock: socket.socket, max_message: int = DEFAULT_MAX_MESSAGE,
                 fragment_size: int = DEFAULT_FRAGMENT) -> None:
        self.sock = sock
        self.max_message = max_message
        self.fragment_size = fragment_size
        self.closed = False
        self._buffer = bytearray()

    # -- reading ---------------------------------------------------------------------------
    def _read_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            try:
                chunk = self.sock.recv(max(65536, count - len(self._buffer)))
            except TimeoutError:
                raise
            except OSError as exc:  # reset, broken pipe: the server is gone
                raise WebSocketError(f"connection lost: {exc}") from exc
            if not chunk:
                self.closed = True
                raise ConnectionClosed(None, "the server went away")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exact(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise WebSocketError("the server used an extension we did not negotiate")
        if second & 0x80:
            raise WebSocketError("the server sent a masked frame")
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._read_exact(8))
        if length > self.max_message:
            raise WebSocketError(f"frame of {length} bytes exceeds the {self.max_message} limit")
        return fin, opcode, self._read_exact(length)

    def wait_readable(self, timeout: float) -> bool:
        """True when a frame has started arriving; lets callers poll without splitting frames."""
        if self._buffer:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], timeout)
        except (OSError, ValueError) as exc:  # the socket was closed under us
            self.closed = True
            raise WebSocketError(f"connection lost: {exc}") from None
        return bool(readable)

    def recv(self) -> str | bytes:
        """The next whole message: `str` for text, `bytes` for binary. Answers pings itself."""
        parts: list[bytes] = []
        message_op: int | None = None
        size = 0
        while True:
            fin, opcode, payload = self._read_frame()
            if opcode == OP_PING:
                self._send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                reason = payload[2:].decode("utf-8", "replace")
                if not self.closed:
                    with contextlib.suppress(WebSocketError):
                        self._send_frame(OP_CLOSE, payload[:2])
                self.closed = True
                raise ConnectionClosed(code, reason)
            if opcode in (OP_TEXT, OP_BINARY):
                if message_op is not None:
                    raise WebSocketError("a new message started inside a fragmented one")
                message_op = opcode
            elif opcode == OP_CONT:
                if message_op is None:
                    raise WebSocketError("a continuation frame with no message to continue")
            else:
                raise WebSocketError(f"unknown opcode {opcode}")
            size += len(payload)
            if size > self.max_message:
                raise WebSocketError(f"message exceeds the {self.max_message}-byte limit")
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                return data.decode("utf-8") if message_op == OP_TEXT else data

    # -- writing ---------------------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        header = bytearray([(0x80 if fin else 0) | opcode])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", length)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", length)
        key = os.urandom(4)
        try:
            self.sock.sendall(bytes(header) + key)
            self.sock.sendall(_mask(payload, key))
        except OSError as exc:
            raise WebSocketError(f"connection lost: {exc}") from exc

    def _send_message(self, opcode: int, payload: bytes) -> None:
        if self.closed:
            raise ConnectionClosed(None, "the connection is closed")
        step = self.fragment_size
        if len(payload) <= step:
            self._send_frame(opcode, payload)
            return
        chunks = [payload[i : i + step] for i in range(0, len(payload), step)]
        for index, chunk in enumerate(chunks):
            self._send_frame(opcode if index == 0 else OP_CONT, chunk,
                             fin=index == len(chunks) - 1)

    def send_text(self, text: str) -> None:
        self._send_message(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._send_message(OP_BINARY, bytes(data))

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(OP_PING, payload)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait briefly for the server's, then drop the socket."""
        if not self.closed:
            try:
                self._send_frame(OP_CLOSE, struct.pack(">H", code) + reason.encode()[:120])
                self.sock.settimeout(2.0)
                while True:
                    self.recv()
            except (WebSocketError, OSError):
                pass
            self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_http_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise WebSocketError("the server closed the connection during the handshake")
        data += chunk
        if len(data) > 65536:
            raise WebSocketError("the server's handshake answer is too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def connect(host: str, port: int, path: str = "/", timeout: float = 10.0,
            max_message: int = DEFAULT_MAX_MESSAGE,
            fragment_size: int = DEFAULT_FRAGMENT) -> WebSocket:
    """Open a WebSocket to ws://host:port/path. Raises ConnectionRefusedError if nothing listens."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "User-Agent: LayerLift-GIMP\r\n\r\n"
        )
        sock.sendall(request.encode("ascii"))
        head, rest = _read_http_head(sock)
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            reason = parts[2] if len(parts) > 2 else ""
            raise HandshakeError(status, f"the server refused the connection: {status} {reason}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise WebSocketError("the server's handshake answer does not match our key")
        ws = WebSocket(sock, max_message=max_message, fragment_size=fragment_size)
        ws._buffer += rest
        return ws
    except BaseException:
        sock.close()
        raise
