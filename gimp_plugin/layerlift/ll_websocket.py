"""The GIMP plug-in's WebSocket connection: blocking socket I/O over `ll_wire`'s framing.

GIMP's bundled Python has no third-party packages, so the plug-in cannot use `websockets`.
The bytes (upgrade request and answer, frame headers, masking, fragmentation rules, close
codes) are `ll_wire`'s, which is LayerLift's `bridge/wire.py` copied in by
`layerlift install-gimp-plugin`; this module only moves them through one blocking socket to
the loopback server: text and binary messages of bounded size, ping/pong and a clean close.
"""

from __future__ import annotations

import contextlib
import select
import socket

import ll_wire
from ll_wire import ConnectionClosed, HandshakeFailed, WebSocketError

__all__ = ["ConnectionClosed", "HandshakeFailed", "WebSocket", "WebSocketError", "connect"]

DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
# Outgoing messages larger than this are sent as several frames, so no single frame (and no
# single masked copy of it) is bigger than this.
DEFAULT_FRAGMENT = 4 * 1024 * 1024


class WebSocket:
    """A blocking client connection. Use `connect()` to make one."""

    def __init__(self, sock: socket.socket, max_message: int = DEFAULT_MAX_MESSAGE,
                 fragment_size: int = DEFAULT_FRAGMENT, buffered: bytes = b"") -> None:
        self.sock = sock
        self.max_message = max_message
        self.fragment_size = fragment_size
        self.closed = False
        self._buffer = bytearray(buffered)
        self._fragments = ll_wire.Fragments(max_message)

    # -- reading ---------------------------------------------------------------------------
    def _fill(self, count: int) -> None:
        """Read until the buffer holds at least `count` bytes."""
        while len(self._buffer) < count:
            try:
                chunk = self.sock.recv(max(65536, count - len(self._buffer)))
            except TimeoutError:
                raise
            except OSError as exc:  # reset, broken pipe: the server is gone
                self.closed = True
                raise WebSocketError(f"connection lost: {exc}") from exc
            if not chunk:
                self.closed = True
                raise ConnectionClosed(ll_wire.CLOSE_ABNORMAL, "the server went away")
            self._buffer += chunk

    def _take(self, count: int) -> bytes:
        self._fill(count)
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _read_head(self) -> ll_wire.FrameHead:
        while True:
            head = ll_wire.parse_frame_head(self._buffer)
            if head is not None:
                del self._buffer[:head.size]
                return head
            self._fill(len(self._buffer) + 1)

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
        try:
            while True:
                head = self._read_head()
                if head.opcode in ll_wire.CONTROL_OPCODES:
                    self._control(head.opcode, self._take(head.length))
                    continue
                opcode = self._fragments.add(head)  # checked before its payload is read
                parts.append(self._take(head.length))
                if head.fin:
                    data = b"".join(parts)
                    return ll_wire.decode_text(data) if opcode == ll_wire.OP_TEXT else data
        except ll_wire.ProtocolViolation as exc:
            self._fail(exc)
            raise

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == ll_wire.OP_PING:
            self._send_frame(ll_wire.OP_PONG, payload)
        elif opcode == ll_wire.OP_CLOSE:
            if not self.closed:
                with contextlib.suppress(WebSocketError):
                    self._send_frame(ll_wire.OP_CLOSE, payload[:2])
            self.closed = True
            raise ConnectionClosed(*ll_wire.parse_close(payload))

    def _fail(self, exc: ll_wire.ProtocolViolation) -> None:
        """The server broke the protocol: say why in a close frame, then drop the socket."""
        if not self.closed:
            with contextlib.suppress(WebSocketError):
                self._send_frame(ll_wire.OP_CLOSE, ll_wire.close_payload(exc.code, str(exc)))
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- writing ---------------------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        try:
            self.sock.sendall(ll_wire.client_frame(opcode, payload, fin=fin))
        except OSError as exc:
            self.closed = True
            raise WebSocketError(f"connection lost: {exc}") from exc

    def _send_message(self, opcode: int, payload: bytes) -> None:
        if self.closed:
            raise ConnectionClosed(ll_wire.CLOSE_ABNORMAL, "the connection is closed")
        step = self.fragment_size
        if len(payload) <= step:
            self._send_frame(opcode, payload)
            return
        view = memoryview(payload)
        last = (len(payload) - 1) // step * step
        for start in range(0, len(payload), step):
            self._send_frame(opcode if start == 0 else ll_wire.OP_CONT,
                             view[start: start + step], fin=start == last)

    def send_text(self, text: str) -> None:
        self._send_message(ll_wire.OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._send_message(ll_wire.OP_BINARY, bytes(data))

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(ll_wire.OP_PING, payload)

    def close(self, code: int = ll_wire.CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame, wait briefly for the server's, then drop the socket."""
        if not self.closed:
            try:
                self._send_frame(ll_wire.OP_CLOSE, ll_wire.close_payload(code, reason))
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


def connect(host: str, port: int, path: str = "/", timeout: float = 10.0,
            max_message: int = DEFAULT_MAX_MESSAGE,
            fragment_size: int = DEFAULT_FRAGMENT) -> WebSocket:
    """Open a WebSocket to ws://host:port/path. Raises ConnectionRefusedError if nothing listens,
    HandshakeFailed (with the HTTP status) if the server refuses the upgrade."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        key = ll_wire.new_key()
        sock.sendall(ll_wire.handshake_request(host, port, path, key, "LayerLift-GIMP"))
        data = b""
        while (used := ll_wire.parse_handshake(data, key)) is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise HandshakeFailed(None, "the server closed the connection during the upgrade")
            data += chunk
        return WebSocket(sock, max_message=max_message, fragment_size=fragment_size,
                         buffered=data[used:])
    except BaseException:
        sock.close()
        raise
